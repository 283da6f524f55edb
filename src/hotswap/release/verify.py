"""Verify a release tarball and extract it into a staging directory, refusing anything unsafe.

Promise 8: nothing escapes the state dir. Links, devices, fifos, setuid/setgid bits, absolute
paths, ``..``, odd names, duplicate names, members not in the record, record entries missing
from the archive, files whose bytes differ from the record and totals over the limits are all
refused *before anything is written*; a bad archive leaves no trace.

We do not lean on ``tarfile``'s ``data`` filter: the 3.11.7 this project runs on predates its
2025 and 2026 bypass fixes, and the filter strips a leading ``/`` rather than refusing it.
Nor on its stream mode (``r|gz``), which inflates a whole compressed chunk at once (1 MB of
gzip can be 1 GB of zeros) and reads pax headers of any size whole. Instead, in order:

1. **scan** (one pass over the file): the compressed bytes go through sha256 for the outer
   checksum and through our own bounded inflater (at most ``OUT_CHUNK`` bytes per step, a cap
   on the whole stream); ``tarfile`` parses headers from the inflated stream, with extended
   headers (pax, GNU long names) capped in size and in chain length and every sparse form
   refused; every member is checked (type, mode, name, size, totals) as its header is read,
   so a decompression bomb stops at its header. Every file is hashed as it streams by, and
   RECORD and RELEASE.json are kept. Then the rest of the gzip stream is read to its end, so
   its CRC and length are checked and nothing may follow it. A failure is reported only after
   the checksum is known: a corrupted tarball is ``checksum_mismatch``, not whichever parse
   error the corruption happened to cause.
2. **cross-check**: RECORD matches the manifest (its sha256, file count, byte total); the set
   of file members equals RECORD's paths, no member lies below a file, every size and every
   sha256 agrees. Then (the caller) the interpreter can run it.
3. **extract**: while the inflated stream fits in ``Limits.buffer_bytes`` (256 MiB by default)
   it was kept in memory by the scan, so the files are written from the very bytes that were
   checked, with no second read. Above that, the file is read again: each header must equal
   the one scanned and each file is re-hashed as it is written (the file could have been
   swapped between passes). Files are created with ``O_EXCL | O_NOFOLLOW`` below a fresh
   staging dir.

The caller (the release store) owns the staging dir and removes it on any failure.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hotswap.errors import HotswapError, ReleaseError, UsageError
from hotswap.release import interpreter
from hotswap.release.manifest import Manifest
from hotswap.release.record import (
    MANIFEST_NAME,
    RECORD_NAME,
    Entry,
    encode_digest,
    is_safe_relpath,
    loads,
)

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_FILES = 200_000
DEFAULT_BUFFER_BYTES = 256 * 1024**2
META_MAX_BYTES = 64 * 1024**2  # RECORD and RELEASE.json are read into memory
EXTENDED_HEADER_MAX = 1024**2  # the data of one pax or GNU long-name header
EXTENDED_CHAIN_MAX = 8  # extended headers in a row before a member
IN_CHUNK = 1 << 20  # compressed bytes read at a time
OUT_CHUNK = 4 << 20  # inflated bytes produced at a time: bounds a bomb's burst
TRAILER_SLACK = 1 << 20  # inflated bytes allowed after the tar end-of-archive blocks
HEADER_ALLOWANCE = 4 * 512  # stream bytes per entry beyond its data: headers, padding
# RECORD cannot list itself with a hash, and RELEASE.json pins RECORD's sha256, so neither is
# in RECORD: RECORD is checked against the manifest, the manifest against the scanned bytes.
_UNRECORDED = frozenset({RECORD_NAME, MANIFEST_NAME})
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)
_EXTENDED = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)


@dataclass(frozen=True)
class Limits:
    """Totals over which an archive is refused as ``too_large`` (a decompression bomb stops
    at the first header that crosses them, before anything is written), and how much of the
    inflated stream the scan may keep in memory so that extraction needs no second read."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES
    buffer_bytes: int = DEFAULT_BUFFER_BYTES

    @property
    def stream_bytes(self) -> int:
        """The most inflated bytes an archive within the limits can take."""
        return self.max_bytes + HEADER_ALLOWANCE * (self.max_files + 16) + TRAILER_SLACK


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Member:
    name: str
    is_dir: bool
    size: int
    executable: bool
    offset: int = 0  # where its data starts in the inflated stream


