"""An unpacked release in the store, how a caller names one, and how one is found.

A release is named by a tarball path or by its id; ids have no ``/``. An unpacked one lives in
``releases/<id>/`` (RELEASE.json, RECORD, lib/), which must be a real directory of this user's,
never a symlink: it would run code from outside the state dir.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError
from hotswap.fsutil import check_private
from hotswap.release.archive import sha256_file
from hotswap.release.manifest import RELEASE_ID, Manifest, release_id_for
from hotswap.release.record import MANIFEST_NAME, RECORD_NAME


def is_tarball_ref(ref: str) -> bool:
    """A release is named by a tarball path or by its id in the store; ids have no ``/``."""
    return "/" in ref or ref.endswith(".tar.gz")


def absolute_ref(ref: str | os.PathLike[str]) -> str:
    """A tarball path made absolute (the supervisor's working dir is not the caller's); an id
    as it is."""
    text = os.fspath(ref)
    return str(Path(text).absolute()) if is_tarball_ref(text) else text


@dataclass(frozen=True)
class Release:
    """An unpacked, verified release in the store."""

    id: str
    root: Path
    manifest: Manifest

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.manifest.name,
            "version": self.manifest.version,
            "created": self.manifest.created,
            "path": str(self.root),
        }

    def self_consistent(self) -> bool:
        """Does RECORD have the sha256 the manifest pins, and is the manifest's id
        (recomputed from RECORD, app and python) this directory's name? A release found
        through the tarball index is used only then: a planted or edited copy under another
        id is not taken for it."""
        try:
            digest = sha256_file(self.root / RECORD_NAME)
        except OSError:
            return False
        manifest = self.manifest
        return digest == manifest.record["sha256"] and release_id_for(manifest.raw) == self.id


def find(releases_dir: Path, release_id: str) -> Release | None:
    """The release of that id in ``releases_dir``, or None (also for a name that is no id)."""
    if not RELEASE_ID.match(release_id):
        return None
    root = releases_dir / release_id
    try:
        check_private(root, is_dir=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not (root / MANIFEST_NAME).is_file():
        return None
    return Release(release_id, root, Manifest.load(root))


def listing(releases_dir: Path, warn: Callable[[str], None]) -> list[Release]:
    """Every unpacked release, newest first (by build time, then id); an unreadable one is
    skipped with a warning."""
    out: list[Release] = []
    if releases_dir.is_dir():
        for entry in releases_dir.iterdir():
            if entry.name.startswith(".") or not RELEASE_ID.match(entry.name):
                continue
            try:
                out.append(Release(entry.name, entry, Manifest.load(entry)))
            except ReleaseError as e:
                warn(f"skipping release {entry.name}: {e}")
    out.sort(key=lambda r: (r.manifest.created, r.id), reverse=True)
    return out
