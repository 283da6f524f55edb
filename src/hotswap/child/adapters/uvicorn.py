"""Serve an ASGI app with uvicorn, gated and drained the hotswap way.

uvicorn's ``Server.serve()`` binds everything at once and, on shutdown, closes idle keep-alive
connections immediately (a client sending its next request on one gets a reset). So we drive
its parts ourselves:

1. ``Server.startup(sockets=[probe])``: ASGI lifespan start-up, then serve the private probe
   socket only; report ready.
2. On ``go``: serve the public listeners with a protocol factory made as ``startup()``
   makes its own (public attributes only: ``Config.http_protocol_class``,
   ``Server.server_state``, ``lifespan.state``), so any loop (asyncio, uvloop) and any
   protocol (h11, httptools) works the same.
3. On ``drain``: every response from now on carries ``Connection: close`` (a small ASGI
   wrapper: uvicorn's h11 path only adds it when the request asked); close (never
   ``shutdown()``) our copies of the listeners, so queued connections wait for the next
   generation; a busy connection finishes its response and closes after the next one (which
   says ``Connection: close``), or on the keep-alive timer if none comes; an idle keep-alive
   connection is left to uvicorn's keep-alive timer, counted from its last response as in
   steady state (a client pausing between requests sends its next one on it and gets
   ``Connection: close``; closing idle connections early resets clients that pause); a
   connection that never sent a request gets the same ``timeout_keep_alive``; wait for
   in-flight tasks; lifespan shutdown. An open WebSocket gets ``ws_drain_grace`` seconds (the
   app may say goodbye itself: ``await hotswap.wait_draining()``), then uvicorn's own
   ``shutdown()`` of its WebSocket protocol sends close code 1012 (service restart), so the
   client reconnects to the next generation, which is already accepting.

Between start-up and drain, uvicorn's once-a-tick housekeeping runs as in ``serve()`` (the
``Date`` and ``Server`` headers, ``limit_max_requests``, which drains the generation; the
supervisor then starts a fresh one).

The supervisor's ``shutdown_timeout`` bounds all of it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import Callable
from typing import Any

from hotswap.child.runtime import STARTUP_FAILURE, ChildRuntime, log

BACKLOG = 4096
_POLL = 0.02


class DrainAware:
    """ASGI wrapper for the drain.

    - Once the generation drains, every HTTP response says ``Connection: close``.
    - A request that asks for ``text/event-stream`` (an EventSource) runs as a task of its own.
      An event stream never ends by itself, so at drain the task is cancelled and the stream
      is finished cleanly (its last chunk sent); the browser reconnects, to the next
      generation, which is already accepting. Without this a drain would wait for
      ``shutdown_timeout`` and then be killed, cutting the stream anyway.
    """

    def __init__(self, app: Any, runtime: ChildRuntime, track_websockets: bool = False) -> None:
        self.app = app
        self.runtime = runtime
        self.track_websockets = track_websockets  # for servers without a close-all of their own
        self.websockets: dict[int, tuple[Any, asyncio.Event]] = {}
        self.streams: set[asyncio.Task[None]] = set()
        self.stream_scopes: set[int] = set()  # id() of the scopes of open event streams

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and self.track_websockets:
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        http1 = str(scope.get("http_version", "1.1")).startswith("1")
        started = False
        finished = False

        async def send_wrapper(message: Any) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
                if self.runtime.draining and http1:
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                    ]
                    headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        accept = dict(scope.get("headers") or ()).get(b"accept", b"")
        if b"text/event-stream" not in accept:
            await self.app(scope, receive, send_wrapper)
            return
        task = asyncio.ensure_future(self.app(scope, receive, send_wrapper))
        self.streams.add(task)
        self.stream_scopes.add(id(scope))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                task.cancel()  # the request itself was cancelled: pass it on
                raise
            if started and not finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.streams.discard(task)
            self.stream_scopes.discard(id(scope))

    async def _websocket(self, scope: Any, receive: Any, send: Any) -> None:
        """Run a WebSocket so that :meth:`close_websockets` can end it: the client gets close
        1012 and the app's next ``receive()`` a disconnect."""
        closed = asyncio.Event()

        async def receive_wrapper() -> Any:
            if closed.is_set():
                return {"type": "websocket.disconnect", "code": 1012}
            message = asyncio.ensure_future(receive())
            ending = asyncio.ensure_future(closed.wait())
            await asyncio.wait({message, ending}, return_when=asyncio.FIRST_COMPLETED)
            if message.done():
                ending.cancel()
                return message.result()
            message.cancel()
            return {"type": "websocket.disconnect", "code": 1012}

        async def send_wrapper(message: Any) -> None:
            if not closed.is_set():
                await send(message)

        self.websockets[id(scope)] = (send, closed)
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self.websockets.pop(id(scope), None)

    async def close_websockets(self) -> int:
        """Close every open WebSocket with 1012 (service restart)."""
        count = 0
        for send, closed in list(self.websockets.values()):
            if not closed.is_set():
                closed.set()
                count += 1
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1012})
        if count:
            log(f"{self.runtime.name}: closed {count} WebSocket(s) (1012)")
        return count

    def end_streams(self) -> int:
        for task in list(self.streams):
            task.cancel()
        return len(self.streams)


