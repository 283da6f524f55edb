"""Verify a release tarball and extract it into a staging directory, refusing anything unsafe.

Promise 8: nothing escapes the state dir. Links, devices, fifos, setuid/setgid bits, absolute
paths, ``..``, duplicate names, members not in the record, record entries missing from the
archive and totals over the limits are refused *before anything is written*; a bad archive
leaves no trace.

We do not lean on ``tarfile``'s ``data`` filter: the 3.11.7 this project runs on predates its
2025 and 2026 bypass fixes, and the filter strips a leading ``/`` rather than refusing it.
Instead, in order:

1. **scan** (one pass over the compressed stream): the raw bytes go through sha256 for the
   outer checksum while tarfile reads the member headers from the same bytes; every header is
   checked (type, mode, name, size, totals), RECORD and RELEASE.json are read. A scan failure
   is reported only after the checksum is known: a corrupted tarball is ``checksum_mismatch``,
   not whichever parse error the corruption happened to cause.
2. **cross-check**: RECORD matches the manifest (its sha256, file count, byte total); the set
   of file members equals RECORD's paths and every size agrees; the interpreter can run it.
3. **extract** (second pass): each header must equal the one scanned (the file could have been
   swapped between passes), files are created with ``O_EXCL | O_NOFOLLOW`` below a fresh
   staging dir and hashed as they are written; a byte that differs from RECORD aborts.

The caller (the release store) owns the staging dir and removes it on any failure.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hotswap.errors import HotswapError, ReleaseError, UsageError
from hotswap.release import interpreter
from hotswap.release.manifest import Manifest
from hotswap.release.record import (
    CHUNK,
    MANIFEST_NAME,
    RECORD_NAME,
    Entry,
    encode_digest,
    is_safe_relpath,
    loads,
)

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_FILES = 200_000
META_MAX_BYTES = 64 * 1024**2  # RECORD and RELEASE.json are read into memory
# RECORD cannot list itself with a hash, and RELEASE.json pins RECORD's sha256, so neither is
# in RECORD: RECORD is checked against the manifest, the manifest against the scanned bytes.
_UNRECORDED = frozenset({RECORD_NAME, MANIFEST_NAME})
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


@dataclass(frozen=True)
class Limits:
    """Totals over which an archive is refused as ``too_large`` (a decompression bomb stops
    at the first header that crosses them, before anything is written)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Member:
    name: str
    is_dir: bool
    size: int
    executable: bool


@dataclass
class Scan:
    """What the first pass learned. ``manifest`` and ``record`` are validated."""

    sha256: str
    members: list[Member]
    manifest: Manifest
    record: dict[str, Entry]
    manifest_digest: str = ""
    files: int = 0
    bytes: int = 0
    checks: list[str] = field(default_factory=list)


def read_sidecar(tarball: Path) -> str:
    """The hex digest from ``<tarball>.sha256`` (``sha256sum`` format)."""
    sidecar = tarball.with_name(tarball.name + ".sha256")
    try:
        text = sidecar.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        raise ReleaseError(
            "checksum_missing",
            f"{sidecar.name} is missing: a release tarball travels with its .sha256 file",
            path=str(sidecar),
        ) from None
    digest = text.split()[0].lower() if text else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ReleaseError("checksum_missing", f"{sidecar.name} holds no sha256 hex digest")
    return digest


