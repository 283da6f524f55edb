"""The tarball index, ``releases/.tarballs.json``: sha256 of a tarball -> the id it unpacked to.

A tarball already unpacked is recognised by its sha256, so a swap back to it (a rollback by
path, a retry) costs one hash of the file rather than a full scan. The index is only a
shortcut: anything malformed in it is ignored, and all of it when it is not this user's own,
private file. What it points to is used only when the release is self-consistent
(:meth:`~hotswap.release.unpacked.Release.self_consistent`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hotswap.errors import HotswapError
from hotswap.fsutil import write_json_atomic
from hotswap.release.manifest import RELEASE_ID, parse_json
from hotswap.release.statefile import STATE_MAX_BYTES, read_private

INDEX_NAME = ".tarballs.json"  # in releases/


class TarballIndex:
    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path = path
        self.warn = warn

    def read(self) -> dict[str, str]:
        """sha256 -> release id, with anything malformed left out."""
        try:
            data = read_private(self.path, STATE_MAX_BYTES)
            index = parse_json(data, INDEX_NAME, "manifest_invalid")
        except FileNotFoundError:
            return {}
        except (OSError, HotswapError) as e:
            self.warn(f"ignoring {self.path}: {e}")
            return {}
        if not isinstance(index, dict):
            return {}
        return {k: v for k, v in index.items() if isinstance(v, str) and RELEASE_ID.match(v)}

    def remember(self, sha256: str, release_id: str, live: set[str]) -> None:
        """Add ``sha256`` -> ``release_id``, dropping the entries of releases not in ``live``
        (the ids still in the store)."""
        index = {k: v for k, v in self.read().items() if v in live}
        index[sha256] = release_id
        write_json_atomic(self.path, index)
