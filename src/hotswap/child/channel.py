"""The generation's end of its private channel to the supervisor (a socketpair).

The supervisor sends requests (``go``, ``drain``, ``after_cutover``, ``hot_upgrade``, ...);
the generation answers them and sends events (``hello``, ``ready``, ``before_cutover``).
The same channel is the parent-death watch (promise 6): only the supervisor holds the other
end, so EOF means the supervisor is gone, whatever killed it, and the generation stops
accepting at once and exits after finishing in-flight work. (``PR_SET_PDEATHSIG`` is not used:
it fires when the spawning *thread* exits, not the process.)
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from hotswap.control.connection import Closed, Connection, Fault
from hotswap.control.protocol import Request
from hotswap.errors import HotswapError, ResourceError

Handler = Callable[[dict[str, Any]], Any]


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._conn = Connection()
        self._send_lock = threading.Lock()
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        self._on_eof: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self.closed = threading.Event()

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self._sock.fileno()

    def handle(self, op: str, handler: Handler, *, threaded: bool = False) -> None:
        """``handler(args)`` runs on the reader thread (or, when ``threaded``, on a thread of
        its own, for slow work that must not hold up EOF detection); its return value is the
        result sent back, and whatever it raises is sent back as an error with a code."""
        self._handlers[op] = (handler, threaded)

    def on_eof(self, callback: Callable[[], None]) -> None:
        self._on_eof.append(callback)

    def _send(self, data: bytes) -> None:
        # OSError: the supervisor is gone; the reader sees EOF and acts on it.
        with self._send_lock, contextlib.suppress(OSError):
            self._sock.sendall(data)

    def event(self, name: str, **data: Any) -> None:
        """Send an event; data that cannot be sent raises ``bad_request``."""
        self._send(self._conn.event(name, data))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._read_loop, name="hotswap-channel", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        try:
            while not self._conn.closed:
                try:
                    data = self._sock.recv(65536)
                except OSError as e:
                    print(f"hotswap: channel to the supervisor failed: {e}", file=sys.stderr)
                    data = b""
                for message in self._conn.feed(data):
                    self._dispatch(message)
        finally:
            self.closed.set()
            for callback in self._on_eof:
                callback()

    def _dispatch(self, message: object) -> None:
        if isinstance(message, Fault):
            print(f"hotswap: bad line from the supervisor: {message.error}", file=sys.stderr)
            if message.id is not None:
                self._send(self._conn.answer(message))
            if message.fatal:
                self._conn.close()  # a peer of another version: as good as gone
            return
        if isinstance(message, Closed) or not isinstance(message, Request):
            return  # the supervisor sends requests only; its gone-ness is handled above
        entry = self._handlers.get(message.op)
        if entry is None:
            error = ResourceError("protocol_error", f"this generation has no {message.op!r} op")
            self._send(self._conn.fail(message.id, error))
            return
        handler, threaded = entry
        if threaded:
            threading.Thread(
                target=self._run, args=(message, handler), name=f"hotswap-{message.op}", daemon=True
            ).start()
        else:
            self._run(message, handler)

    def _run(self, message: Request, handler: Handler) -> None:
        try:
            line = self._conn.respond(message.id, handler(message.args))
        except HotswapError as e:
            line = self._conn.fail(message.id, e)
        except Exception as e:  # the handler's failure is reported, never kills the reader
            error = ResourceError("supervisor_failed", f"{type(e).__name__}: {e}")
            line = self._conn.fail(message.id, error)
        self._send(line)