class _HashingReader:
    """A read-only file wrapper that hashes every byte read through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> str:
        while data := self._f.read(CHUNK):
            self.hash.update(data)
        return self.hash.hexdigest()


def check_member(info: tarfile.TarInfo) -> Member:
    """Refuse any member that is not a plain, safely named file or directory."""
    name = info.name
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        is_dir = False
    elif info.type == tarfile.DIRTYPE:
        is_dir = True
        name = name.rstrip("/")
    else:
        kind = {
            tarfile.SYMTYPE: "a symbolic link",
            tarfile.LNKTYPE: "a hard link",
            tarfile.CHRTYPE: "a character device",
            tarfile.BLKTYPE: "a block device",
            tarfile.FIFOTYPE: "a fifo",
            tarfile.CONTTYPE: "a contiguous file",
        }.get(info.type, f"of type {info.type!r}")
        raise ReleaseError("unsafe_member", f"member {name!r} is {kind}", member=name)
    if not is_safe_relpath(name):
        raise ReleaseError(
            "unsafe_member",
            f"member {name!r} is not a plain relative path (absolute, '..', or odd characters)",
            member=name,
        )
    if info.mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
        raise ReleaseError(
            "unsafe_member", f"member {name!r} has setuid/setgid/sticky bits", member=name
        )
    if info.sparse is not None:  # GNU sparse files carry their own map: refuse
        raise ReleaseError("unsafe_member", f"member {name!r} is a sparse file", member=name)
    return Member(name, is_dir, 0 if is_dir else info.size, bool(info.mode & 0o111))


def _open_stream(f: IO[bytes]) -> tarfile.TarFile:
    return tarfile.open(fileobj=f, mode="r|gz", bufsize=CHUNK)


def scan(
    tarball: Path, *, expected_sha256: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> Scan:
    """First pass: outer checksum plus every header, without writing anything."""
    if not tarball.is_file():
        raise UsageError("release_not_found", f"{tarball} does not exist", path=str(tarball))
    expected = expected_sha256.lower() if expected_sha256 else read_sidecar(tarball)
    members: list[Member] = []
    meta: dict[str, bytes] = {}
    files = total = 0
    failure: HotswapError | None = None
    with open(tarball, "rb") as raw:
        reader = _HashingReader(raw)
        try:
            seen: set[str] = set()
            with _open_stream(reader) as tar:  # type: ignore[arg-type]
                for info in tar:
                    member = check_member(info)
                    if member.name in seen:
                        raise ReleaseError(
                            "duplicate_member",
                            f"member {member.name!r} appears twice",
                            member=member.name,
                        )
                    seen.add(member.name)
                    files += 1
                    total += member.size
                    if files > limits.max_files or total > limits.max_bytes:
                        raise ReleaseError(
                            "too_large",
                            f"archive exceeds the limits ({limits.max_files} entries, "
                            f"{limits.max_bytes} bytes) at member {member.name!r}",
                            member=member.name,
                        )
                    if member.name in (RECORD_NAME, MANIFEST_NAME) and not member.is_dir:
                        if member.size > META_MAX_BYTES:
                            raise ReleaseError("too_large", f"{member.name} is {member.size} bytes")
                        extracted = tar.extractfile(info)
                        assert extracted is not None
                        meta[member.name] = extracted.read()
                    members.append(member)
            if not members:
                raise ReleaseError("corrupt_archive", f"{tarball.name} is an empty archive")
        except HotswapError as e:
            failure = e
        except _ARCHIVE_ERRORS as e:
            failure = ReleaseError(
                "corrupt_archive",
                f"{tarball.name} is not a readable .tar.gz ({type(e).__name__}: {e})",
            )
        actual = reader.drain()
    if actual != expected:
        raise ReleaseError(
            "checksum_mismatch",
            f"{tarball.name} has sha256 {actual}, its checksum says {expected}",
            expected=expected,
            actual=actual,
        )
    if failure is not None:
        raise failure
    result = _cross_check(members, meta)
    result.sha256 = actual
    result.files = len([m for m in members if not m.is_dir])
    result.bytes = total
    return result


def _cross_check(members: list[Member], meta: dict[str, bytes]) -> Scan:
    if MANIFEST_NAME not in meta:
        raise ReleaseError("manifest_invalid", f"the archive has no {MANIFEST_NAME}")
    if RECORD_NAME not in meta:
        raise ReleaseError("record_invalid", f"the archive has no {RECORD_NAME}")
    manifest = Manifest.loads(meta[MANIFEST_NAME])
    record = loads(meta[RECORD_NAME])
    digest = hashlib.sha256(meta[RECORD_NAME]).hexdigest()
    declared = manifest.record
    if digest != declared["sha256"]:
        raise ReleaseError(
            "record_invalid",
            f"RECORD has sha256 {digest}, {MANIFEST_NAME} says {declared['sha256']}",
        )
    if not manifest.release_id.endswith("-" + digest[:12]):
        raise ReleaseError(
            "manifest_invalid",
            f"release_id {manifest.release_id!r} does not match RECORD ({digest[:12]})",
            field="release_id",
        )
    if (
        len(record) != declared["files"]
        or sum(e.size for e in record.values()) != declared["bytes"]
    ):
        raise ReleaseError("record_invalid", "RECORD's totals differ from the manifest's")
    file_members = {m.name: m for m in members if not m.is_dir and m.name not in _UNRECORDED}
    dirs = {m.name for m in members if m.is_dir}
    for name, m in sorted(file_members.items()):
        entry = record.get(name)
        if entry is None:
            raise ReleaseError(
                "member_not_in_record", f"member {name!r} is not listed in RECORD", member=name
            )
        if entry.size != m.size:
            raise ReleaseError(
                "hash_mismatch",
                f"member {name!r} is {m.size} bytes, RECORD says {entry.size}",
                member=name,
            )
        parent = name.rpartition("/")[0]
        while parent:
            if parent in file_members:
                raise ReleaseError(
                    "unsafe_member",
                    f"member {name!r} lies below {parent!r}, which is a file",
                    member=name,
                )
            parent = parent.rpartition("/")[0]
    for name in dirs:
        if name in file_members:
            raise ReleaseError(
                "duplicate_member", f"{name!r} is both a file and a directory", member=name
            )
    missing = sorted(set(record) - set(file_members))
    if missing:
        raise ReleaseError(
            "record_entry_missing",
            f"RECORD lists {missing[0]!r} but the archive lacks it"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            member=missing[0],
        )
    return Scan(
        sha256="",
        members=members,
        manifest=manifest,
        record=record,
        manifest_digest=encode_digest(hashlib.sha256(meta[MANIFEST_NAME]).digest()),
    )


def check_interpreter(result: Scan, **kwargs: Any) -> None:
    interpreter.check(result.manifest.python, result.manifest.distributions, **kwargs)


def extract(
    tarball: Path,
    result: Scan,
    dest: Path | None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Second pass: write every member below ``dest`` (a fresh, empty directory), hashing as
    it goes. With ``dest=None`` nothing is written: only the hashes are checked (inspect)."""
    dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY) if dest is not None else -1
    made: set[str] = {""}
    done_bytes = 0
    try:
        with open(tarball, "rb") as raw, _open_stream(raw) as tar:
            index = 0
            for info in tar:
                member = check_member(info)
                if index >= len(result.members) or result.members[index] != member:
                    raise ReleaseError(
                        "checksum_mismatch",
                        f"{tarball.name} changed while it was being unpacked "
                        f"(member {member.name!r})",
                    )
                index += 1
                if dest_fd >= 0:
                    _make_dirs(
                        dest_fd,
                        member.name if member.is_dir else member.name.rpartition("/")[0],
                        made,
                    )
                if member.is_dir:
                    continue
                source = tar.extractfile(info)
                assert source is not None
                digest = _copy_file(source, dest_fd, member)
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
                done_bytes += member.size
                if progress is not None:
                    progress(done_bytes, result.bytes)
            if index != len(result.members):
                raise ReleaseError(
                    "checksum_mismatch", f"{tarball.name} changed while it was being unpacked"
                )
    except _ARCHIVE_ERRORS as e:
        if isinstance(e, HotswapError):
            raise
        raise ReleaseError(
            "corrupt_archive", f"{tarball.name} could not be read on the second pass: {e}"
        ) from None
    finally:
        if dest_fd >= 0:
            os.close(dest_fd)


def _make_dirs(dest_fd: int, name: str, made: set[str]) -> None:
    if name in made:
        return
    parent = name.rpartition("/")[0]
    _make_dirs(dest_fd, parent, made)
    try:
        os.mkdir(name, 0o755, dir_fd=dest_fd)
    except FileExistsError:
        if not stat.S_ISDIR(os.stat(name, dir_fd=dest_fd, follow_symlinks=False).st_mode):
            raise ReleaseError("unsafe_member", f"{name!r} exists and is not a directory") from None
    made.add(name)


def _copy_file(source: IO[bytes], dest_fd: int, member: Member) -> str:
    h = hashlib.sha256()
    out = -1
    if dest_fd >= 0:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(member.name, flags, 0o755 if member.executable else 0o644, dir_fd=dest_fd)
    try:
        while chunk := source.read(CHUNK):
            h.update(chunk)
            if out >= 0:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
    finally:
        if out >= 0:
            os.close(out)
    return encode_digest(h.digest())
