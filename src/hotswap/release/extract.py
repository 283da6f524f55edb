"""Write a scanned release below a fresh staging dir (the third step of verify + unpack).

While the inflated stream fits in ``Limits.buffer_bytes`` the scan kept it in memory, so the
files are written from the very bytes that were checked, with no second read. Above that, the
file is read again: each header must equal the one scanned and each file is re-hashed as it is
written (the file could have been swapped between passes). Files are created with
``O_EXCL | O_NOFOLLOW`` below the staging dir, directories with ``mkdir`` relative to its fd.

The caller (the release store) owns the staging dir and removes it on any failure.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from hotswap.errors import ReleaseError
from hotswap.release.inflate import Inflated
from hotswap.release.record import MANIFEST_NAME, RECORD_NAME, encode_digest
from hotswap.release.tarsafe import Member, check_member, iter_members, open_tar
from hotswap.release.verify import ARCHIVE_ERRORS, Scan


def extract(
    tarball: Path,
    result: Scan,
    dest: Path | None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write every member below ``dest`` (a fresh, empty directory). With ``dest=None``
    nothing is written: only the checks not yet done are (inspect).

    When the scan kept the stream (``result.payload``), every file was already hashed from
    those bytes, and they are written as they are. Otherwise the file is read again, each
    header compared with the scanned one and each file re-hashed as it is written."""
    if result.payload is not None:
        if dest is not None:
            _write_payload(result, result.payload, dest, progress)
        return
    _extract_again(tarball, result, dest, progress)


def _write_payload(
    result: Scan,
    payload: bytearray,
    dest: Path,
    progress: Callable[[int, int], None] | None,
) -> None:
    dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    made: set[str] = {""}
    done = 0
    tick = _tick(result)
    try:
        with memoryview(payload) as view:
            for member in result.members:
                tick()
                _make_dirs(
                    dest_fd,
                    member.name if member.is_dir else member.name.rpartition("/")[0],
                    made,
                )
                if member.is_dir:
                    continue
                with view[member.offset : member.offset + member.size] as data:
                    _write_file(dest_fd, member, [data], hashed=False)
                done += member.size
                if progress is not None:
                    progress(done, result.bytes)
    finally:
        os.close(dest_fd)


def _extract_again(
    tarball: Path,
    result: Scan,
    dest: Path | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY) if dest is not None else -1
    made: set[str] = {""}
    done = 0
    tick = _tick(result)
    try:
        with open(tarball, "rb") as raw:
            src = Inflated(raw, keep=0, cap=result.stream_bytes, tick=tick)
            with open_tar(src) as tar:
                index = 0
                for info in iter_members(tar):
                    tick()
                    member = check_member(info)
                    if index >= len(result.members) or result.members[index] != member:
                        raise ReleaseError(
                            "checksum_mismatch",
                            f"{tarball.name} changed while it was being unpacked "
                            f"(member {member.name!r})",
                        )
                    index += 1
                    if dest_fd >= 0:
                        parent = member.name if member.is_dir else member.name.rpartition("/")[0]
                        _make_dirs(dest_fd, parent, made)
                    if member.is_dir:
                        continue
                    digest = _write_file(dest_fd, member, src.chunks(member.offset, member.size))
                    if member.name == RECORD_NAME:
                        continue  # its sha256 was checked against the manifest in the scan
                    expected = (
                        result.manifest_digest
                        if member.name == MANIFEST_NAME
                        else result.record[member.name].digest
                    )
                    if digest != expected:
                        raise ReleaseError(
                            "hash_mismatch",
                            f"member {member.name!r} does not match its RECORD hash",
                            member=member.name,
                        )
                    done += member.size
                    if progress is not None:
                        progress(done, result.bytes)
            if index != len(result.members):
                raise ReleaseError(
                    "checksum_mismatch", f"{tarball.name} changed while it was being unpacked"
                )
    except ARCHIVE_ERRORS as e:
        raise ReleaseError(
            "corrupt_archive", f"{tarball.name} could not be read on the second pass: {e}"
        ) from None
    finally:
        if dest_fd >= 0:
            os.close(dest_fd)


def _tick(result: Scan) -> Callable[[], None]:
    """The scan's deadline check (it covers verify and unpack together)."""
    return result.deadline.check if result.deadline is not None else lambda: None


def _make_dirs(dest_fd: int, name: str, made: set[str]) -> None:
    """Make ``name`` and its missing parents below ``dest_fd``, shallowest first."""
    if name in made:
        return
    parts = name.split("/")
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        if path in made:
            continue
        try:
            os.mkdir(path, 0o755, dir_fd=dest_fd)
        except FileExistsError:
            if not stat.S_ISDIR(os.stat(path, dir_fd=dest_fd, follow_symlinks=False).st_mode):
                raise ReleaseError(
                    "unsafe_member", f"{path!r} exists and is not a directory"
                ) from None
        made.add(path)


def _write_file(
    dest_fd: int,
    member: Member,
    chunks: Iterator[memoryview] | list[memoryview],
    *,
    hashed: bool = True,
) -> str:
    """Write ``chunks`` to a new file (unless ``dest_fd`` is -1); return their digest (or
    "" when not ``hashed``: bytes already checked)."""
    h = hashlib.sha256()
    out = -1
    if dest_fd >= 0:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(member.name, flags, 0o755 if member.executable else 0o644, dir_fd=dest_fd)
    try:
        for part in chunks:
            if hashed:
                h.update(part)
            if out >= 0:
                view = part
                while view:
                    view = view[os.write(out, view) :]
    finally:
        if out >= 0:
            os.close(out)
    return encode_digest(h.digest()) if hashed else ""
