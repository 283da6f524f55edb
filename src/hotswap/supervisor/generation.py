"""One generation, seen from the supervisor: a child process running one release.

It owns the child's descriptors on the supervisor side (its channel end, its log pipe, its
pidfd, its private probe socket) and turns what happens into callbacks the supervisor routes:
``on_event(gen, name, data)`` for channel events (``hello``, ``ready``, ``before_cutover``)
and ``on_exit(gen)`` (with ``gen.returncode`` set) once the process is reaped *and* its
channel has been read to the end, so no late event is lost behind the exit.

States: :mod:`.lifecycle` (starting → ready → live → draining → retired, or failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotswap import contract, envfile
from hotswap.control.connection import Closed, Connection, Fault, Incoming
from hotswap.control.protocol import MAX_LINE, Event, Response
from hotswap.errors import HotswapError, ResourceError
from hotswap.release.config import ServiceSpec
from hotswap.release.store import Release
from hotswap.supervisor import runtime_dir
from hotswap.supervisor.children import Hub
from hotswap.supervisor.lifecycle import GenState, advance
from hotswap.supervisor.listeners import Listener
from hotswap.supervisor.probe import http_probe
from hotswap.supervisor.spawn import ChildProcess, Spawner

LOG_TAIL = 50
UNIX_PATH_MAX = 108  # sun_path, with its NUL
MAX_LOG_LINE = 8192  # a longer line of a child's output is cut there (and ends in "...")


@dataclass
class Generation:
    number: int
    release: Release
    process: ChildProcess
    probe_path: Path | None
    started_mono: float
    started_wall: float
    state: GenState = GenState.STARTING
    service: str | None = None  # a service process rather than a generation
    loaded: set[str] = field(default_factory=set)  # releases it runs code from
    hello: dict[str, Any] | None = None
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    returncode: int | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    _writer: asyncio.StreamWriter | None = None
    _reader_task: asyncio.Task[None] | None = None
    _exit_task: asyncio.Task[None] | None = None
    _conn: Connection = field(default_factory=Connection)
    _calls: dict[int, asyncio.Future[Response]] = field(default_factory=dict)
    _log_fd: int = -1
    _log_buf: bytearray = field(default_factory=bytearray)
    _closed: bool = False

    def __post_init__(self) -> None:
        self.loaded.add(self.release.id)

    def move(self, to: GenState) -> None:
        """Move along the lifecycle (:mod:`.lifecycle`); a move it does not allow raises."""
        self.state = advance(self.state, to)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def label(self) -> str:
        return f"svc {self.service}" if self.service else f"gen {self.number}"

    def info(self) -> dict[str, Any]:
        """What a peer generation is told about this one (incoming/outgoing peer)."""
        return {
            "generation": self.number,
            "pid": self.pid,
            "release": self.release.id,
            "version": self.release.manifest.version,
        }

    def status(self, now_mono: float) -> dict[str, Any]:
        return {
            **self.info(),
            "state": self.state,
            "uptime_s": round(now_mono - self.started_mono, 3),
            "started_at": self.started_wall,
        }

    def tail(self) -> list[str]:
        return list(self.log_tail)

    async def request(self, op: str, timeout: float | None = 10.0, **args: Any) -> Any:
        """Send a request on the channel and wait for its response."""
        if self._writer is None or self._writer.is_closing() or self._conn.closed:
            raise ResourceError("protocol_error", f"generation {self.number}'s channel is closed")
        ident, line = self._conn.request(op, args)  # bad_request if args cannot be sent
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._calls[ident] = future
        try:
            self._writer.write(line)
            await self._writer.drain()
            response = await asyncio.wait_for(future, timeout)
        except (OSError, ConnectionError) as e:
            raise ResourceError(
                "protocol_error", f"generation {self.number}'s channel failed: {e}"
            ) from None
        except TimeoutError:
            raise ResourceError(
                "protocol_error", f"generation {self.number} did not answer {op!r} in {timeout}s"
            ) from None
        finally:
            self._calls.pop(ident, None)
            self._conn.forget(ident)
        return response.unwrap()

    def send_nowait(self, op: str, **args: Any) -> None:
        """Fire-and-forget request (its response is dropped)."""
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(OSError, HotswapError):
                ident, line = self._conn.request(op, args)
                self._conn.forget(ident)
                self._writer.write(line)

    def kill(self) -> None:
        self.process.kill()

    def close(self) -> None:
        """Release the supervisor-side descriptors once the child is gone."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._log_fd >= 0:
            loop.remove_reader(self._log_fd)
            os.close(self._log_fd)
            self._log_fd = -1
        if self.process.pidfd >= 0:
            loop.remove_reader(self.process.pidfd)
        self.process.close()
        if self._writer is not None:
            self._writer.close()
        if self.probe_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.probe_path.unlink()


