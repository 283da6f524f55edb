"""One child process, seen from the supervisor: a worker of a generation, or a service.

It owns the child's descriptors on the supervisor side (its channel end, its log pipe, its
pidfd, its private probe socket). The :class:`~.children.Children` seam creates it and reports
what happens to it as callbacks the supervisor routes: ``on_event(child, name, data)`` for
channel events (``hello``, ``ready``, ``before_cutover``) and ``on_exit(child)`` (with
``child.returncode`` set) once the process is reaped *and* its channel has been read to the
end, so no late event is lost behind the exit.

A worker has its generation's ``number`` and its ``worker`` index; a service has its
``service`` name (``number`` 0). States: :mod:`.lifecycle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotswap.control.connection import Connection
from hotswap.control.protocol import Response
from hotswap.errors import HotswapError, ResourceError
from hotswap.release.store import Release
from hotswap.supervisor.lifecycle import GenState, advance
from hotswap.supervisor.spawn import ChildProcess

LOG_TAIL = 50


@dataclass
class Child:
    number: int  # its generation (0 for a service)
    release: Release
    process: ChildProcess
    probe_path: Path | None
    started_mono: float
    started_wall: float
    state: GenState = GenState.STARTING
    service: str | None = None  # a service process: its name
    worker: int = 0  # a worker: its index in its generation
    loaded: set[str] = field(default_factory=set)  # releases it runs code from
    hello: dict[str, Any] | None = None
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    returncode: int | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exited_mono: float | None = None  # when its exit was handled: its uptime stops there
    _writer: asyncio.StreamWriter | None = None
    _reader_task: asyncio.Task[None] | None = None
    _exit_task: asyncio.Task[None] | None = None
    _conn: Connection = field(default_factory=Connection)
    _calls: dict[int, asyncio.Future[Response]] = field(default_factory=dict)
    _log_fd: int = -1
    _log_buf: bytearray = field(default_factory=bytearray)
    _closed: bool = False
    worker_of: int = 1  # how many workers its generation has
    environment: dict[str, Any] = field(default_factory=dict)  # what status shows of its env
    # the functions of its release that ran while it started ({module: [qualname]}): what a hot
    # upgrade refuses to change (startup_code), and what `hotswap check` is told of
    startup: dict[str, Any] = field(default_factory=dict)

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
        """How its log lines are marked: ``gen 4``, ``gen 4.1`` (worker 1 of several), ``svc x``."""
        if self.service:
            return f"svc {self.service}"
        return f"gen {self.number}.{self.worker}" if self.worker_of > 1 else f"gen {self.number}"

    @property
    def name(self) -> str:
        """In messages: ``generation 4``, ``generation 4 worker 1``, ``service x``."""
        if self.service:
            return f"service {self.service}"
        if self.worker_of > 1:
            return f"generation {self.number} worker {self.worker}"
        return f"generation {self.number}"

    def status(self, now_mono: float) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "pid": self.pid,
            "state": self.state,
            "release": self.release.id,  # the code it runs (a hot upgrade moves it)
            "uptime_s": round((self.exited_mono or now_mono) - self.started_mono, 3),
            "started_at": self.started_wall,
        }

    def tail(self) -> list[str]:
        return list(self.log_tail)

    async def request(self, op: str, timeout: float | None = 10.0, **args: Any) -> Any:
        """Send a request on the channel and wait for its response."""
        if self._writer is None or self._writer.is_closing() or self._conn.closed:
            raise ResourceError("protocol_error", f"{self.name}'s channel is closed")
        ident, line = self._conn.request(op, args)  # bad_request if args cannot be sent
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._calls[ident] = future
        try:
            self._writer.write(line)
            await self._writer.drain()
            response = await asyncio.wait_for(future, timeout)
        except (OSError, ConnectionError) as e:
            raise ResourceError("protocol_error", f"{self.name}'s channel failed: {e}") from None
        except TimeoutError:
            raise ResourceError(
                "protocol_error", f"{self.name} did not answer {op!r} in {timeout}s"
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