@dataclass
class Scan:
    """What the first pass learned. ``manifest`` and ``record`` are validated; when
    ``payload`` is set it holds the whole inflated tar stream, already checked file by file."""

    sha256: str
    members: list[Member]
    manifest: Manifest
    record: dict[str, Entry]
    manifest_digest: str = ""
    files: int = 0
    bytes: int = 0
    checks: list[str] = field(default_factory=list)
    payload: bytearray | None = field(default=None, repr=False)


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


class _Inflated:
    """The inflated tar stream of a ``.tar.gz``, as a forward-reading file for ``tarfile``.

    Every compressed byte read goes through sha256 (the outer checksum). Inflating is bounded:
    at most ``OUT_CHUNK`` bytes per step and ``cap`` bytes in all. The inflated bytes are kept
    while they fit in ``keep`` bytes (``kept``); past that, or with ``keep=0``, only the bytes
    from the read position on are held, so memory stays small whatever the archive."""

    def __init__(self, raw: IO[bytes], *, keep: int, cap: int) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip: header, CRC and length
        self._sha = hashlib.sha256()
        self._keep = keep
        self._cap = cap
        self.kept = keep > 0
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._pos = 0
        self._produced = 0

    # -- the file interface tarfile uses ---------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self._cap
        self._ensure(self._pos + n)
        start = self._pos - self._base
        data = bytes(self._buf[start : start + n])
        self._pos += len(data)
        self._trim()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset + (self._pos if whence == os.SEEK_CUR else 0)
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self._base:
            raise OSError(f"cannot seek to {target} in a forward-only stream")
        self._pos = target
        self._trim()
        return target

    def tell(self) -> int:
        return self._pos

    # -- ours --------------------------------------------------------------------------------

    def chunks(self, offset: int, size: int) -> Iterator[memoryview]:
        """The ``size`` bytes at ``offset``, as views into the buffer (valid until the next
        step: do not keep them)."""
        self.seek(offset)
        remaining = size
        while remaining:
            self._ensure(self._pos + 1)
            start = self._pos - self._base
            n = min(remaining, len(self._buf) - start)
            if n <= 0:
                raise EOFError("unexpected end of data")
            with memoryview(self._buf) as whole, whole[start : start + n] as part:
                yield part
            self._pos += n
            remaining -= n
            self._trim()

    def finish(self) -> None:
        """Inflate to the end of the gzip stream (zlib checks its CRC and length there) and
        refuse anything after it. After the tar end-of-archive block, only zero padding may
        follow, and at most ``TRAILER_SLACK`` bytes of it."""
        limit = self._produced + TRAILER_SLACK
        while True:
            start = self._pos - self._base
            if start < len(self._buf):
                tail = self._buf[start:]
                if tail.count(0) != len(tail):
                    raise ReleaseError("corrupt_archive", "data follows the end of the tar archive")
            self._pos = self._base + len(self._buf)
            self._trim()
            if self._produced > limit:
                raise ReleaseError(
                    "corrupt_archive",
                    f"more than {TRAILER_SLACK} bytes follow the end of the tar archive",
                )
            if not self._feed():
                break
        if self._z.unused_data or self._read_raw(1):
            raise ReleaseError("corrupt_archive", "data follows the end of the gzip stream")

    def hexdigest(self) -> str:
        """The sha256 of the whole file: reads (without inflating) what is left of it."""
        while self._read_raw(IN_CHUNK):
            pass
        return self._sha.hexdigest()

    @property
    def payload(self) -> bytearray | None:
        return self._buf if self.kept else None

    def _read_raw(self, n: int) -> bytes:
        data = self._raw.read(n)
        self._sha.update(data)
        return data

    def _feed(self) -> bool:
        """Inflate one more step; False once the gzip stream has ended."""
        z = self._z
        if z.eof:
            return False
        data = z.unconsumed_tail or self._read_raw(IN_CHUNK)
        if not data:
            raise EOFError("the gzip stream ends before its end marker (truncated)")
        out = z.decompress(data, OUT_CHUNK)
        self._produced += len(out)
        if self._produced > self._cap:
            raise ReleaseError(
                "too_large",
                f"the archive inflates to more than {self._cap} bytes",
                limit=self._cap,
            )
        if self.kept and self._produced > self._keep:
            self.kept = False  # too big to keep: the second pass will read the file again
        self._buf += out
        return True

    def _ensure(self, end: int) -> None:
        """Inflate until the stream holds the bytes before ``end`` (or ends)."""
        while self._base + len(self._buf) < end and self._feed():
            self._trim()

    def _trim(self) -> None:
        """Unless keeping everything, drop the bytes before the read position."""
        if self.kept:
            return
        dead = min(self._pos - self._base, len(self._buf))
        if dead > 0 and (dead == len(self._buf) or dead >= OUT_CHUNK):
            del self._buf[:dead]
            self._base += dead


