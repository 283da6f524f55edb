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

from hotswap.control.protocol import (
    Event,
    LineBuffer,
    Request,
    Response,
    decode,
    encode,
    error_response,
)
from hotswap.errors import HotswapError, ResourceError

Handler = Callable[[dict[str, Any]], Any]


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
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
        result sent back."""
        self._handlers[op] = (handler, threaded)

    def on_eof(self, callback: Callable[[], None]) -> None:
        self._on_eof.append(callback)

    def send(self, message: Event | Response) -> None:
        data = encode(message)
        # OSError: the supervisor is gone; the reader sees EOF and acts on it.
        with self._send_lock, contextlib.suppress(OSError):
            self._sock.sendall(data)

    def event(self, name: str, **data: Any) -> None:
        self.send(Event(0, name, data))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._read_loop, name="hotswap-channel", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        buf = LineBuffer()
        try:
            while True:
                data = self._sock.recv(65536)
                if not data:
                    break
                for line in buf.feed(data):
                    self._dispatch(line)
        except (OSError, HotswapError) as e:
            print(f"hotswap: channel to the supervisor failed: {e}", file=sys.stderr)
        finally:
            self.closed.set()
            for callback in self._on_eof:
                callback()

    def _dispatch(self, line: bytes) -> None:
        message = decode(line)
        if not isinstance(message, Request):
            return
        entry = self._handlers.get(message.op)
        if entry is None:
            self.send(
                error_response(
                    message.id,
                    ResourceError("protocol_error", f"this generation has no {message.op!r} op"),
                )
            )
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
            result = handler(message.args)
        except HotswapError as e:
            self.send(error_response(message.id, e))
        except Exception as e:  # the handler's failure is reported, never kills the reader
            self.send(
                error_response(
                    message.id, ResourceError("supervisor_failed", f"{type(e).__name__}: {e}")
                )
            )
        else:
            self.send(Response(message.id, True, result))
