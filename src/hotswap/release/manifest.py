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

The ``release_id`` is the version plus the first 12 hex digits of RECORD's sha256, so two
builds with the same content have the same id and a changed byte gets a new one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError
from hotswap.release.config import AppConfig
from hotswap.release.record import MANIFEST_NAME

FORMAT = "hotswap-release/1"
RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,80}-[0-9a-f]{12}$")
_REQUIRED = ("format", "name", "version", "release_id", "python", "distributions", "app", "record")


def make_release_id(version: str, record_sha256: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", version)[:80] or "0"
    return f"{safe}-{record_sha256[:12]}"


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
        return int(self.raw.get("created", 0))

    def app_config(self) -> AppConfig:
        return AppConfig.from_json(self.app)

    def dumps(self) -> bytes:
        return (json.dumps(self.raw, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def loads(cls, data: bytes) -> Manifest:
        """Parse and validate manifest bytes. Raises ``manifest_invalid`` naming the field."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReleaseError("manifest_invalid", f"{MANIFEST_NAME} is not JSON: {e}") from None
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
        for key, kind in (("python", dict), ("distributions", list), ("app", dict)):
            if not isinstance(raw[key], kind):
                raise ReleaseError(
                    "manifest_invalid", f"{MANIFEST_NAME} '{key}' has the wrong type", field=key
                )
        record = raw["record"]
        if not (
            isinstance(record, dict)
            and isinstance(record.get("sha256"), str)
            and isinstance(record.get("files"), int)
            and isinstance(record.get("bytes"), int)
        ):
            raise ReleaseError(
                "manifest_invalid", f"{MANIFEST_NAME} 'record' is malformed", field="record"
            )
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
            data = path.read_bytes()
        except FileNotFoundError:
            raise ReleaseError("manifest_invalid", f"{path} does not exist") from None
        return cls.loads(data)