class _SafeTarInfo(tarfile.TarInfo):
    """Bounds what ``tarfile`` reads on its own, before a member reaches :func:`check_member`:
    the data of an extended header (read whole into memory), chains of extended headers (each
    one recurses), and every sparse form (whose maps tarfile reads beyond the header)."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            _refuse_sparse(self.name)
        if self.type not in _EXTENDED:
            assert isinstance(tar, _SafeTarFile)
            tar.extended_chain = 0
            return super()._proc_member(tar)  # type: ignore[misc, no-any-return]
        if self.size > EXTENDED_HEADER_MAX:
            raise ReleaseError(
                "unsafe_member",
                f"an extended header ({self.type!r}) is {self.size} bytes "
                f"(at most {EXTENDED_HEADER_MAX})",
            )
        assert isinstance(tar, _SafeTarFile)
        tar.extended_chain += 1
        if tar.extended_chain > EXTENDED_CHAIN_MAX:
            raise ReleaseError(
                "unsafe_member",
                f"more than {EXTENDED_CHAIN_MAX} extended headers in a row",
            )
        return super()._proc_member(tar)  # type: ignore[misc, no-any-return]

    def _proc_gnusparse_00(self, next: tarfile.TarInfo, *args: Any) -> None:
        _refuse_sparse(next.name)

    def _proc_gnusparse_01(self, next: tarfile.TarInfo, *args: Any) -> None:
        _refuse_sparse(next.name)

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, *args: Any) -> None:
        _refuse_sparse(next.name)


def _refuse_sparse(name: str) -> None:
    raise ReleaseError("unsafe_member", f"member {name!r} is a sparse file", member=name)


class _SafeTarFile(tarfile.TarFile):
    tarinfo = _SafeTarInfo
    extended_chain = 0


def _open_tar(src: _Inflated) -> tarfile.TarFile:
    return _SafeTarFile(fileobj=src, mode="r")  # type: ignore[arg-type]


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
            tarfile.GNUTYPE_SPARSE: "a sparse file",
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
        _refuse_sparse(name)
    return Member(
        name, is_dir, 0 if is_dir else info.size, bool(info.mode & 0o111), info.offset_data
    )


def _digest(chunks: Iterator[memoryview]) -> str:
    h = hashlib.sha256()
    for part in chunks:
        h.update(part)
    return encode_digest(h.digest())


def scan(
    tarball: Path, *, expected_sha256: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> Scan:
    """First pass: outer checksum, every header and every file's hash, writing nothing."""
    if not tarball.is_file():
        raise UsageError("release_not_found", f"{tarball} does not exist", path=str(tarball))
    expected = expected_sha256.lower() if expected_sha256 else read_sidecar(tarball)
    members: list[Member] = []
    meta: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    total = 0
    failure: HotswapError | None = None
    with open(tarball, "rb") as raw:
        src = _Inflated(raw, keep=limits.buffer_bytes, cap=limits.stream_bytes)
        try:
            seen: set[str] = set()
            with _open_tar(src) as tar:
                for info in tar:
                    member = check_member(info)
                    if member.name in seen:
                        raise ReleaseError(
                            "duplicate_member",
                            f"member {member.name!r} appears twice",
                            member=member.name,
                        )
                    seen.add(member.name)
                    total += member.size
                    if len(seen) > limits.max_files or total > limits.max_bytes:
                        raise ReleaseError(
                            "too_large",
                            f"archive exceeds the limits ({limits.max_files} entries, "
                            f"{limits.max_bytes} bytes) at member {member.name!r}",
                            member=member.name,
                        )
                    members.append(member)
                    if member.is_dir:
                        continue
                    if member.name in _UNRECORDED:
                        if member.size > META_MAX_BYTES:
                            raise ReleaseError("too_large", f"{member.name} is {member.size} bytes")
                        meta[member.name] = b"".join(
                            bytes(p) for p in src.chunks(member.offset, member.size)
                        )
                    else:
                        digests[member.name] = _digest(src.chunks(member.offset, member.size))
            if not members:
                raise ReleaseError("corrupt_archive", f"{tarball.name} is an empty archive")
            src.finish()
        except HotswapError as e:
            failure = e
            if e.code == "corrupt_archive" and tarball.name not in e.message:
                failure = ReleaseError("corrupt_archive", f"{tarball.name}: {e.message}")
        except _ARCHIVE_ERRORS as e:
            failure = ReleaseError(
                "corrupt_archive",
                f"{tarball.name} is not a readable .tar.gz ({type(e).__name__}: {e})",
            )
        actual = src.hexdigest()
    if actual != expected:
        raise ReleaseError(
            "checksum_mismatch",
            f"{tarball.name} has sha256 {actual}, its checksum says {expected}",
            expected=expected,
            actual=actual,
        )
    if failure is not None:
        raise failure
    result = _cross_check(members, meta, digests)
    result.sha256 = actual
    result.files = len([m for m in members if not m.is_dir])
    result.bytes = total
    result.payload = src.payload
    return result


