"""The release manifest, ``RELEASE.json``: what a release is and what it needs to run.

Written by ``hotswap build``, read before anything runs from a release. Fields (format 1)::

    {
      "format": "hotswap-release/1",
      "name": "fixture-app", "version": "1.0.0", "release_id": "1.0.0-3f2a9c1d0b7e",
      "created": 1700000000,                      # SOURCE_DATE_EPOCH when set
      "builder": {"hotswap": "0.1.0", "installer": "uv 0.9.1"},
      "python": {...},                            # interpreter.identity() of the builder
      "distributions": [{"name", "version", "purelib", "has_extensions", "tags"}, ...],
      "app": {...},                               # the validated [tool.hotswap] table
      "record": {"sha256": "<hex of RECORD>", "files": 812, "bytes": 5123456}
    }

The ``release_id`` is the version plus the first 12 hex digits of :func:`content_digest`
(RECORD's sha256 and the canonical ``app`` and ``python`` blocks), so two builds with the same
files, config and interpreter have the same id, and a changed byte or config key gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError
from hotswap.release.config import AppConfig
from hotswap.release.record import MANIFEST_NAME

FORMAT = "hotswap-release/1"
RELEASE_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,80}-[0-9a-f]{12}\Z")
CREATED_MAX = 2**40
MANIFEST_MAX_BYTES = 64 * 1024**2
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = ("format", "name", "version", "release_id", "python", "distributions", "app", "record")


def make_release_id(version: str, digest: str) -> str:
    """``<version>-<first 12 hex digits of digest>``, the version made safe for a file name."""
    safe = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._+-]", "_", version))[:80] or "0"
    return f"{safe}-{digest[:12]}"


def content_digest(raw: Mapping[str, Any]) -> str:
    """The hex sha256 a release id names: RECORD's sha256 (every file), the ``app`` block
    (entry, hooks, services, timeouts, health path) and the ``python`` block, as canonical
    JSON. Not ``created``, ``builder`` or ``distributions`` (those follow from the files)."""
    named = {"record": raw["record"]["sha256"], "app": raw["app"], "python": raw["python"]}
    canonical = json.dumps(named, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def release_id_for(raw: Mapping[str, Any]) -> str:
    """The release id a manifest must carry: its version and :func:`content_digest`. Build
    writes it; verification recomputes it, so a crafted manifest cannot claim the id of
    another release (and a config-only change gets a new id)."""
    return make_release_id(str(raw["version"]), content_digest(raw))


@dataclass(frozen=True)
class Manifest:
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    @property
    def release_id(self) -> str:
        return str(self.raw["release_id"])

    @property
    def python(self) -> dict[str, Any]:
        value: dict[str, Any] = self.raw["python"]
        return value

    @property
    def distributions(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self.raw["distributions"]
        return value

    @property
    def app(self) -> dict[str, Any]:
        value: dict[str, Any] = self.raw["app"]
        return value

    @property
    def record(self) -> dict[str, Any]:
        value: dict[str, Any] = self.raw["record"]
        return value

    @property
    def created(self) -> int:
        value: int = self.raw.get("created", 0)  # validated: an int in [0, 2**40)
        return value

    def app_config(self) -> AppConfig:
        return AppConfig.from_json(self.app)

    def dumps(self) -> bytes:
        return (json.dumps(self.raw, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def loads(cls, data: bytes) -> Manifest:
        """Parse and validate manifest bytes. Raises ``manifest_invalid`` naming the field."""
        raw = parse_json(data, MANIFEST_NAME, "manifest_invalid")
        validate(raw)
        manifest = cls(raw)
        try:
            manifest.app_config()
        except Exception as e:
            raise ReleaseError(
                "manifest_invalid", f"{MANIFEST_NAME} 'app' is invalid: {e}", field="app"
            ) from None
        return manifest

    @classmethod
    def load(cls, release_root: str | Path) -> Manifest:
        path = Path(release_root) / MANIFEST_NAME
        try:
            with open(path, "rb") as f:
                data = f.read(MANIFEST_MAX_BYTES + 1)
        except FileNotFoundError:
            raise ReleaseError("manifest_invalid", f"{path} does not exist") from None
        except OSError as e:
            raise ReleaseError("manifest_invalid", f"{path} is unreadable: {e}") from None
        if len(data) > MANIFEST_MAX_BYTES:
            raise ReleaseError("manifest_invalid", f"{path} is over {MANIFEST_MAX_BYTES} bytes")
        return cls.loads(data)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes, what: str, code: str) -> Any:
    """JSON from untrusted bytes, or a ``ReleaseError(code)``: not UTF-8, not JSON, NaN or
    Infinity (Python's json accepts them), nested too deep (``RecursionError``)."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ReleaseError(code, f"{what} is not JSON: {e}") from None
    except RecursionError:
        raise ReleaseError(code, f"{what} is nested too deeply") from None


def _bad(key: str, why: str) -> ReleaseError:
    return ReleaseError("manifest_invalid", f"{MANIFEST_NAME} '{key}' {why}", field=key)


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _is_text(value: Any, max_len: int = 1024) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_len


_SCALAR = (str, int, float, bool, type(None))
_DIST_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "version": (str,),
    "purelib": (bool,),
    "has_extensions": (bool,),
    "tags": (list,),
}


