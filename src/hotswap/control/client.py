"""A blocking client for the control socket (the CLI and the Python API use it).

It works from any process of the supervisor's user given the state dir: a generation (which
finds the socket in ``HOTSWAP_CONTROL_SOCKET``), a script, the CLI.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotswap.control.protocol import (
    Event,
    LineBuffer,
    Request,
    Response,
    decode,
    encode,
)
from hotswap.errors import ResourceError, UsageError

CONTROL_SOCKET = "control.sock"
_ids = itertools.count(1)


def control_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """The control socket: ``$HOTSWAP_CONTROL_SOCKET`` inside a generation, else the state
    dir's (explicit, ``$HOTSWAP_STATE_DIR``, or the default)."""
    if state_dir is None and os.environ.get("HOTSWAP_CONTROL_SOCKET"):
        return Path(os.environ["HOTSWAP_CONTROL_SOCKET"])
    from hotswap.fsutil import resolve_state_dir

    return resolve_state_dir(state_dir) / CONTROL_SOCKET


class Client:
    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = LineBuffer()
        self._lines: list[bytes] = []

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                raise UsageError(
                    "not_running",
                    f"no supervisor answers on {self.path} (is `hotswap run` running with "
                    "this state dir?)",
                ) from None
            self._sock = sock
        return self._sock

    def _read_message(self) -> Any:
        sock = self._connect()
        while not self._lines:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                raise ResourceError(
                    "protocol_error", f"the supervisor did not answer within {self.timeout}s"
                ) from None
            if not data:
                raise ResourceError("protocol_error", "the supervisor closed the connection")
            self._lines.extend(self._buf.feed(data))
        return decode(self._lines.pop(0))

    def call(
        self,
        op: str,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        **args: Any,
    ) -> Any:
        """Send one request; stream its events to ``on_event``; return its result or raise
        its error (with its class and stable code)."""
        ident = next(_ids)
        sock = self._connect()
        # The supervisor may have answered (e.g. permission_denied) and closed: read that.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(encode(Request(ident, op, args)))
        while True:
            message = self._read_message()
            if isinstance(message, Event) and message.id == ident:
                if on_event is not None:
                    on_event(message.data)
            elif isinstance(message, Response) and message.id in (ident, 0):
                return message.unwrap()


def call(
    op: str,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = 30.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    **args: Any,
) -> Any:
    with Client(control_path(state_dir), timeout=timeout) as client:
        return client.call(op, on_event=on_event, **args)
