"""``current.json``: the release a fleet should run, kept beside the tarballs in the bucket.

Layout of a release store prefix (``hotswap publish`` writes it)::

    s3://bucket/prefix/
      <name>-<release_id>.tar.gz           the tarball (object metadata: release-id, sha256)
      <name>-<release_id>.tar.gz.sha256    its checksum, sha256sum format
      current.json                         the pointer, written last

One ``current.json``::

    {"format": 1, "release_id": "2.0.0-3f2a9c1d0b7e", "name": "fixture-app",
     "version": "2.0.0", "tarball": "fixture-app-2.0.0-3f2a9c1d0b7e.tar.gz",
     "sha256": "9c1e...", "how": "blue-green", "published_at": "2026-12-01T22:10:04Z",
     "published_by": "deploy@build-1", "hotswap": "0.1.0"}

``tarball`` is a name under the same prefix, never a URL elsewhere: a pointer cannot send a
host to another bucket. A pointer that does not parse is ``pointer_invalid``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from hotswap.errors import ReleaseError
from hotswap.release.manifest import RELEASE_ID

POINTER_NAME = "current.json"
FORMAT = 1
HOWS = ("blue-green", "hot")


@dataclass(frozen=True)
class Pointer:
    release_id: str
    name: str
    version: str
    tarball: str
    sha256: str
    how: str
    published_at: str
    published_by: str
    hotswap: str
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def encode(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> Pointer:
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeError, ValueError, RecursionError) as e:
            raise ReleaseError("pointer_invalid", f"{where} is not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ReleaseError("pointer_invalid", f"{where} is not a JSON object")
        if raw.get("format") != FORMAT:
            raise ReleaseError(
                "pointer_invalid", f"{where} has format {raw.get('format')!r}, not {FORMAT}"
            )
        fields = {}
        for key in ("release_id", "name", "version", "tarball", "sha256", "how"):
            value = raw.get(key)
            if not isinstance(value, str) or not value:
                raise ReleaseError("pointer_invalid", f"{where}: {key!r} is missing", field=key)
            fields[key] = value
        if not RELEASE_ID.match(fields["release_id"]):
            raise ReleaseError("pointer_invalid", f"{where}: release_id is not valid")
        tarball = fields["tarball"]
        if "/" in tarball or tarball.startswith(".") or not tarball.endswith(".tar.gz"):
            raise ReleaseError(
                "pointer_invalid", f"{where}: tarball {tarball!r} is not a name under the prefix"
            )
        digest = fields["sha256"].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ReleaseError("pointer_invalid", f"{where}: sha256 is not a hex digest")
        if fields["how"] not in HOWS:
            raise ReleaseError("pointer_invalid", f"{where}: how {fields['how']!r} is unknown")
        return cls(
            release_id=fields["release_id"],
            name=fields["name"],
            version=fields["version"],
            tarball=tarball,
            sha256=digest,
            how=fields["how"],
            published_at=str(raw.get("published_at", "")),
            published_by=str(raw.get("published_by", "")),
            hotswap=str(raw.get("hotswap", "")),
        )