class OsChildren:
    """The real :class:`~hotswap.supervisor.children.Children`: builds the descriptor layout
    of a generation and starts it with posix_spawn, in a process group of its own."""

    def __init__(self, spawner: Spawner | None = None, runtime: Path | None = None) -> None:
        self.spawner = spawner or Spawner()
        self._runtime = runtime  # what children run; by default the supervisor's own copy
        self.runtime_dir = Path()
        self.run_dir = Path()
        self.state_dir = Path()
        self.control_path = Path()
        self.listeners: list[Listener] = []
        self.on_event: Callable[[Generation, str, dict[str, Any]], None] = lambda *_: None
        self.on_exit: Callable[[Generation], None] = lambda _gen: None
        self.log: Callable[[str], None] = lambda _line: None
        self._run_fd = -1

    async def open(self, hub: Hub) -> None:
        loop = asyncio.get_running_loop()
        if self._runtime is None:
            self._runtime = await loop.run_in_executor(None, runtime_dir.prepare, hub.state_dir)
        self.runtime_dir = self._runtime
        self.run_dir = hub.run_dir
        # probe sockets are bound and reached through this, when their full path is longer
        # than AF_UNIX takes (a state dir deep in the file system)
        self._run_fd = os.open(hub.run_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.state_dir = hub.state_dir
        self.control_path = hub.control_path
        self.listeners = hub.listeners
        self.on_event = hub.on_event
        self.on_exit = hub.on_exit
        self.log = hub.log

    async def probe(self, gen: Generation, target: str, host: str = "localhost") -> int:
        assert gen.probe_path is not None
        return await http_probe(self._address(gen.probe_path), target, host)

    def _address(self, path: Path) -> Path:
        """``path`` (in the run dir) as AF_UNIX can take it: short enough, or by the run
        dir's descriptor (``/proc/self/fd/N/name``)."""
        if len(os.fsencode(path)) < UNIX_PATH_MAX:
            return path
        return Path(f"/proc/self/fd/{self._run_fd}") / path.name

    def _probe_socket(self, path: Path) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self._address(path)))
        finally:
            os.umask(old)
        sock.listen(64)
        return sock

    async def spawn(
        self,
        number: int,
        release: Release,
        outgoing: Generation | None,
        service: ServiceSpec | None = None,
    ) -> Generation:
        """Start generation ``number`` (listeners at fd 3.., then its probe socket and its
        channel), or, with ``service``, a service process (its channel at fd 3 only)."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # release defaults < the supervisor's environment < the state dir's env file
        defaults = release.manifest.app_config().env if release.manifest else {}
        env = envfile.generation_environment(defaults, dict(os.environ), self.state_dir)
        for key in contract.ENV_NOT_INHERITED:
            env.pop(key, None)
        env.update(
            {
                contract.ENV_CHILD: "1",
                contract.ENV_RELEASE_DIR: str(release.root),
                contract.ENV_STATE_DIR: str(self.state_dir),
                contract.ENV_CONTROL_SOCKET: str(self.control_path),
            }
        )
        probe: socket.socket | None = None
        probe_path: Path | None = None
        if service is None:
            probe_path = self.run_dir / f"gen-{number}.sock"
            probe = self._probe_socket(probe_path)
            fds = [lsn.fd for lsn in self.listeners] + [probe.fileno(), theirs.fileno()]
            probe_fd = contract.LISTEN_FDS_START + len(self.listeners)
            env.update(
                {
                    contract.ENV_GENERATION: str(number),
                    contract.ENV_PROBE_FD: str(probe_fd),
                    contract.ENV_CHANNEL_FD: str(probe_fd + 1),
                    "LISTEN_FDS": str(len(self.listeners)),
                    "LISTEN_FDNAMES": ":".join(lsn.spec.name for lsn in self.listeners),
                }
            )
            if outgoing is not None:
                env[contract.ENV_OUTGOING] = json.dumps(outgoing.info())
        else:
            fds = [theirs.fileno()]
            env.update(
                {
                    contract.ENV_SERVICE: service.name,
                    contract.ENV_SERVICE_ENTRY: service.entry,
                    contract.ENV_CHANNEL_FD: str(contract.LISTEN_FDS_START),
                }
            )
        argv = [sys.executable, "-I", "-S", "-u", "-B", str(self.runtime_dir / "boot.py")]
        log_r, log_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            process = self.spawner.spawn(
                argv, env, stdin=devnull, stdout=log_w, stderr=log_w, fds=fds
            )
        except OSError as e:
            os.close(log_r)
            ours.close()
            what = f"service {service.name}" if service else f"generation {number}"
            raise ResourceError("io_error", f"cannot start {what}: {e}") from None
        finally:
            os.close(log_w)
            os.close(devnull)
            theirs.close()
            if probe is not None:
                probe.close()  # the child has it; the supervisor connects by path
        gen = Generation(
            number=number,
            release=release,
            process=process,
            probe_path=probe_path,
            started_mono=asyncio.get_running_loop().time(),
            started_wall=time.time(),
            service=service.name if service else None,
        )
        gen._log_fd = log_r
        os.set_blocking(log_r, False)
        loop.add_reader(log_r, self._read_log, gen)
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_LINE)
        gen._writer = writer
        gen._reader_task = asyncio.create_task(self._read_channel(gen, reader))
        loop.add_reader(process.pidfd, self._pidfd_ready, gen)
        return gen

    def _read_log(self, gen: Generation) -> None:
        try:
            data = os.read(gen._log_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(gen._log_fd)
            if gen._log_buf:
                self._log_line(gen, bytes(gen._log_buf))
                gen._log_buf.clear()
            return
        gen._log_buf += data
        while (end := gen._log_buf.find(b"\n")) >= 0:
            self._log_line(gen, bytes(gen._log_buf[:end]))
            del gen._log_buf[: end + 1]
        if len(gen._log_buf) > MAX_LOG_LINE:  # a line without end: cut it, keep no more
            self._log_line(gen, bytes(gen._log_buf))
            gen._log_buf.clear()

    def _log_line(self, gen: Generation, raw: bytes) -> None:
        if len(raw) > MAX_LOG_LINE:
            raw = raw[:MAX_LOG_LINE] + b"..."
        line = raw.decode("utf-8", "replace")
        gen.log_tail.append(line)
        self.log(f"[{gen.label}] {line}")

    async def _read_channel(self, gen: Generation, reader: asyncio.StreamReader) -> None:
        try:
            while not gen._conn.closed:
                try:
                    data = await reader.read(65536)
                except (OSError, ConnectionError):
                    data = b""
                for message in gen._conn.feed(data):
                    self._on_message(gen, message)
        except Exception as e:  # a bug here must not leave the generation unaccounted for
            self.log(f"[{gen.label}] channel reader failed: {e!r}")
            error = ResourceError("protocol_error", f"channel reader failed: {e!r}")
            self.on_event(gen, contract.EVENT_PROTOCOL_ERROR, {"error": error.to_json()})
        finally:
            gen._conn.close()
            for future in gen._calls.values():
                if not future.done():
                    future.set_exception(ResourceError("protocol_error", f"{gen.label} went away"))

    def _on_message(self, gen: Generation, message: Incoming) -> None:
        if isinstance(message, Response):
            future = gen._calls.get(message.id)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, Event):
            self.on_event(gen, message.event, message.data)
        elif isinstance(message, Fault):
            # a generation that speaks something else is failed: stop reading it
            gen._conn.close()
            self.on_event(gen, contract.EVENT_PROTOCOL_ERROR, {"error": message.error.to_json()})
        elif isinstance(message, Closed):
            pass  # the loop ends; the calls still waiting are failed above

    def _pidfd_ready(self, gen: Generation) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(gen.process.pidfd)
        # before reaping (the zombie still holds the group's id): whatever it forked and left
        # behind dies with it, and cannot keep the listeners (no orphan serves or holds them)
        gen.process.kill_group()
        gen.returncode = gen.process.poll()
        gen._exit_task = asyncio.create_task(self._finish_exit(gen))

    async def _finish_exit(self, gen: Generation) -> None:
        """Report the exit once the channel is read to the end; ``on_exit`` runs whatever
        happened to the reader, or the supervisor would wait for this generation forever."""
        try:
            if gen._reader_task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(gen._reader_task), 2.0)
            if gen._log_fd >= 0:  # pick up the last lines it wrote
                with contextlib.suppress(OSError):
                    while data := os.read(gen._log_fd, 65536):
                        gen._log_buf += data
                if gen._log_buf:
                    for raw in bytes(gen._log_buf).split(b"\n"):
                        if raw:
                            self._log_line(gen, raw)
                    gen._log_buf.clear()
        except Exception as e:
            self.log(f"[{gen.label}] reading its last output failed: {e!r}")
        finally:
            self.on_exit(gen)
