"""Listening sockets: parsed from ``--bind``, bound once, kept for the supervisor's life.

Promise 1: a swap never closes, re-binds or ``shutdown()``s a listener. Every generation gets
the same kernel socket (inherited at fd 3, 4, ...), so all of them feed one accept queue and a
connection queued while one generation drains is accepted by the next. Closing a process's copy
only drops that process's reference; ``shutdown()`` on any copy would stop the socket for every
holder, so nothing in hotswap ever calls it on a listener.

Bind addresses: ``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` (all IPv4 interfaces) or
``unix:/path`` (also any address containing a ``/``), each optionally prefixed ``NAME=``
(default ``http``); names reach the child as ``LISTEN_FDNAMES``.

Socket activation: a listener systemd passed (``hotswap.systemd``) is adopted instead of bound
(:func:`inherited`); at exit its unix path is left to systemd, which owns it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from hotswap.errors import ResourceError, UsageError

DEFAULT_NAME = "http"
BACKLOG = 4096
BIND_RETRY_SECONDS = 10.0
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class BindSpec:
    name: str
    family: socket.AddressFamily
    address: str | tuple[str, int]
    fd: int | None = None  # inherited through socket activation: adopted, never bound

    def describe(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"{self.name}=unix:{self.address}"
        assert isinstance(self.address, tuple)
        host, port = self.address
        shown = f"[{host}]" if self.family == socket.AF_INET6 else host
        return f"{self.name}={shown}:{port}"


@dataclass
class Listener:
    spec: BindSpec
    sock: socket.socket

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    def address(self) -> str:
        """The bound address as a string (the real port when 0 was asked for)."""
        if self.spec.family == socket.AF_UNIX:
            return f"unix:{self.spec.address}"
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if self.spec.family == socket.AF_INET6 else f"{host}:{port}"

    @property
    def port(self) -> int | None:
        if self.spec.family == socket.AF_UNIX:
            return None
        port: int = self.sock.getsockname()[1]
        return port


def parse_bind(text: str) -> BindSpec:
    """Parse one ``--bind`` value; raises ``bad_config`` naming it."""
    name = DEFAULT_NAME
    value = text
    head, sep, tail = text.partition("=")
    if sep and _NAME.match(head):
        name, value = head, tail
    if value.startswith("unix:") or "/" in value:
        path = value.removeprefix("unix:")
        if not path:
            raise UsageError("bad_config", f"--bind {text!r}: empty unix socket path", key="bind")
        return BindSpec(name, socket.AF_UNIX, os.path.abspath(path))
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})", value) or re.fullmatch(
        r"([^:\[\]]*):(\d{1,5})", value
    )
    if not match:
        raise UsageError(
            "bad_config",
            f"--bind {text!r} is not HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH",
            key="bind",
        )
    host, port = match.group(1), int(match.group(2))
    if port > 65535:
        raise UsageError("bad_config", f"--bind {text!r}: port {port} > 65535", key="bind")
    family = socket.AF_INET6 if value.startswith("[") else socket.AF_INET
    return BindSpec(name, family, (host or "0.0.0.0", port))


def inherited(name: str, sock: socket.socket) -> BindSpec:
    """The spec of a listening socket handed over by systemd; ``sock`` is detached into it."""
    address = sock.getsockname()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        address = (address[0], address[1])
    elif isinstance(address, bytes):
        address = address.decode(errors="replace")
    return BindSpec(name, socket.AddressFamily(sock.family), address, fd=sock.detach())


def _bind_once(spec: BindSpec) -> socket.socket:
    sock = socket.socket(spec.family, socket.SOCK_STREAM)
    try:
        if spec.family == socket.AF_UNIX:
            path = str(spec.address)
            _remove_stale_unix_socket(path)
            sock.bind(path)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spec.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(spec.address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    """Unlink ``path`` if it is a socket nobody listens on; refuse anything else there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError("bad_config", f"{path} exists and is not a socket", key="bind")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path} is in use")


def bind(
    spec: BindSpec,
    *,
    retry_for: float = BIND_RETRY_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> Listener:
    """Bind ``spec``. An address still held (a draining orphan of a previous supervisor) is
    retried for ``retry_for`` seconds before ``io_error``."""
    if spec.fd is not None:
        return Listener(spec, socket.socket(fileno=spec.fd))
    deadline = clock() + retry_for
    while True:
        try:
            return Listener(spec, _bind_once(spec))
        except OSError as e:
            if e.errno != errno.EADDRINUSE or clock() >= deadline:
                raise ResourceError(
                    "io_error",
                    f"cannot bind {spec.describe()}: {e.strerror or e}",
                    bind=spec.describe(),
                ) from None
            pause(0.1)


def close_all(listeners: list[Listener]) -> None:
    """At supervisor exit only: close the listeners and unlink unix socket paths."""
    for listener in listeners:
        listener.sock.close()
        if listener.spec.family == socket.AF_UNIX and listener.spec.fd is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(listener.spec.address))
