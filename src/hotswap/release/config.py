"""The app's ``[tool.hotswap]`` table: what a release runs and how.

Example, in the app's ``pyproject.toml``::

    [tool.hotswap]
    entry = "myapp.main:app"        # module:attr, required
    server = "uvicorn"              # uvicorn | callable
    health_path = "/health"         # HTTP GET on the private probe socket; omit for none
    before_cutover = "myapp.hooks:before"   # runs in the old generation
    after_cutover = "myapp.hooks:after"     # runs in the new generation
    boot_timeout = 60
    health_timeout = 5
    shutdown_timeout = 30
    listeners = ["http"]
    services = [{ name = "deployer", entry = "myapp.deployer:Deployer" }]

An unknown key is an error that names it: a typo must not silently fall back to a default.
The validated table is baked into the release manifest under ``app``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from hotswap.errors import UsageError

SERVERS = ("uvicorn", "callable")

DEFAULT_BOOT_TIMEOUT = 60.0
DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


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
    health_path: str | None = None
    before_cutover: str | None = None
    after_cutover: str | None = None
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    listeners: tuple[str, ...] = ("http",)
    services: tuple[ServiceSpec, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["listeners"] = list(self.listeners)
        out["services"] = [asdict(s) for s in self.services]
        return out

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


def _seconds(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise UsageError(
            "bad_config", f"{where}.{key} must be a number of seconds in (0, 3600]", key=key
        )
    return float(value)


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
    server = table.get("server", "uvicorn")
    if server not in SERVERS:
        raise UsageError(
            "bad_config",
            f"{where}.server must be one of {', '.join(SERVERS)}, got {server!r}",
            key="server",
        )
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
        health_path=health_path,
        before_cutover=_target(table, "before_cutover", where),
        after_cutover=_target(table, "after_cutover", where),
        boot_timeout=_seconds(table, "boot_timeout", DEFAULT_BOOT_TIMEOUT, where),
        health_timeout=_seconds(table, "health_timeout", DEFAULT_HEALTH_TIMEOUT, where),
        shutdown_timeout=_seconds(table, "shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT, where),
        listeners=tuple(listeners),
        services=tuple(services),
    )
