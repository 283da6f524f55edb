"""The app's ``[tool.hotswap]`` table: what a release runs and how.

Example, in the app's ``pyproject.toml``::

    [tool.hotswap]
    entry = "myapp.main:app"        # module:attr, required: an ASGI app, a WSGI app, or a
                                    # function taking a hotswap.Serve (server = "callable")
    server = "uvicorn"              # uvicorn | hypercorn | waitress (WSGI) | callable
    interface = "auto"              # auto | asgi | wsgi (auto: detected from the entry)
    threads = 8                     # WSGI: requests run in a pool of this many threads
    workers = 2                     # processes per generation, or "auto" (the CPU count)
    health_path = "/health"         # HTTP GET on the private probe socket; omit for none
    health_host = "localhost"       # the probe's Host header (Django's ALLOWED_HOSTS)
    ws_drain_grace = 1.0            # at drain, open WebSockets get close 1012 after this
    before_cutover = "myapp.hooks:before"   # runs in the old generation
    after_cutover = "myapp.hooks:after"     # runs in the new generation
    boot_timeout = 60
    health_timeout = 5
    shutdown_timeout = 30
    listeners = ["http"]
    services = [{ name = "deployer", entry = "myapp.deployer:Deployer" }]
    metrics = "127.0.0.1:9100"      # the supervisor's Prometheus endpoint (hotswap[metrics])

    [tool.hotswap.uvicorn]          # passed to uvicorn.Config (hotswap.child.adapters.settings)
    proxy_headers = true
    forwarded_allow_ips = "10.0.0.1"

    [tool.hotswap.env]              # non-secret defaults baked into the release; the state
    LOG_FORMAT = "json"             # dir's environment file (hotswap env set) wins over them

An unknown key is an error that names it: a typo must not silently fall back to a default.
The validated table is baked into the release manifest under ``app``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from hotswap.child.adapters.settings import check_server_settings
from hotswap.errors import UsageError

SERVERS = ("uvicorn", "hypercorn", "waitress", "callable")
INTERFACES = ("auto", "asgi", "wsgi")
DEFAULT_THREADS = 8
MAX_WORKERS = 256
DEFAULT_WS_DRAIN_GRACE = 1.0
DEFAULT_HEALTH_HOST = "localhost"

DEFAULT_BOOT_TIMEOUT = 60.0
DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,255}$")
# set by the supervisor for every generation: a release may not override them
RESERVED_ENV_PREFIXES = ("HOTSWAP", "LISTEN_", "NOTIFY_SOCKET")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    entry: str


@dataclass(frozen=True)
class AppConfig:
    """The validated ``[tool.hotswap]`` table plus the project's distribution name."""

    distribution: str
    entry: str
    server: str = "uvicorn"
    interface: str = "auto"
    threads: int = DEFAULT_THREADS
    workers: int | str = 1  # worker processes per generation, or "auto" (the CPU count)
    health_path: str | None = None
    health_host: str = DEFAULT_HEALTH_HOST
    ws_drain_grace: float = DEFAULT_WS_DRAIN_GRACE
    before_cutover: str | None = None
    after_cutover: str | None = None
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    listeners: tuple[str, ...] = ("http",)
    services: tuple[ServiceSpec, ...] = field(default=())
    uvicorn: dict[str, Any] = field(default_factory=dict)
    hypercorn: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    metrics: str | None = None  # HOST:PORT of the supervisor's /metrics; `run --metrics` wins

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["listeners"] = list(self.listeners)
        out["services"] = [asdict(s) for s in self.services]
        return out

    def worker_count(self) -> int:
        """How many worker processes a generation of this release runs."""
        return worker_count(self.workers)

    def server_settings(self) -> dict[str, Any]:
        """The ``[tool.hotswap.<server>]`` table of the configured server."""
        return dict(self.hypercorn if self.server == "hypercorn" else self.uvicorn)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppConfig:
        """Read the ``app`` block of a manifest (already validated when it was built)."""
        table = dict(data)
        distribution = table.pop("distribution", None)
        if not isinstance(distribution, str) or not distribution:
            raise UsageError("bad_config", "app.distribution is missing", key="distribution")
        return parse_table(table, distribution=distribution, where="manifest app")


