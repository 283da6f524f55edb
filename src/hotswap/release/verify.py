"""Verify a release tarball: the scan and the cross-check, under :class:`Limits`.

Promise 8: nothing escapes the state dir. Links, devices, fifos, setuid/setgid bits, absolute
paths, ``..``, odd names, duplicate names, members not in the record, record entries missing
from the archive, files whose bytes differ from the record and totals over the limits are all
refused *before anything is written*; a bad archive leaves no trace. In order:

1. **scan** (one pass over the file): the compressed bytes go through sha256 for the outer
   checksum and through our own bounded inflater (:mod:`hotswap.release.inflate`); a hardened
   ``tarfile`` (:mod:`hotswap.release.tarsafe`) parses headers from the inflated stream, and
   every member is checked (type, mode, name, size, totals) as its header is read, so a
   decompression bomb stops at its header. Every file is hashed as it streams by, and RECORD
   and RELEASE.json are kept. Then the rest of the gzip stream is read to its end, so its CRC
   and length are checked and nothing may follow it. A failure is reported only after the
   checksum is known: a corrupted tarball is ``checksum_mismatch``, not whichever parse error
   the corruption happened to cause.
2. **cross-check**: RECORD matches the manifest (its sha256, file count, byte total); the set
   of file members equals RECORD's paths, no member lies below a file, every size and every
   sha256 agrees. Then (the caller) the interpreter can run it.
3. **extract** (:mod:`hotswap.release.extract`) writes the checked bytes below a staging dir.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
import tarfile
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotswap.errors import HotswapError, ReleaseError, UsageError
from hotswap.release import interpreter
from hotswap.release.inflate import TRAILER_SLACK, Inflated
from hotswap.release.manifest import Manifest, release_id_for
from hotswap.release.record import MANIFEST_NAME, RECORD_NAME, Entry, encode_digest, loads
from hotswap.release.tarsafe import Member, check_member, iter_members, open_tar

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_FILES = 200_000
DEFAULT_BUFFER_BYTES = 256 * 1024**2
DEFAULT_SECONDS = 600.0
SIDECAR_MAX = 4096  # bytes of a .sha256 file read at most
META_MAX_BYTES = 64 * 1024**2  # RECORD and RELEASE.json are read into memory
HEADER_ALLOWANCE = 4 * 512  # stream bytes per entry beyond its data: headers, padding
# RECORD cannot list itself with a hash, and RELEASE.json pins RECORD's sha256, so neither is
# in RECORD: RECORD is checked against the manifest, the manifest against the scanned bytes.
_UNRECORDED = frozenset({RECORD_NAME, MANIFEST_NAME})
_HEX64 = re.compile(r"[0-9a-f]{64}")
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


@dataclass(frozen=True)
class Limits:
    """Totals over which an archive is refused as ``too_large`` (a decompression bomb stops
    at the first header that crosses them, before anything is written), and how much of the
    inflated stream the scan may keep in memory so that extraction needs no second read."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    seconds: float = DEFAULT_SECONDS  # verify + unpack, else ``unpack_timeout``
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def deadline(self) -> Deadline:
        return Deadline(self.clock, self.clock() + self.seconds, self.seconds)

    @property
    def stream_bytes(self) -> int:
        """The most inflated bytes an archive within the limits can take."""
        return self.max_bytes + HEADER_ALLOWANCE * (self.max_files + 16) + TRAILER_SLACK


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Deadline:
    """When verify + unpack must be done: checked at every inflate step and every member, so
    an archive that is slow to check (or a slow disk) cannot hold the upgrade lock for long."""

    clock: Callable[[], float]
    at: float
    seconds: float

    def check(self) -> None:
        if self.clock() > self.at:
            raise ReleaseError(
                "unpack_timeout",
                f"verify + unpack took more than {self.seconds:g} s (Limits.seconds)",
                limit=self.seconds,
            )


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
    stream_bytes: int = 0  # the inflated size: a second pass may not inflate more
    deadline: Deadline | None = None
    checks: list[str] = field(default_factory=list)
    payload: bytearray | None = field(default=None, repr=False)