def _protocol_factory(server: Any) -> Callable[..., asyncio.Protocol]:
    """What ``Server.startup`` hands ``create_server``, built from public attributes."""
    config = server.config
    factory: Callable[..., asyncio.Protocol] = functools.partial(
        config.http_protocol_class,
        config=config,
        server_state=server.server_state,
        app_state=server.lifespan.state,
    )
    return factory


async def _wait(runtime: ChildRuntime, wake: asyncio.Event, until: Any) -> None:
    while not until():
        await wake.wait()
        wake.clear()


async def _serve(server: Any, runtime: ChildRuntime) -> int:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def waker() -> None:
        loop.call_soon_threadsafe(wake.set)

    runtime.add_waker(waker)
    from hotswap.hot.quiesce import set_quiescence

    set_quiescence(loop=loop)  # a hot upgrade commits on this loop, as one step
    loop.add_signal_handler(signal.SIGTERM, runtime.on_sigterm)
    config = server.config
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup(sockets=[runtime.probe])
    except SystemExit:
        return STARTUP_FAILURE
    if server.lifespan.should_exit or not server.started:
        return STARTUP_FAILURE
    ticker = asyncio.ensure_future(_tick(server, runtime))
    runtime.report_ready()
    await _wait(runtime, wake, lambda: runtime.go.is_set() or runtime.draining)
    if not runtime.draining:
        factory = _protocol_factory(server)
        for _name, sock in runtime.listeners:
            server.servers.append(await loop.create_server(factory, sock=sock, backlog=BACKLOG))
        runtime.report_serving()
    await _wait(runtime, wake, lambda: runtime.draining)
    ticker.cancel()
    await _drain(server, runtime)
    return 0


async def _tick(server: Any, runtime: ChildRuntime) -> None:
    """uvicorn's main-loop housekeeping, every 0.1 s, as ``Server.main_loop`` does."""
    counter = 0
    while True:
        if await server.on_tick(counter):
            runtime.begin_drain("uvicorn asked to stop (limit_max_requests)")
            return
        counter = (counter + 1) % 864000
        await asyncio.sleep(0.1)


