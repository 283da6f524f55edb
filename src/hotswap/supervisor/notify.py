"""Small OS helpers of the supervisor: systemd's notify protocol and giving the heap back."""

from __future__ import annotations

import contextlib
import os
import socket
import time


def trim_heap() -> None:
    """Hand the heap freed by a swap's transient work (unpacking, parsing) back to the OS, so
    the long-lived supervisor stays small (glibc keeps it otherwise)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def sd_notify(message: str) -> None:
    """systemd's notify protocol (Type=notify / notify-reload), if NOTIFY_SOCKET is set."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        sock.sendto(message.encode(), path)


def reloading() -> None:
    """systemd: a reload (a swap) starts; notify-reload wants the monotonic time with it."""
    sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
