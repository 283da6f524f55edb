"""A blocking client for the control socket (the CLI and the Python API use it).

It works from any process of the supervisor's user given the state dir: a generation (which
finds the socket in ``HOTSWAP_CONTROL_SOCKET``), a script, the CLI.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotswap import contract
from hotswap.control.connection import Closed, Connection, Fault, Incoming
from hotswap.control.protocol import Event, Response
from hotswap.errors import ResourceError, UsageError
from hotswap.fsutil import resolve_state_dir, unix_address


def control_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """The control socket: ``$HOTSWAP_CONTROL_SOCKET`` inside a generation, else the state
    dir's (explicit, ``$HOTSWAP_STATE_DIR``, or the default)."""
    if state_dir is None and os.environ.get("HOTSWAP_CONTROL_SOCKET"):
        return Path(os.environ["HOTSWAP_CONTROL_SOCKET"])
    return resolve_state_dir(state_dir) / contract.CONTROL_SOCKET


class Client:
    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._conn = Connection()

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
                with unix_address(self.path) as address:  # a deep state dir's path is too long
                    sock.connect(address)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                raise UsageError(
                    "not_running",
                    f"no supervisor answers on {self.path} (is `hotswap run` running with "
                    "this state dir?)",
                ) from None
            self._sock = sock
        return self._sock

    def _next(self) -> Incoming:
        sock = self._connect()
        while (message := self._conn.next_message()) is None:
            if self._conn.closed:
                raise ResourceError("protocol_error", "the supervisor closed the connection")
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                raise ResourceError(
                    "protocol_error", f"the supervisor did not answer within {self.timeout}s"
                ) from None
            self._conn.receive_data(data)
        return message

    def call(
        self,
        op: str,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        **args: Any,
    ) -> Any:
        """Send one request; stream its events to ``on_event``; return its result or raise
        its error (with its class and stable code). Arguments that cannot be sent raise
        ``bad_request`` before anything is sent."""
        sock = self._connect()
        ident, line = self._conn.request(op, args)
        try:
            # The supervisor may have answered (e.g. permission_denied) and closed: read that.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(line)
            while True:
                message = self._next()
                if isinstance(message, Event) and message.id == ident:
                    if on_event is not None:
                        on_event(message.data)
                elif isinstance(message, Response) and message.id in (ident, 0):
                    return message.unwrap()  # id 0: an error about the connection itself
                elif isinstance(message, Fault):
                    raise message.error
                elif isinstance(message, Closed):
                    raise ResourceError("protocol_error", "the supervisor closed the connection")
        finally:
            self._conn.forget(ident)


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