def _cross_check(members: list[Member], meta: dict[str, bytes], digests: dict[str, str]) -> Scan:
    if MANIFEST_NAME not in meta:
        raise ReleaseError("manifest_invalid", f"the archive has no {MANIFEST_NAME}")
    if RECORD_NAME not in meta:
        raise ReleaseError("record_invalid", f"the archive has no {RECORD_NAME}")
    manifest = Manifest.loads(meta[MANIFEST_NAME])
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
    record = loads(meta[RECORD_NAME])
    if (
        len(record) != declared["files"]
        or sum(e.size for e in record.values()) != declared["bytes"]
    ):
        raise ReleaseError("record_invalid", "RECORD's totals differ from the manifest's")
    all_files = {m.name for m in members if not m.is_dir}
    for m in members:
        parent = m.name.rpartition("/")[0]
        while parent:
            if parent in all_files:
                raise ReleaseError(
                    "unsafe_member",
                    f"member {m.name!r} lies below {parent!r}, which is a file",
                    member=m.name,
                )
            parent = parent.rpartition("/")[0]
        if m.is_dir and m.name in all_files:
            raise ReleaseError(
                "duplicate_member", f"{m.name!r} is both a file and a directory", member=m.name
            )
    file_members = {m.name: m for m in members if not m.is_dir and m.name not in _UNRECORDED}
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
    missing = sorted(set(record) - set(file_members))
    if missing:
        raise ReleaseError(
            "record_entry_missing",
            f"RECORD lists {missing[0]!r} but the archive lacks it"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            member=missing[0],
        )
    for name in sorted(file_members):
        if digests.get(name) != record[name].digest:
            raise ReleaseError(
                "hash_mismatch", f"member {name!r} does not match its RECORD hash", member=name
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
    try:
        with memoryview(payload) as view:
            for member in result.members:
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
    try:
        with open(tarball, "rb") as raw:
            cap = result.bytes + HEADER_ALLOWANCE * (len(result.members) + 16) + TRAILER_SLACK
            src = _Inflated(raw, keep=0, cap=cap)
            with _open_tar(src) as tar:
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
    except _ARCHIVE_ERRORS as e:
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
