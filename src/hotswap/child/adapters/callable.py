"""Serve any TCP server: the user's function is handed the sockets through a :class:`Serve`.

``[tool.hotswap] entry = "myapp.server:serve"``, ``server = "callable"``, and::

    def serve(ctx: hotswap.Serve) -> None:
        ...start up; optionally answer health probes on ctx.probe ...
        ctx.ready()                      # start-up done
        for sock in ctx.listeners():     # blocks until the supervisor allows public traffic
            ...accept on sock...
        ctx.wait_drain()                 # then close (never shutdown()) the sockets,
        ...finish in-flight work...      # finish in-flight work and return

The listening sockets are shared with the other generation: they are handed over with a
timeout (Python keeps the descriptor non-blocking and polls), and must never be switched to
blocking mode (``settimeout(None)``, ``setblocking(True)``), which would change them for the
other generation too.
"""

from __future__ import annotations

import signal
import socket
import threading
import traceback
from typing import Any

from hotswap.child.runtime import STARTUP_FAILURE, ChildRuntime

ACCEPT_TIMEOUT = 0.5


class Serve:
    """What a ``callable`` server gets: sockets, readiness, drain."""

    def __init__(self, runtime: ChildRuntime) -> None:
        self._runtime = runtime
        self._wake = threading.Condition()
        runtime.add_waker(self._notify)

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    @property
    def generation(self) -> int:
        return self._runtime.generation

    @property
    def probe(self) -> socket.socket:
        """The private probe socket (a unix listener only the supervisor connects to)."""
        return self._runtime.probe

    @property
    def draining(self) -> threading.Event:
        return self._runtime.drain

    def ready(self) -> None:
        """Tell the supervisor start-up is complete."""
        self._runtime.report_ready()

    def listeners(self, timeout: float | None = None) -> list[socket.socket]:
        """Block until public traffic is allowed; the public listeners (empty if the
        generation is told to drain first)."""
        with self._wake:
            self._wake.wait_for(
                lambda: self._runtime.go.is_set() or self._runtime.draining, timeout
            )
        if self._runtime.draining or not self._runtime.go.is_set():
            return []
        socks = [sock for _name, sock in self._runtime.listeners]
        for sock in socks:
            sock.settimeout(ACCEPT_TIMEOUT)
        self._runtime.report_serving()
        return socks

    def named_listeners(self) -> dict[str, socket.socket]:
        return {name: sock for name, sock in self._runtime.listeners}

    def wait_drain(self, timeout: float | None = None) -> bool:
        return self._runtime.drain.wait(timeout)


def run(runtime: ChildRuntime, fn: Any) -> int:
    # The handler only records: the drain itself runs on a thread, outside the handler.
    signal.signal(
        signal.SIGTERM,
        lambda _sig, _frame: threading.Thread(target=runtime.on_sigterm, daemon=True).start(),
    )
    ctx = Serve(runtime)
    try:
        result = fn(ctx)
    except BaseException:
        traceback.print_exc()
        return 1 if runtime.ready_reported else STARTUP_FAILURE
    if not runtime.ready_reported:
        return STARTUP_FAILURE
    runtime.run_before_cutover()
    return int(result or 0)
