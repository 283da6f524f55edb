"""The real :class:`~.children.Children`: child processes on this machine.

It builds a child's exact descriptor layout (listeners at fd 3.., then a worker's private probe
socket and its channel; a service's channel only), its environment (release defaults < the
supervisor's environment < the state dir's env file, plus what hotswap sets), starts it with
posix_spawn in a process group of its own, reads its output and its channel, and reports its
exit once it is reaped and its channel read to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotswap import contract, envfile
from hotswap.control.connection import Closed, Fault, Incoming
from hotswap.control.protocol import MAX_LINE, Event, Response
from hotswap.errors import ResourceError
from hotswap.fsutil import unix_address
from hotswap.release.config import ServiceSpec
from hotswap.release.store import Release
from hotswap.supervisor import runtime_dir
from hotswap.supervisor.children import Hub
from hotswap.supervisor.listeners import Listener
from hotswap.supervisor.logsink import child_line
from hotswap.supervisor.probe import http_probe
from hotswap.supervisor.process import Child
from hotswap.supervisor.spawn import ChildProcess, Spawner

MAX_LOG_LINE = 8192  # a longer line of a child's output is cut there (and ends in "...")


class OsChildren:
    """The real :class:`~hotswap.supervisor.children.Children` (see the module's docstring)."""

    def __init__(self, spawner: Spawner | None = None, runtime: Path | None = None) -> None:
        self.spawner = spawner or Spawner()
        self._runtime = runtime  # what children run; by default the supervisor's own copy
        self.runtime_dir = Path()
        self.run_dir = Path()
        self.state_dir = Path()
        self.control_path = Path()
        self.listeners: list[Listener] = []
        self.on_event: Callable[[Child, str, dict[str, Any]], None] = lambda *_: None
        self.on_exit: Callable[[Child], None] = lambda _child: None
        self.log: Callable[[str], None] = lambda _line: None

    async def open(self, hub: Hub) -> None:
        loop = asyncio.get_running_loop()
        if self._runtime is None:
            self._runtime = await loop.run_in_executor(None, runtime_dir.prepare, hub.state_dir)
        self.runtime_dir = self._runtime
        self.run_dir = hub.run_dir
        self.state_dir = hub.state_dir
        self.control_path = hub.control_path
        self.listeners = hub.listeners
        self.on_event = hub.on_event
        self.on_exit = hub.on_exit
        self.log = hub.log

    async def probe(self, child: Child, target: str, host: str = "localhost") -> int:
        assert child.probe_path is not None
        # a state dir deep in the file system: reached through the run dir's descriptor
        with unix_address(child.probe_path) as address:
            return await http_probe(Path(address), target, host)

    def _probe_socket(self, path: Path) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with unix_address(path) as address:
                sock.bind(address)
        finally:
            os.umask(old)
        sock.listen(64)
        return sock

    async def spawn_worker(
        self,
        number: int,
        worker: int,
        workers: int,
        release: Release,
        outgoing: dict[str, Any] | None,
    ) -> Child:
        """Start worker ``worker`` (of ``workers``) of generation ``number``: the listeners
        at fd 3.., then its private probe socket and its channel."""
        probe_path = self.run_dir / f"gen-{number}-{worker}.sock"
        probe = self._probe_socket(probe_path)
        probe_fd = contract.LISTEN_FDS_START + len(self.listeners)
        env = {
            contract.ENV_GENERATION: str(number),
            contract.ENV_WORKER: str(worker),
            contract.ENV_WORKERS: str(workers),
            contract.ENV_PROBE_FD: str(probe_fd),
            contract.ENV_CHANNEL_FD: str(probe_fd + 1),
            "LISTEN_FDS": str(len(self.listeners)),
            "LISTEN_FDNAMES": ":".join(lsn.spec.name for lsn in self.listeners),
        }
        if outgoing is not None:
            env[contract.ENV_OUTGOING] = json.dumps(outgoing)
        what = f"generation {number} worker {worker}"
        try:
            fds = [lsn.fd for lsn in self.listeners] + [probe.fileno()]
            process, log_r, ours, shown = self._start(release, env, fds, what)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                probe_path.unlink()
            raise
        finally:
            probe.close()  # the child has it; the supervisor connects by path
        child = Child(
            number=number,
            release=release,
            process=process,
            probe_path=probe_path,
            started_mono=asyncio.get_running_loop().time(),
            started_wall=time.time(),
            worker=worker,
            worker_of=workers,
            environment=shown,
        )
        await self._attach(child, log_r, ours)
        return child

    async def spawn_service(self, spec: ServiceSpec, release: Release) -> Child:
        """Start service ``spec``: its channel at fd 3 only."""
        env = {
            contract.ENV_SERVICE: spec.name,
            contract.ENV_SERVICE_ENTRY: spec.entry,
            contract.ENV_CHANNEL_FD: str(contract.LISTEN_FDS_START),
        }
        process, log_r, ours, shown = self._start(release, env, [], f"service {spec.name}")
        child = Child(
            number=0,
            release=release,
            process=process,
            probe_path=None,
            started_mono=asyncio.get_running_loop().time(),
            started_wall=time.time(),
            service=spec.name,
            environment=shown,
        )
        await self._attach(child, log_r, ours)
        return child

    def _start(
        self, release: Release, extra_env: dict[str, str], fds: list[int], what: str
    ) -> tuple[ChildProcess, int, socket.socket, dict[str, Any]]:
        """Spawn a child of ``release`` with ``fds`` at 3.. and its channel right after them;
        its process, the read end of its output pipe, the supervisor's end of its channel and
        what status shows of its environment."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # release defaults < the supervisor's environment < the state dir's env file
        defaults = release.manifest.app_config().env if release.manifest else {}
        env, shown = envfile.generation_environment(defaults, dict(os.environ), self.state_dir)
        for key in contract.ENV_NOT_INHERITED:
            env.pop(key, None)
        env.update(
            {
                contract.ENV_CHILD: "1",
                contract.ENV_RELEASE_DIR: str(release.root),
                contract.ENV_STATE_DIR: str(self.state_dir),
                contract.ENV_CONTROL_SOCKET: str(self.control_path),
                **extra_env,
            }
        )
        argv = [sys.executable, "-I", "-S", "-u", "-B", str(self.runtime_dir / "boot.py")]
        log_r, log_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            process = self.spawner.spawn(
                argv, env, stdin=devnull, stdout=log_w, stderr=log_w, fds=[*fds, theirs.fileno()]
            )
        except OSError as e:
            os.close(log_r)
            ours.close()
            raise ResourceError("io_error", f"cannot start {what}: {e}") from None
        finally:
            os.close(log_w)
            os.close(devnull)
            theirs.close()
        return process, log_r, ours, shown

    async def _attach(self, child: Child, log_r: int, ours: socket.socket) -> None:
        """Read the child's output and channel, and learn of its exit."""
        loop = asyncio.get_running_loop()
        child._log_fd = log_r
        os.set_blocking(log_r, False)
        loop.add_reader(log_r, self._read_log, child)
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_LINE)
        child._writer = writer
        child._reader_task = asyncio.create_task(self._read_channel(child, reader))
        loop.add_reader(child.process.pidfd, self._pidfd_ready, child)

    def _read_log(self, child: Child) -> None:
        try:
            data = os.read(child._log_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(child._log_fd)
            if child._log_buf:
                self._log_line(child, bytes(child._log_buf))
                child._log_buf.clear()
            return
        child._log_buf += data
        while (end := child._log_buf.find(b"\n")) >= 0:
            self._log_line(child, bytes(child._log_buf[:end]))
            del child._log_buf[: end + 1]
        if len(child._log_buf) > MAX_LOG_LINE:  # a line without end: cut it, keep no more
            self._log_line(child, bytes(child._log_buf))
            child._log_buf.clear()

    def _log_line(self, child: Child, raw: bytes) -> None:
        if len(raw) > MAX_LOG_LINE:
            raw = raw[:MAX_LOG_LINE] + b"..."
        line = raw.decode("utf-8", "replace")
        child.log_tail.append(line)
        source = child.service or f"gen {child.number}"
        worker = None if child.service else child.worker
        self.log(child_line(line, tag=child.label, source=source, worker=worker))

    async def _read_channel(self, child: Child, reader: asyncio.StreamReader) -> None:
        try:
            while not child._conn.closed:
                try:
                    data = await reader.read(65536)
                except (OSError, ConnectionError):
                    data = b""
                for message in child._conn.feed(data):
                    self._on_message(child, message)
        except Exception as e:  # a bug here must not leave the generation unaccounted for
            self.log(f"[{child.label}] channel reader failed: {e!r}")
            error = ResourceError("protocol_error", f"channel reader failed: {e!r}")
            self.on_event(child, contract.EVENT_PROTOCOL_ERROR, {"error": error.to_json()})
        finally:
            child._conn.close()
            for future in child._calls.values():
                if not future.done():
                    future.set_exception(
                        ResourceError("protocol_error", f"{child.label} went away")
                    )

    def _on_message(self, child: Child, message: Incoming) -> None:
        if isinstance(message, Response):
            future = child._calls.get(message.id)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, Event):
            self.on_event(child, message.event, message.data)
        elif isinstance(message, Fault):
            # a generation that speaks something else is failed: stop reading it
            child._conn.close()
            self.on_event(child, contract.EVENT_PROTOCOL_ERROR, {"error": message.error.to_json()})
        elif isinstance(message, Closed):
            pass  # the loop ends; the calls still waiting are failed above

    def _pidfd_ready(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(child.process.pidfd)
        # before reaping (the zombie still holds the group's id): whatever it forked and left
        # behind dies with it, and cannot keep the listeners (no orphan serves or holds them)
        child.process.kill_group()
        child.returncode = child.process.poll()
        child._exit_task = asyncio.create_task(self._finish_exit(child))

    async def _finish_exit(self, child: Child) -> None:
        """Report the exit once the channel is read to the end; ``on_exit`` runs whatever
        happened to the reader, or the supervisor would wait for this generation forever."""
        try:
            if child._reader_task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(child._reader_task), 2.0)
            if child._log_fd >= 0:  # pick up the last lines it wrote
                with contextlib.suppress(OSError):
                    while data := os.read(child._log_fd, 65536):
                        child._log_buf += data
                if child._log_buf:
                    for raw in bytes(child._log_buf).split(b"\n"):
                        if raw:
                            self._log_line(child, raw)
                    child._log_buf.clear()
        except Exception as e:
            self.log(f"[{child.label}] reading its last output failed: {e!r}")
        finally:
            self.on_exit(child)
