"""The ``[tool.hotswap.uvicorn]`` and ``[tool.hotswap.hypercorn]`` tables: which server
settings a release may pass, and of what type.

They are checked at build (an unknown key or a wrong type is an error that names it) and
passed as they are to ``uvicorn.Config(**table)`` or set on ``hypercorn.config.Config``.
Settings that hotswap itself decides are not offered: where to listen (host, port, fd, uds,
bind; the supervisor owns the sockets), TLS (the probe would need it too), workers, reload,
and the graceful-shutdown timeouts (``shutdown_timeout`` bounds the drain).

This module imports no server: the supervisor and ``hotswap build`` read it.
"""

from __future__ import annotations

from typing import Any

from hotswap.errors import UsageError

_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_BOOL = (bool,)
_LIST = (list,)

UVICORN: dict[str, tuple[type, ...]] = {
    "loop": _STR,  # auto | asyncio | uvloop | module:attr
    "http": _STR,  # auto | h11 | httptools
    "ws": _STR,  # auto | none | websockets | websockets-sansio | wsproto
    "ws_max_size": _INT,
    "ws_max_queue": _INT,
    "ws_ping_interval": _NUM,
    "ws_ping_timeout": _NUM,
    "ws_per_message_deflate": _BOOL,
    "lifespan": _STR,  # auto | on | off
    "log_level": (str, int),
    "log_config": (str, dict),  # a file name, or a logging.config.dictConfig table
    "access_log": _BOOL,
    "use_colors": _BOOL,
    "proxy_headers": _BOOL,
    "forwarded_allow_ips": (str, list),
    "server_header": _BOOL,
    "date_header": _BOOL,
    "root_path": _STR,
    "limit_concurrency": _INT,
    "limit_max_requests": _INT,
    "timeout_keep_alive": _NUM,
    "h11_max_incomplete_event_size": _INT,
    "headers": _LIST,  # [["X-Name", "value"], ...]
}

HYPERCORN: dict[str, tuple[type, ...]] = {
    "access_log_format": _STR,
    "accesslog": _STR,  # "-" for stdout, or a file name
    "errorlog": _STR,
    "loglevel": _STR,
    "logconfig": _STR,
    "logconfig_dict": (dict,),
    "alpn_protocols": _LIST,
    "alt_svc_headers": _LIST,
    "include_date_header": _BOOL,
    "include_server_header": _BOOL,
    "keep_alive_timeout": _NUM,
    "keep_alive_max_requests": _INT,
    "h11_max_incomplete_size": _INT,
    "h11_pass_raw_headers": _BOOL,
    "h2_max_concurrent_streams": _INT,
    "h2_max_header_list_size": _INT,
    "h2_max_inbound_frame_size": _INT,
    "max_app_queue_size": _INT,
    "read_timeout": _INT,
    "root_path": _STR,
    "server_names": _LIST,
    "startup_timeout": _NUM,
    "websocket_max_message_size": _INT,
    "websocket_ping_interval": _NUM,
    "wsgi_max_body_size": _INT,
}

SCHEMAS = {"uvicorn": UVICORN, "hypercorn": HYPERCORN}


def check_server_settings(server: str, table: Any, where: str) -> dict[str, Any]:
    """Validate one server table; returns a copy. Raises :class:`UsageError` naming the key."""
    schema = SCHEMAS[server]
    if not isinstance(table, dict):
        raise UsageError("bad_config", f"{where} must be a table", key=server)
    for key, value in table.items():
        types = schema.get(key)
        if types is None:
            raise UsageError(
                "unknown_config_key",
                f"{where} has unknown key {key!r} ({server}.{key}; known: "
                f"{', '.join(sorted(schema))})",
                key=f"{server}.{key}",
            )
        bad_bool = isinstance(value, bool) and bool not in types
        if bad_bool or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise UsageError(
                "bad_config",
                f"{where}.{key} must be a {names}, got {value!r}",
                key=f"{server}.{key}",
            )
    return dict(table)
