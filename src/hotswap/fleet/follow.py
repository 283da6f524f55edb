"""``hotswap run --follow s3://bucket/prefix/current.json``: boot what the fleet runs.

fly_deploy's ``startup_reapply_current``: a host that is replaced, rebooted or restarted with
an empty state dir joins the fleet on the release ``current.json`` names, not on whatever its
image or its command line had. The pointer is resolved to a verified local tarball *before*
the supervisor starts, so the supervisor itself knows nothing of object storage.

When the store cannot be reached (``storage_error``) or has no pointer yet
(``release_not_found``), the host boots what it would have booted without ``--follow`` (the
release given on the command line, else the state dir's current one) and says so on stderr;
with neither, it refuses to start with the store's error. A pointer or tarball that fails its
checks (``pointer_invalid``, ``checksum_mismatch``) always refuses to start: a tampered store
is not a reason to serve anything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from hotswap.errors import HotswapError
from hotswap.fleet.fetch import fetch
from hotswap.fleet.s3 import ObjectStore
from hotswap.release.store import ReleaseStore

FALLBACK_CODES = frozenset({"storage_error", "release_not_found"})


@dataclass(frozen=True)
class Boot:
    """What the supervisor should boot: ``release`` (a tarball path or an id) or None for the
    state dir's current release, and the tarball's sha256 when known."""

    release: str | None
    sha256: str | None
    followed: bool
    reason: str


def _stderr(message: str) -> None:
    print(f"hotswap: {message}", file=sys.stderr, flush=True)


def resolve_follow(
    url: str,
    state_dir: str | os.PathLike[str],
    *,
    release: str | None = None,
    sha256: str | None = None,
    store: ObjectStore | None = None,
    log: Callable[[str], None] = _stderr,
) -> Boot:
    try:
        fetched = fetch(url, state_dir, store=store)
    except HotswapError as e:
        if e.code not in FALLBACK_CODES:
            raise
        if release is None and not ReleaseStore(state_dir).read_state()["current"]:
            raise
        fallback = release or "the current release of the state dir"
        log(f"--follow {url}: {e.code}: {e.message}; booting {fallback}")
        return Boot(release, sha256 if release else None, False, f"{e.code}: {e.message}")
    release_id = fetched.located.release_id
    how = "downloaded" if fetched.downloaded else "already downloaded"
    log(f"--follow {url}: booting {release_id} ({how})")
    return Boot(str(fetched.path), fetched.sha256, True, f"current.json names {release_id}")
