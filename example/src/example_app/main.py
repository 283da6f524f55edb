"""The example app: one page that rebuilds itself and swaps to the new build while you watch.

Routes:

- ``GET /``: the page (inline CSS and JS, no CDN);
- ``GET /static/theme.css``: the build's stylesheet (see :mod:`example_app`; the page swaps it
  in place when a hot upgrade changes it);
- ``GET /health``: the health probe hotswap runs before a cutover;
- ``GET /api/ping``: what the page calls every ~100 ms to count requests during swaps;
- ``GET /api/info``: the label, version, generation, pid, visit counter;
- ``POST /api/deploy``: ``{"label", "mode": "blue-green"|"hot", "fault": null|"build"|"boot"}``,
  asks the ``deployer`` service to rebuild and swap (202), or says why not (409 while a deploy
  runs, with the code ``upgrade_in_progress``);
- ``GET /api/events``: server-sent events: ``hello`` (the connection id), ``info``, ``deploy``
  (the deploy's state) and ``log`` (build output and swap phases, with ``id:`` set so that a
  reconnecting browser resumes where it left off).

The label comes from :mod:`example_app._build`, a module the deployer writes for each build;
it is read as ``_build.LABEL`` at request time, so a hot upgrade that changes it is seen at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

import example_app
import hotswap
from example_app import _build

PAGE = Path(__file__).with_name("page.html")
CARDS = ("Deploy the blue release", "Ship the green build", "Promote the purple zip")
POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 10.0

# In-memory state of this process: a hot upgrade keeps it, a blue-green swap starts afresh.
STATE: dict[str, Any] = {"visits": 0, "live": 0, "started_at": time.time()}
_connections = itertools.count(1)
_release: dict[str, Any] = {"id": None, "checked": 0.0}


def draining() -> bool:
    """True once the supervisor told this generation to drain (a successor is live)."""
    import hotswap

    return hotswap.draining()


def release_id() -> str | None:
    """The release this process runs (it changes on a hot upgrade)."""
    import hotswap

    return hotswap.release_id()


def info() -> dict[str, Any]:
    return {
        "label": _build.LABEL,
        "version": _build.VERSION,
        "build": _build.BUILD,
        "release": release_id(),
        "generation": hotswap.generation(),
        "pid": os.getpid(),
        "visits": STATE["visits"],
        "live": STATE["live"],
        "cards": list(CARDS),
        "style": example_app.STYLE_VERSION,
    }


async def homepage(request: Request) -> Response:
    STATE["visits"] += 1
    initial = json.dumps(info()).replace("</", "<\\/")
    html = PAGE.read_text(encoding="utf-8").replace("/*__INITIAL__*/null", initial)
    return HTMLResponse(html, headers={"cache-control": "no-store"})


async def theme(request: Request) -> Response:
    css = example_app.STYLE_PATH.read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"cache-control": "no-cache"})


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def ping(request: Request) -> Response:
    return JSONResponse(
        {
            "generation": hotswap.generation(),
            "pid": os.getpid(),
            "version": _build.VERSION,
            "label": _build.LABEL,
        },
        headers={"cache-control": "no-store"},
    )


async def api_info(request: Request) -> Response:
    return JSONResponse(info(), headers={"cache-control": "no-store"})


def _error(e: hotswap.HotswapError, status: int) -> Response:
    return JSONResponse({"error": e.code, "message": e.message}, status_code=status)


async def deploy(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JSONResponse({"error": "bad_request", "message": "send a JSON object"}, 400)
    try:
        started = await run_in_threadpool(
            hotswap.call_service,
            "deployer",
            "deploy",
            body.get("label"),
            mode=body.get("mode") or "blue-green",
            fault=body.get("fault") or None,
        )
    except hotswap.UsageError as e:
        return _error(e, 409 if e.code == "upgrade_in_progress" else 400)
    except hotswap.HotswapError as e:
        return _error(e, 503)
    return JSONResponse({"deploy": started}, status_code=202)


def _sse(event: str, data: Any, ident: int | None = None) -> str:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


def _deployer_log(since: int) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = hotswap.call_service("deployer", "log", since=since)
        return result
    except hotswap.HotswapError:
        return None  # not under a supervisor, or the deployer is restarting


async def events(request: Request) -> Response:
    conn = f"{secrets.token_hex(2)}-{next(_connections)}"
    try:
        since = int(request.headers.get("last-event-id", "0"))
    except ValueError:
        since = 0

    async def stream() -> AsyncIterator[str]:
        nonlocal since
        STATE["live"] += 1
        try:
            yield "retry: 400\n\n"
            yield _sse("hello", {"conn": conn, "info": info()})
            last_info: dict[str, Any] | None = None
            last_deploy: Any = object()
            last_write = time.monotonic()
            # A generation that drains ends its streams, so the browser reconnects to the
            # new one; a hot upgrade keeps the process, and this very stream goes on.
            while not draining():
                out = []
                log = await run_in_threadpool(_deployer_log, since)
                if log is not None:
                    if log["deploy"] != last_deploy:
                        last_deploy = log["deploy"]
                        out.append(_sse("deploy", last_deploy))
                    if log["entries"]:
                        since = log["entries"][-1]["seq"]
                        out.append(_sse("log", {"entries": log["entries"]}, since))
                current = info()
                if current != last_info:
                    last_info = current
                    out.append(_sse("info", current))
                if not out and time.monotonic() - last_write > KEEPALIVE_SECONDS:
                    out.append(": keep-alive\n\n")
                if out:
                    last_write = time.monotonic()
                    yield "".join(out)
                await asyncio.sleep(POLL_SECONDS)
            yield _sse("bye", {"conn": conn, "reason": "this generation is draining"})
        finally:
            STATE["live"] -= 1

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/static/theme.css", theme),
        Route("/health", health),
        Route("/api/ping", ping),
        Route("/api/info", api_info),
        Route("/api/deploy", deploy, methods=["POST"]),
        Route("/api/events", events),
    ]
)