def _accepting() -> int:
    """Connections asyncio accepted whose transport and protocol are not made yet."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("_accept_connection2")
    )


async def _stop_accepting(servers: list[Any]) -> None:
    """Stop accepting, then close our copies of the listeners, in that order.

    asyncio (3.11) accepts in a reader callback and finishes each connection in a task that
    runs on a later loop iteration and attaches it to its ``Server``; if ``Server.close()``
    ran in between, that task fails and the accepted socket is dropped unread: a reset. So we
    remove the accept callbacks first, let every accepted connection reach its protocol, and
    only then close (never ``shutdown()``) the listener copies.
    """
    loop = asyncio.get_running_loop()
    if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        for srv in servers:
            for sock in srv.sockets or ():
                loop.remove_reader(sock.fileno())
    await asyncio.sleep(0)
    while _accepting():
        await asyncio.sleep(0)
    for srv in servers:
        srv.close()


async def _drain(server: Any, runtime: ChildRuntime) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _stop_accepting(server.servers)
    wrapper = server.config.loaded_app
    connections = server.server_state.connections
    if isinstance(wrapper, DrainAware):
        for connection in list(connections):
            cycle = getattr(connection, "cycle", None)
            if id(getattr(cycle, "scope", None)) in wrapper.stream_scopes:
                connection.shutdown()  # an event stream's client reconnects: close after it
        ended = wrapper.end_streams()
        if ended:
            log(f"{runtime.name}: ended {ended} event stream(s) for reconnect")
    ws_class = server.config.ws_protocol_class
    # A busy connection is not shut down: if its response started before the drain, its
    # headers went out without "Connection: close", and closing it after that response
    # resets a client that sends its next request at once (a WSGI app's response spans
    # several loop iterations, so this window is wide). Its next response says close.
    ws_grace = runtime.config.ws_drain_grace
    ws_closed = False
    # Idle keep-alive connections close on uvicorn's own timer (from their last response);
    # one that never carried a request has no timer, so it gets the same time from now.
    grace = float(os.environ.get("HOTSWAP_IDLE_GRACE", server.config.timeout_keep_alive))
    while connections:
        elapsed = loop.time() - started
        if not ws_closed and elapsed >= ws_grace:
            ws_closed = True
            sockets = [c for c in list(connections) if _is_ws(c, ws_class)]
            for connection in sockets:
                connection.shutdown()  # close frame 1012 (service restart)
            if sockets:
                log(f"{runtime.name}: closed {len(sockets)} WebSocket(s) (1012)")
        if elapsed >= grace:
            for connection in list(connections):
                if getattr(connection, "cycle", True) is None:
                    connection.shutdown()
        await asyncio.sleep(_POLL)
    while server.server_state.tasks:
        await asyncio.sleep(_POLL)
    await server.lifespan.shutdown()
    log(f"{runtime.name}: drained in {(loop.time() - started) * 1000:.0f} ms")


def _is_ws(connection: Any, ws_class: Any) -> bool:
    return ws_class is not None and isinstance(connection, ws_class)


def make_config(runtime: ChildRuntime, app: Any) -> Any:
    """``uvicorn.Config`` from the release's ``[tool.hotswap.uvicorn]`` table (checked at
    build), a WSGI entry behind the bridge."""
    import uvicorn

    from hotswap.child.adapters.interface import as_asgi, resolve

    app_config = runtime.config
    interface = resolve(app_config.interface, app)
    options: dict[str, Any] = {
        "lifespan": "auto",
        "access_log": os.environ.get("HOTSWAP_ACCESS_LOG", "") in ("1", "true", "yes"),
        "log_level": os.environ.get("HOTSWAP_LOG_LEVEL", "info"),
    }
    options.update(app_config.uvicorn)
    if isinstance(options.get("headers"), list):
        options["headers"] = [tuple(pair) for pair in options["headers"]]
    options["timeout_graceful_shutdown"] = None
    log(f"{runtime.name}: {interface.upper()} app on uvicorn")
    return uvicorn.Config(as_asgi(app, interface, app_config.threads), **options)


def run(runtime: ChildRuntime, app: Any) -> int:
    import uvicorn

    config = make_config(runtime, app)
    config.load()
    config.loaded_app = DrainAware(config.loaded_app, runtime)
    server = uvicorn.Server(config)
    loop_factory = config.get_loop_factory() if hasattr(config, "get_loop_factory") else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        code = runner.run(_serve(server, runtime))
    if code == 0:
        runtime.run_before_cutover()
    return code
