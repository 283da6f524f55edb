"""Serve a WSGI app with waitress, gated and drained the hotswap way.

waitress is a WSGI server (no asyncio, no bridge): one thread runs its socket loop
(``wasyncore``) and parses HTTP, a pool of ``threads`` threads runs the app. Measured against
uvicorn + a2wsgi and gunicorn's gthread worker on the same Flask app: bench/bench_wsgi_servers.py,
docs/benchmarks-workers.md. We drive its parts on sockets we were handed (``create_server(app,
sockets=[...])`` never binds them, only calls ``listen()`` again, which changes nothing):

1. serve the private probe socket only; report ready;
2. on ``go``: serve the public listeners too, in the same socket map and thread pool;
3. on ``drain``: stop accepting (the listener objects leave the map, then our copies are
   closed, never ``shutdown()``; waitress accepts synchronously, so no accepted connection is
   left half made); every response from now on says ``Connection: close``; a keep-alive
   connection idle for ``HOTSWAP_IDLE_GRACE`` seconds (5 by default, uvicorn's
   ``timeout_keep_alive``) since its last activity is closed, as its keep-alive timer would
   in steady state; once no connection is left, the thread pool stops.

Hot upgrades: every request passes an :class:`~hotswap.hot.quiesce.UpgradeGate` (entered
when the app is called, left when its response is closed, in the same request thread), which
is registered as this process's quiescence point: a hot upgrade closes the gate, waits for
the requests in flight, commits, and reopens it. The supervisor's ``shutdown_timeout`` bounds
the drain with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from hotswap.child.adapters.interface import resolve
from hotswap.child.runtime import STARTUP_FAILURE, ChildRuntime, log

BACKLOG = 4096
_TICK = 0.1


class _Gated:
    """The WSGI app with each request inside the upgrade gate, until its response closes."""

    def __init__(self, app: Any, gate: Any) -> None:
        self.app = app
        self.gate = gate

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.gate.enter()
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self.gate.exit()
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(result, wrapper):
            self.gate.exit()  # waitress sends the file itself, from its socket loop
            return result
        return _Closing(result, self.gate)


class _Closing:
    def __init__(self, result: Any, gate: Any) -> None:
        self.result = result
        self.gate = gate
        self.done = False

    def __iter__(self) -> Any:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            if not self.done:
                self.done = True
                self.gate.exit()


def run(runtime: ChildRuntime, app: Any) -> int:
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    from waitress.server import create_server
    from waitress.task import ThreadedTaskDispatcher, WSGITask

    interface = resolve(runtime.config.interface, app)
    if interface != "wsgi":
        log(f'{runtime.name}: server = "waitress" serves WSGI apps; {runtime.config.entry} is ASGI')
        return STARTUP_FAILURE
    log(f"{runtime.name}: WSGI app on waitress")
    from hotswap.hot.quiesce import UpgradeGate, set_quiescence

    gate = UpgradeGate()
    set_quiescence(gate=gate)
    app = _Gated(app, gate)

    class DrainTask(WSGITask):  # type: ignore[misc]
        def build_response_header(self) -> Any:
            if runtime.draining:
                self.request.headers["CONNECTION"] = "close"
            return super().build_response_header()

    class Channel(HTTPChannel):  # type: ignore[misc]
        task_class = DrainTask

    socket_map: dict[int, Any] = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(runtime.config.threads)
    options: dict[str, Any] = {
        "threads": runtime.config.threads,
        "backlog": BACKLOG,
        "ident": "",
        "expose_tracebacks": False,
    }

    def serve(sock: Any) -> Any:
        server = create_server(
            app, map=socket_map, _dispatcher=dispatcher, sockets=[sock], **options
        )
        server.channel_class = Channel
        return server

    servers = [serve(runtime.probe)]
    runtime.add_waker(servers[0].pull_trigger)
    signal.signal(signal.SIGTERM, lambda *_: runtime.on_sigterm())

    def loop_until(done: Any) -> None:
        while not done():
            wasyncore.loop(timeout=_TICK, map=socket_map, count=1)

    runtime.report_ready()
    loop_until(lambda: runtime.go.is_set() or runtime.draining)
    if not runtime.draining:
        servers += [serve(sock) for _name, sock in runtime.listeners]
        runtime.report_serving()
    loop_until(lambda: runtime.draining)
    started = time.monotonic()
    for server in servers:
        server.accepting = False
        server.del_channel()  # out of the map first: nothing accepts on it from now on
        server.socket.close()  # our copy only; never shutdown()
    grace = float(os.environ.get("HOTSWAP_IDLE_GRACE", "5"))

    def channels() -> list[Any]:
        return [c for c in socket_map.values() if isinstance(c, HTTPChannel)]

    def drained() -> bool:
        now = time.time()
        for channel in channels():
            idle = not channel.requests and not channel.total_outbufs_len
            if idle and now - channel.last_activity >= grace:
                channel.will_close = True  # its keep-alive timer: closed when next polled
        return not channels()

    loop_until(drained)
    dispatcher.shutdown(timeout=max(1.0, runtime.config.shutdown_timeout))
    for server in servers:
        server.trigger.close()
    log(f"{runtime.name}: drained in {(time.monotonic() - started) * 1000:.0f} ms")
    runtime.run_before_cutover()
    return 0