def _target(table: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise UsageError(
                "no_entry_point",
                f"{where} has no '{key}' (expected \"module:attr\")",
                key=key,
            )
        return None
    if not isinstance(value, str) or not _TARGET.match(value):
        raise UsageError(
            "bad_config", f'{where}.{key} must be "module:attr", got {value!r}', key=key
        )
    return value


def check_workers(value: object, where: str) -> int | str:
    """``workers``: an integer in [1, MAX_WORKERS] or ``"auto"`` (the CPU count)."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise UsageError(
            "bad_config",
            f'{where} must be an integer in [1, {MAX_WORKERS}] or "auto", not {_toml(value)}',
            key="workers",
        )
    return value


def _toml(value: object) -> str:
    """A value as the pyproject.toml it came from spells it (``true``, not ``True``)."""
    return json.dumps(value) if isinstance(value, bool | str) else repr(value)


def worker_count(workers: int | str) -> int:
    """The number of processes ``workers`` means here (``"auto"``: the CPUs it may use)."""
    if workers == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    assert isinstance(workers, int)
    return workers


def _seconds(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise UsageError(
            "bad_config", f"{where}.{key} must be a number of seconds in (0, 3600]", key=key
        )
    return float(value)


def _choice(table: dict[str, Any], key: str, choices: tuple[str, ...], where: str) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        raise UsageError(
            "bad_config",
            f"{where}.{key} must be one of {', '.join(choices)}, got {value!r}",
            key=key,
        )
    return str(value)


def _env(table: dict[str, Any], where: str) -> dict[str, str]:
    env = table.get("env", {})
    if not isinstance(env, dict):
        raise UsageError("bad_config", f"{where}.env must be a table of strings", key="env")
    for name, value in env.items():
        if not _ENV_NAME.match(name) or name.startswith(RESERVED_ENV_PREFIXES):
            raise UsageError(
                "bad_config",
                f"{where}.env: {name!r} is not a usable variable name (names starting with "
                f"{', '.join(RESERVED_ENV_PREFIXES)} are set by hotswap)",
                key="env",
            )
        if not isinstance(value, str) or "\0" in value:
            raise UsageError(
                "bad_config", f"{where}.env.{name} must be a string, got {value!r}", key="env"
            )
    return dict(env)


def parse_table(table: dict[str, Any], *, distribution: str, where: str) -> AppConfig:
    """Validate a ``[tool.hotswap]`` table. Raises :class:`UsageError` naming the key."""
    if not isinstance(table, dict):
        raise UsageError("bad_config", f"{where} must be a table")
    known = {f for f in AppConfig.__dataclass_fields__ if f != "distribution"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(
            "unknown_config_key",
            f"{where} has unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})",
            key=unknown[0],
        )
    entry = _target(table, "entry", where, required=True)
    assert entry is not None
    server = _choice(table, "server", SERVERS, where)
    interface = _choice(table, "interface", INTERFACES, where)
    threads = table.get("threads", DEFAULT_THREADS)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise UsageError(
            "bad_config", f"{where}.threads must be an integer in [1, 1024]", key="threads"
        )
    workers = check_workers(table.get("workers", 1), f"{where}.workers")
    health_host = table.get("health_host", DEFAULT_HEALTH_HOST)
    if not isinstance(health_host, str) or not _HOST.match(health_host):
        raise UsageError(
            "bad_config",
            f"{where}.health_host must be a host name (the probe's Host header), "
            f"got {health_host!r}",
            key="health_host",
        )
    grace = table.get("ws_drain_grace", DEFAULT_WS_DRAIN_GRACE)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 3600:
        raise UsageError(
            "bad_config",
            f"{where}.ws_drain_grace must be a number of seconds in [0, 3600]",
            key="ws_drain_grace",
        )
    settings = {
        name: check_server_settings(name, table.get(name, {}), f"{where}.{name}")
        for name in ("uvicorn", "hypercorn")
    }
    health_path = table.get("health_path")
    if health_path is not None and (
        not isinstance(health_path, str) or not health_path.startswith("/")
    ):
        raise UsageError(
            "bad_config", f"{where}.health_path must start with '/'", key="health_path"
        )
    listeners = table.get("listeners", ["http"])
    if (
        not isinstance(listeners, list)
        or not listeners
        or not all(isinstance(n, str) and _NAME.match(n) for n in listeners)
        or len(set(listeners)) != len(listeners)
    ):
        raise UsageError(
            "bad_config",
            f"{where}.listeners must be a list of distinct short lowercase names",
            key="listeners",
        )
    services = []
    raw_services = table.get("services", [])
    if not isinstance(raw_services, list):
        raise UsageError("bad_config", f"{where}.services must be a list", key="services")
    for i, spec in enumerate(raw_services):
        if not isinstance(spec, dict) or set(spec) != {"name", "entry"}:
            raise UsageError(
                "bad_config",
                f"{where}.services[{i}] must be a table with exactly 'name' and 'entry'",
                key="services",
            )
        if not isinstance(spec["name"], str) or not _NAME.match(spec["name"]):
            raise UsageError(
                "bad_config", f"{where}.services[{i}].name is not a short name", key="services"
            )
        service_entry = _target(spec, "entry", f"{where}.services[{i}]", required=True)
        assert service_entry is not None
        services.append(ServiceSpec(spec["name"], service_entry))
    return AppConfig(
        distribution=distribution,
        entry=entry,
        server=server,
        interface=interface,
        threads=threads,
        workers=workers,
        health_path=health_path,
        health_host=health_host,
        ws_drain_grace=float(grace),
        before_cutover=_target(table, "before_cutover", where),
        after_cutover=_target(table, "after_cutover", where),
        boot_timeout=_seconds(table, "boot_timeout", DEFAULT_BOOT_TIMEOUT, where),
        health_timeout=_seconds(table, "health_timeout", DEFAULT_HEALTH_TIMEOUT, where),
        shutdown_timeout=_seconds(table, "shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT, where),
        listeners=tuple(listeners),
        services=tuple(services),
        uvicorn=settings["uvicorn"],
        hypercorn=settings["hypercorn"],
        env=_env(table, where),
        metrics=_metrics(table, where),
    )


_METRICS_ADDRESS = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9._-]*):(\d{1,5})")


def parse_metrics_address(value: object, where: str) -> tuple[str, int]:
    """``metrics``: ``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (all IPv4 interfaces), parsed
    into the (host, port) the supervisor's metrics listener binds; ``bad_config`` otherwise."""
    match = _METRICS_ADDRESS.fullmatch(value) if isinstance(value, str) else None
    port = int(match.group(2) or match.group(4)) if match else -1
    if match is None or not 0 < port <= 65535:
        raise UsageError(
            "bad_config",
            f"{where} must be HOST:PORT, [IPV6]:PORT or :PORT with a port in [1, 65535], "
            f"got {value!r}",
            key="metrics",
        )
    host = match.group(1) or match.group(3) or "0.0.0.0"
    return host, port


def _metrics(table: dict[str, Any], where: str) -> str | None:
    value = table.get("metrics")
    if value is None:
        return None
    parse_metrics_address(value, f"{where}.metrics")
    return str(value)