def read_sidecar(tarball: Path) -> str:
    """The hex digest from ``<tarball>.sha256`` (``sha256sum`` format). Only a regular file is
    read, and only its first ``SIDECAR_MAX`` bytes: opened with ``O_NOFOLLOW | O_NONBLOCK``, so
    a FIFO, a symlink (to /dev/zero or anywhere) or a huge file is refused at once."""
    sidecar = tarball.with_name(tarball.name + ".sha256")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(sidecar, flags)
    except FileNotFoundError:
        raise ReleaseError(
            "checksum_missing",
            f"{sidecar.name} is missing: a release tarball travels with its .sha256 file",
            path=str(sidecar),
        ) from None
    except OSError as e:  # ELOOP: a symlink
        raise ReleaseError(
            "checksum_missing", f"{sidecar.name} cannot be read as a plain file: {e.strerror}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReleaseError("checksum_missing", f"{sidecar.name} is not a regular file")
        if st.st_size > SIDECAR_MAX:
            raise ReleaseError(
                "checksum_missing",
                f"{sidecar.name} is {st.st_size} bytes (a sha256sum line is under {SIDECAR_MAX})",
            )
        data = os.read(fd, SIDECAR_MAX)
    except OSError as e:
        raise ReleaseError("checksum_missing", f"{sidecar.name} is unreadable: {e}") from None
    finally:
        os.close(fd)
    text = data.decode("ascii", errors="replace").strip()
    digest = text.split()[0].lower() if text else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ReleaseError("checksum_missing", f"{sidecar.name} holds no sha256 hex digest")
    return digest


def expected_digest(tarball: Path, given: object) -> str:
    """The sha256 the caller gave (64 hex digits, any case), else the sidecar's."""
    if given is None or given == "":
        return read_sidecar(tarball)
    if not isinstance(given, str) or not _HEX64.fullmatch(given.lower()):
        raise UsageError(
            "bad_config", f"sha256 must be 64 hex digits, not {given!r:.80}", field="sha256"
        )
    return given.lower()


def checksum_mismatch(tarball: Path, actual: str, expected: str) -> ReleaseError:
    return ReleaseError(
        "checksum_mismatch",
        f"{tarball.name} has sha256 {actual}, its checksum says {expected}",
        expected=expected,
        actual=actual,
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
    expected = expected_digest(tarball, expected_sha256)
    members: list[Member] = []
    meta: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    total = 0
    failure: HotswapError | None = None
    deadline = limits.deadline()
    with open(tarball, "rb") as raw:
        src = Inflated(raw, keep=limits.buffer_bytes, cap=limits.stream_bytes, tick=deadline.check)
        try:
            seen: set[str] = set()
            seen_folded: dict[str, str] = {}
            with open_tar(src) as tar:
                for info in iter_members(tar):
                    deadline.check()
                    member = check_member(info)
                    if member.name in seen:
                        raise ReleaseError(
                            "duplicate_member",
                            f"member {member.name!r} appears twice",
                            member=member.name,
                        )
                    seen.add(member.name)
                    folded = unicodedata.normalize("NFC", member.name).casefold()
                    if folded in seen_folded:
                        raise ReleaseError(
                            "duplicate_member",
                            f"member {member.name!r} and {seen_folded[folded]!r} are the same "
                            "name on a case-insensitive or normalising file system",
                            member=member.name,
                        )
                    seen_folded[folded] = member.name
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
        except ARCHIVE_ERRORS as e:
            failure = ReleaseError(
                "corrupt_archive",
                f"{tarball.name} is not a readable .tar.gz ({type(e).__name__}: {e})",
            )
        actual = src.hexdigest()
    if actual != expected:
        raise checksum_mismatch(tarball, actual, expected)
    if failure is not None:
        raise failure
    result = _cross_check(members, meta, digests)
    result.sha256 = actual
    result.files = len([m for m in members if not m.is_dir])
    result.bytes = total
    result.stream_bytes = src.produced
    result.deadline = deadline
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
    expected_id = release_id_for(manifest.raw)
    if manifest.release_id != expected_id:
        raise ReleaseError(
            "manifest_invalid",
            f"release_id {manifest.release_id!r} does not name this release's RECORD, app and "
            f"python blocks (that is {expected_id!r})",
            field="release_id",
        )
    record = loads(meta[RECORD_NAME])
    if (
        len(record) != declared["files"]
        or sum(e.size for e in record.values()) != declared["bytes"]
    ):
        raise ReleaseError("record_invalid", "RECORD's totals differ from the manifest's")
    _check_nothing_below_a_file(members)
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


def _check_nothing_below_a_file(members: list[Member]) -> None:
    """No member lies below a file, no name is both a file and a directory. Sorted with "/"
    as the lowest character, a name's descendants come right after it, so one pass over
    neighbours finds them (a walk up every name's parents was quadratic in its length)."""
    files = {m.name for m in members if not m.is_dir}
    for m in members:
        if m.is_dir and m.name in files:
            raise ReleaseError(
                "duplicate_member", f"{m.name!r} is both a file and a directory", member=m.name
            )
    ordered = sorted(members, key=lambda m: m.name.replace("/", "\0"))
    for above, below in itertools.pairwise(ordered):
        if not above.is_dir and below.name.startswith(above.name + "/"):
            raise ReleaseError(
                "unsafe_member",
                f"member {below.name!r} lies below {above.name!r}, which is a file",
                member=below.name,
            )


def check_interpreter(result: Scan, **kwargs: Any) -> None:
    interpreter.check(result.manifest.python, result.manifest.distributions, **kwargs)
