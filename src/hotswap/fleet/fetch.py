"""From an ``s3://`` reference to a verified local tarball the supervisor can take as it takes
any other: ``hotswap upgrade s3://...``, ``hot-upgrade s3://...`` and ``run --follow``.

A reference is one of

- ``s3://bucket/prefix/`` or ``s3://bucket/prefix/current.json``: the release the pointer
  names, with the pointer's sha256;
- ``s3://bucket/prefix/<name>.tar.gz``: that object, checked against ``--sha256`` when given,
  else against the ``<name>.tar.gz.sha256`` object beside it.

The tarball is streamed into ``<state dir>/downloads/`` and keeps its name there only if its
sha256 is the expected one; its ``.sha256`` is written beside it, and the supervisor then
verifies it again as any local tarball. A tarball already downloaded with the expected digest is
used again (hashed, not downloaded). The newest few downloads are kept, the rest removed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError, UsageError
from hotswap.fleet.pointer import POINTER_NAME, Pointer
from hotswap.fleet.s3 import ObjectStore, S3Url
from hotswap.release.archive import sha256_file
from hotswap.release.store import ReleaseStore

DOWNLOADS = "downloads"
KEEP_DOWNLOADS = 3


@dataclass(frozen=True)
class Located:
    """Where a release is in the bucket and what its digest must be."""

    url: S3Url
    sha256: str
    release_id: str | None
    pointer: Pointer | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": str(self.url),
            "sha256": self.sha256,
            "release_id": self.release_id,
            "pointer": self.pointer.to_json() if self.pointer else None,
        }


@dataclass(frozen=True)
class Fetched:
    located: Located
    path: Path
    downloaded: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return self.located.sha256

    def to_json(self) -> dict[str, Any]:
        return {**self.located.to_json(), "path": str(self.path), "downloaded": self.downloaded}


def _digest(text: bytes, where: str) -> str:
    words = text.decode("ascii", errors="replace").split()
    digest = words[0].lower() if words else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ReleaseError("checksum_missing", f"{where} holds no sha256 hex digest")
    return digest


def read_pointer(url: str | S3Url, store: ObjectStore | None = None) -> Pointer:
    """The ``current.json`` at ``url`` (a prefix or the pointer object itself)."""
    where = S3Url.parse(url) if isinstance(url, str) else url
    if where.is_prefix:
        where = where.join(POINTER_NAME)
    return Pointer.decode((store or ObjectStore()).read_small(where), str(where))


def locate(ref: str, *, sha256: str | None = None, store: ObjectStore | None = None) -> Located:
    """Where ``ref`` points and the digest its bytes must have; downloads nothing big."""
    objects = store or ObjectStore()
    where = S3Url.parse(ref)
    if where.is_prefix or where.name.endswith(".json"):
        pointer = read_pointer(where, objects)
        expected = pointer.sha256
        if sha256 and sha256.lower() != expected:
            raise ReleaseError(
                "checksum_mismatch",
                f"{ref} names sha256 {expected}, --sha256 says {sha256.lower()}",
            )
        return Located(where.join(pointer.tarball), expected, pointer.release_id, pointer)
    if not where.name.endswith(".tar.gz"):
        raise ReleaseError(
            "corrupt_archive", f"{ref} is neither a .tar.gz release nor a current.json"
        )
    if sha256:
        expected = sha256.lower()
    else:
        sidecar = where.sibling(".sha256")
        try:
            expected = _digest(objects.read_small(sidecar), str(sidecar))
        except UsageError as e:
            if e.code != "release_not_found":
                raise
            raise ReleaseError(
                "checksum_missing",
                f"{sidecar} is missing: give --sha256, or publish with hotswap publish",
            ) from None
    release_id = objects.head(where)["metadata"].get("release-id")
    return Located(where, expected, release_id)


def downloads_dir(state_dir: str | os.PathLike[str]) -> Path:
    store = ReleaseStore(state_dir)
    store.ensure()
    path = store.state_dir / DOWNLOADS
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def fetch(
    ref: str,
    state_dir: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    store: ObjectStore | None = None,
) -> Fetched:
    """Download (or reuse) the release ``ref`` names into the state dir, verified."""
    objects = store or ObjectStore()
    located = locate(ref, sha256=sha256, store=objects)
    folder = downloads_dir(state_dir)
    dest = folder / located.url.name
    sidecar = dest.with_name(dest.name + ".sha256")
    downloaded = False
    if not (dest.is_file() and sha256_file(dest) == located.sha256):
        objects.download(located.url, dest, expected_sha256=located.sha256)
        downloaded = True
    sidecar.write_text(f"{located.sha256}  {dest.name}\n", encoding="ascii")
    _prune(folder, keep={dest.name, sidecar.name})
    return Fetched(located, dest, downloaded)


def _prune(folder: Path, keep: set[str]) -> None:
    tarballs = sorted(
        (p for p in folder.glob("*.tar.gz") if p.name not in keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in tarballs[KEEP_DOWNLOADS - 1 :]:
        for path in (old, old.with_name(old.name + ".sha256")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
