"""Is the entry an ASGI or a WSGI app, and how a WSGI app is served on an ASGI server.

``interface = "auto"`` decides as uvicorn's ``--interface auto`` does for ASGI (a coroutine
function, or an object whose ``__call__`` is one), and calls WSGI what takes exactly two
positional parameters (``environ, start_response``: Flask's ``app``, Django's
``WSGIHandler``). An ASGI2 class (one parameter, ``scope``) counts as ASGI: uvicorn adapts it.

A WSGI app runs behind a2wsgi's ``WSGIMiddleware``: each request in a pool of ``threads``
threads, its body streamed both ways. a2wsgi was picked by measurement against asgiref's
``WsgiToAsgi`` and uvicorn's own (deprecated) bridge: bench/bench_wsgi.py,
docs/stacks/flask.md.
"""

from __future__ import annotations

import inspect
from typing import Any

BRIDGE_MODULE = "a2wsgi"
BRIDGE_REQUIREMENT = "a2wsgi>=1.10"


def detect(app: Any) -> str:
    """``"asgi"`` or ``"wsgi"`` for an app object."""
    if inspect.isclass(app):
        return "asgi"  # an ASGI2 class, instantiated with the scope
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__):
        return "asgi"
    try:
        params = list(inspect.signature(app).parameters.values())
    except (TypeError, ValueError):
        return "asgi"
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return "wsgi" if len(positional) == 2 else "asgi"


def resolve(configured: str, app: Any) -> str:
    return detect(app) if configured == "auto" else configured


def as_asgi(app: Any, interface: str, threads: int) -> Any:
    """The app as an ASGI app: a WSGI one behind the bridge, with its own thread pool."""
    if interface != "wsgi":
        return app
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(app, workers=threads)
