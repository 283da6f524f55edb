"""Serve an ASGI or WSGI app with hypercorn (HTTP/1.1 and HTTP/2 over cleartext, h2c),
gated and drained the hotswap way.

hypercorn's ``serve()`` binds everything at once and, at shutdown, closes idle keep-alive
connections at once (a client sending its next request then is reset). So, as for uvicorn, we
drive its parts (``Lifespan``, ``TCPServer``, ``WorkerContext``, ``wrap_app``: the pieces its
own ``worker_serve`` uses) on sockets we own; nothing closes or takes over the supervisor's
descriptors, only this process's copies:

1. lifespan start-up, then serve the private probe socket only; report ready;
2. on ``go``: serve the public listeners too;
3. on ``drain``: stop accepting (our copies closed, never ``shutdown()``); HTTP/1.1
   responses say ``Connection: close``; open WebSockets get close 1012 after
   ``ws_drain_grace``; event streams end with their last chunk; once the connections are
   idle, or after ``keep_alive_timeout``, hypercorn's ``terminated`` event closes what is
   left (HTTP/2 connections get GOAWAY); then in-flight tasks, lifespan shutdown.

A WSGI app runs in a pool of ``threads`` threads (the loop's default executor, which
hypercorn's WSGI wrapper uses). ``[tool.hotswap.hypercorn]`` sets ``hypercorn.config.Config``
attributes. The supervisor's ``shutdown_timeout`` bounds all of it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
from typing import Any

from hotswap.child.adapters.interface import resolve
from hotswap.child.adapters.uvicorn import BACKLOG, DrainAware, _stop_accepting, _wait
from hotswap.child.runtime import STARTUP_FAILURE, ChildRuntime, log

_POLL = 0.02


def make_config(runtime: ChildRuntime) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.accesslog = None
    config.errorlog = "-"
    for key, value in runtime.config.hypercorn.items():
        setattr(config, key, value)
    config.graceful_timeout = runtime.config.shutdown_timeout
    return config


async def _serve(app: Any, runtime: ChildRuntime) -> int:
    from hypercorn.asyncio.lifespan import Lifespan
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.asyncio.worker_context import WorkerContext
    from hypercorn.utils import wrap_app

    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def waker() -> None:
        loop.call_soon_threadsafe(wake.set)

    runtime.add_waker(waker)
    from hotswap.hot.quiesce import set_quiescence

    set_quiescence(loop=loop)
    loop.add_signal_handler(signal.SIGTERM, runtime.on_sigterm)
    loop.set_default_executor(
        concurrent.futures.ThreadPoolExecutor(runtime.config.threads, thread_name_prefix="WSGI")
    )
    config = make_config(runtime)
    interface = resolve(runtime.config.interface, app)
    log(f"{runtime.name}: {interface.upper()} app on hypercorn")
    if interface == "asgi":
        app = DrainAware(app, runtime, track_websockets=True)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "wsgi" if interface == "wsgi" else "asgi")
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, loop, state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    if lifespan_task.done() and lifespan_task.exception() is not None:
        return STARTUP_FAILURE
    context = WorkerContext(None)
    tasks: set[asyncio.Task[Any]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await TCPServer(wrapped, loop, config, context, state, reader, writer)

    servers = [await asyncio.start_server(connected, sock=runtime.probe, backlog=BACKLOG)]
    runtime.report_ready()
    await _wait(runtime, wake, lambda: runtime.go.is_set() or runtime.draining)
    if not runtime.draining:
        for _name, sock in runtime.listeners:
            servers.append(await asyncio.start_server(connected, sock=sock, backlog=BACKLOG))
        runtime.report_serving()
    await _wait(runtime, wake, lambda: runtime.draining)
    started = loop.time()
    await _stop_accepting(servers)
    if isinstance(app, DrainAware):
        app.end_streams()
    while tasks and loop.time() - started < config.keep_alive_timeout:
        if isinstance(app, DrainAware) and loop.time() - started >= runtime.config.ws_drain_grace:
            await app.close_websockets()
        await asyncio.sleep(_POLL)
    await context.terminated.set()  # idle connections close, HTTP/2 ones get GOAWAY
    while tasks:
        await asyncio.sleep(_POLL)
    await lifespan.wait_for_shutdown()
    lifespan_task.cancel()
    log(f"{runtime.name}: drained in {(loop.time() - started) * 1000:.0f} ms")
    return 0


def run(runtime: ChildRuntime, app: Any) -> int:
    with asyncio.Runner() as runner:
        code = runner.run(_serve(app, runtime))
    if code == 0:
        runtime.run_before_cutover()
    return code