def validate(raw: Any) -> None:
    """Every field's type and range (``app`` is checked by its config parser). A manifest that
    passes never makes a reader raise anything but a ``HotswapError``."""
    if not isinstance(raw, dict):
        raise ReleaseError("manifest_invalid", f"{MANIFEST_NAME} is not a JSON object")
    for key in _REQUIRED:
        if key not in raw:
            raise ReleaseError("manifest_invalid", f"{MANIFEST_NAME} lacks '{key}'", field=key)
    if raw["format"] != FORMAT:
        raise ReleaseError(
            "manifest_invalid",
            f"{MANIFEST_NAME} format is {raw['format']!r}, this hotswap reads {FORMAT!r}",
            field="format",
        )
    if not isinstance(raw["release_id"], str) or not RELEASE_ID.match(raw["release_id"]):
        raise ReleaseError(
            "manifest_invalid",
            f"{MANIFEST_NAME} release_id {raw['release_id']!r} is not valid",
            field="release_id",
        )
    for key in ("name", "version"):
        if not _is_text(raw[key], 256):
            raise _bad(key, "must be a non-empty string of at most 256 characters")
    if "created" in raw and not _is_int(raw["created"], 0, CREATED_MAX):
        raise _bad("created", f"must be an integer in [0, 2**40), not {raw['created']!r:.40}")
    builder = raw.get("builder", {})
    if not isinstance(builder, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in builder.items()
    ):
        raise _bad("builder", "must be an object of strings")
    python = raw["python"]
    if not isinstance(python, dict) or not all(
        isinstance(k, str) and isinstance(v, _SCALAR) for k, v in python.items()
    ):
        raise _bad("python", "must be an object of plain values")
    dists = raw["distributions"]
    if not isinstance(dists, list):
        raise _bad("distributions", "must be a list")
    for i, dist in enumerate(dists):
        if not isinstance(dist, dict):
            raise _bad("distributions", f"item {i} is not an object")
        for field, kinds in _DIST_FIELDS.items():
            if field in dist and not isinstance(dist[field], kinds):
                raise _bad("distributions", f"item {i} '{field}' has the wrong type")
        if not isinstance(dist.get("name"), str):
            raise _bad("distributions", f"item {i} has no name")
        if not all(isinstance(tag, str) for tag in dist.get("tags", [])):
            raise _bad("distributions", f"item {i} 'tags' must be strings")
    if not isinstance(raw["app"], dict):
        raise _bad("app", "must be an object")
    record = raw["record"]
    if not (
        isinstance(record, dict)
        and isinstance(record.get("sha256"), str)
        and _HEX64.fullmatch(record["sha256"])
        and _is_int(record.get("files"), 0, 2**63)
        and _is_int(record.get("bytes"), 0, 2**63)
    ):
        raise _bad("record", "is malformed")
