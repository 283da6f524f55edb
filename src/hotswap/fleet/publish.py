"""``hotswap publish TARBALL s3://bucket/prefix/``: put a release in the store and point
``current.json`` at it.

The tarball is verified first (its ``.sha256``, every member, RECORD and every file hash, as
``hotswap inspect`` does; not the interpreter, the publishing machine may differ from the
hosts), so a bad artifact is refused before a byte is uploaded. Then, in this order: the
tarball (with ``release-id`` and ``sha256`` as object metadata, so a host can tell which
release an object is without downloading it), its ``.sha256``, and last ``current.json``: a
host that reads the pointer always finds the objects it names.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
from pathlib import Path
from typing import Any

import hotswap
from hotswap.errors import ReleaseError, UsageError
from hotswap.fleet.fetch import locate
from hotswap.fleet.pointer import HOWS, POINTER_NAME, Pointer
from hotswap.fleet.s3 import ObjectStore, S3Url
from hotswap.release import extract, verify


def publisher() -> str:
    """Who publishes: ``$HOTSWAP_PUBLISHED_BY``, else ``user@host``."""
    explicit = os.environ.get("HOTSWAP_PUBLISHED_BY")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def verify_tarball(tarball: Path, sha256: str | None = None) -> verify.Scan:
    """Every check of ``hotswap inspect`` but the interpreter; writes nothing."""
    if not tarball.is_file():
        raise UsageError("release_not_found", f"{tarball} is not a file")
    result = verify.scan(tarball, expected_sha256=sha256)
    extract.extract(tarball, result, None)
    result.payload = None
    return result


def publish(
    tarball: str | os.PathLike[str],
    prefix: str,
    *,
    how: str = "blue-green",
    sha256: str | None = None,
    set_current: bool = True,
    by: str | None = None,
    store: ObjectStore | None = None,
) -> dict[str, Any]:
    """Upload ``tarball`` and its checksum under ``prefix`` and (unless ``set_current`` is
    false) write ``current.json`` naming it. Returns what was written."""
    if how not in HOWS:
        raise UsageError("bad_request", f"how must be one of {', '.join(HOWS)}, not {how!r}")
    where = S3Url.parse(prefix)
    if not where.is_prefix:
        raise UsageError("bad_url", f"{prefix!r} is not a prefix: end it with '/'")
    path = Path(tarball).absolute()
    scan = verify_tarball(path, sha256)
    objects = store or ObjectStore()
    manifest = scan.manifest
    target = where.join(path.name)
    objects.upload(
        path,
        target,
        metadata={
            "release-id": manifest.release_id,
            "sha256": scan.sha256,
            "name": manifest.name,
        },
    )
    objects.put(
        target.sibling(".sha256"),
        f"{scan.sha256}  {path.name}\n".encode("ascii"),
        content_type="text/plain",
    )
    pointer = Pointer(
        release_id=manifest.release_id,
        name=manifest.name,
        version=manifest.version,
        tarball=path.name,
        sha256=scan.sha256,
        how=how,
        published_at=_now(),
        published_by=by or publisher(),
        hotswap=hotswap.__version__,
    )
    pointer_url = where.join(POINTER_NAME)
    if set_current:
        objects.put(pointer_url, pointer.encode(), content_type="application/json")
    return _written(target, scan.sha256, manifest.release_id, pointer_url, pointer, set_current)


def promote(
    tarball_url: str,
    *,
    how: str = "blue-green",
    by: str | None = None,
    store: ObjectStore | None = None,
) -> dict[str, Any]:
    """Point ``current.json`` at a tarball already published under the same prefix (by
    ``hotswap publish --no-current``, or an older release to go back to), without uploading or
    downloading it: its release id comes from the object's metadata, its digest from its
    ``.sha256``. A tarball hotswap did not publish (no ``release-id`` metadata) is refused."""
    if how not in HOWS:
        raise UsageError("bad_request", f"how must be one of {', '.join(HOWS)}, not {how!r}")
    target = S3Url.parse(tarball_url)
    if target.is_prefix or not target.name.endswith(".tar.gz"):
        raise UsageError("bad_url", f"{tarball_url!r} does not name a .tar.gz object")
    objects = store or ObjectStore()
    located = locate(tarball_url, store=objects)
    meta = objects.head(target)["metadata"]
    release_id = located.release_id
    if not release_id or meta.get("sha256", located.sha256) != located.sha256:
        raise ReleaseError(
            "manifest_invalid",
            f"{tarball_url} was not published by hotswap publish (no release-id, or its "
            "metadata and its .sha256 disagree): publish it",
        )
    version, _, _ = release_id.rpartition("-")
    pointer = Pointer(
        release_id=release_id,
        name=meta.get("name", target.name.removesuffix(f"-{release_id}.tar.gz")),
        version=version,
        tarball=target.name,
        sha256=located.sha256,
        how=how,
        published_at=_now(),
        published_by=by or publisher(),
        hotswap=hotswap.__version__,
    )
    pointer_url = target.join(POINTER_NAME)
    objects.put(pointer_url, pointer.encode(), content_type="application/json")
    return _written(target, located.sha256, release_id, pointer_url, pointer, True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _written(
    target: S3Url,
    sha256: str,
    release_id: str,
    pointer_url: S3Url,
    pointer: Pointer,
    set_current: bool,
) -> dict[str, Any]:
    return {
        "ok": True,
        "tarball": str(target),
        "sha256": sha256,
        "release_id": release_id,
        "current": str(pointer_url) if set_current else None,
        "pointer": pointer.to_json() if set_current else None,
    }
