"""The release RECORD: every file with its sha256 and size, in wheel RECORD style.

One CSV row per regular file, ``path,sha256=<urlsafe base64, no padding>,size``, paths relative
to the release root with ``/`` separators, sorted. RECORD lists itself with empty hash and size,
as a wheel's does. Directories are not listed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hotswap.errors import ReleaseError

RECORD_NAME = "RECORD"
MANIFEST_NAME = "RELEASE.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    digest: str  # "sha256=<b64url-nopad>"
    size: int


def encode_digest(raw: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sha256_of(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """The sha256 digest and the size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def hash_file(path: str | os.PathLike[str]) -> Entry:
    digest, size = sha256_of(path)
    return Entry(encode_digest(digest), size)


_DIGEST = re.compile(r"sha256=[A-Za-z0-9_-]{43}")
_SIZE = re.compile(r"[0-9]{1,19}")  # ASCII digits only ("²".isdigit() is true)
# C0 and C1 controls (U+0085 is a line break to str.splitlines), backslash, bidi overrides
# and isolates (a name that reads as another), line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


_BAD_PARTS = frozenset(("", ".", ".."))
MAX_DEPTH = 64  # path components of one name
MAX_PATH = 1024  # characters of one name


def path_too_long(name: str) -> str:
    """Why ``name`` is over the depth or length cap, or "" when it is not."""
    if len(name) > MAX_PATH:
        return f"is {len(name)} characters long (at most {MAX_PATH})"
    depth = name.count("/") + 1
    if depth > MAX_DEPTH:
        return f"is {depth} components deep (at most {MAX_DEPTH})"
    return ""


def shown(name: str, limit: int = 120) -> str:
    """``name`` for a message: repr, cut in the middle when long."""
    if len(name) <= limit:
        return repr(name)
    return repr(name[: limit // 2]) + f"...({len(name)} characters)..." + repr(name[-limit // 2 :])


def is_safe_relpath(name: str) -> bool:
    """Relative, POSIX, normalised, no '..', no empty parts; valid UTF-8 (no lone surrogates
    from undecodable bytes) without control characters (NUL, newline, escape) or backslash;
    at most ``MAX_DEPTH`` components and ``MAX_PATH`` characters."""
    if not name or name[0] == "/" or len(name) > MAX_PATH or _CONTROL.search(name):
        return False
    parts = name.split("/")
    # no empty, "." or ".." component: what posixpath.normpath would leave unchanged, with
    # no way up (a RECORD has thousands of names: this is checked for each, at C speed)
    if len(parts) > MAX_DEPTH or not _BAD_PARTS.isdisjoint(parts):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan_tree(root: Path) -> dict[str, Entry]:
    """Hash every regular file below ``root`` except RECORD and RELEASE.json (which pins
    RECORD's own hash). Refuses links and special files."""
    entries: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                raise ReleaseError(
                    "unsafe_member", f"{os.path.join(dirpath, name)} is a symbolic link"
                )
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in (RECORD_NAME, MANIFEST_NAME):
                continue
            if os.path.islink(full) or not os.path.isfile(full):
                raise ReleaseError("unsafe_member", f"{rel} is not a regular file", member=rel)
            if not is_safe_relpath(rel):
                raise ReleaseError(
                    "unsafe_member", f"{rel!r} is a name unpacking would refuse", member=rel
                )
            entries[rel] = hash_file(full)
    return entries


def dumps(entries: Mapping[str, Entry]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for name in sorted(entries):
        writer.writerow([name, entries[name].digest, entries[name].size])
    writer.writerow([RECORD_NAME, "", ""])
    return out.getvalue().encode("utf-8")


def loads(data: bytes) -> dict[str, Entry]:
    """Parse RECORD bytes. Raises ``record_invalid`` naming the bad row."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReleaseError("record_invalid", f"RECORD is not UTF-8: {e}") from None
    entries: dict[str, Entry] = {}
    try:
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
            _add_row(entries, lineno, row)
    except csv.Error as e:  # a field over csv's size limit, a NUL, a stray quote
        raise ReleaseError("record_invalid", f"RECORD is not valid CSV: {e}") from None
    return entries


def _add_row(entries: dict[str, Entry], lineno: int, row: list[str]) -> None:
    if len(row) != 3:
        raise ReleaseError("record_invalid", f"RECORD line {lineno} has {len(row)} fields")
    name, digest, size = row
    if name == RECORD_NAME and not digest and not size:
        return
    if not is_safe_relpath(name):
        raise ReleaseError("record_invalid", f"RECORD line {lineno}: unsafe path {shown(name)}")
    if name in entries:
        raise ReleaseError("record_invalid", f"RECORD lists {shown(name)} twice")
    if not _DIGEST.fullmatch(digest) or not _SIZE.fullmatch(size):
        raise ReleaseError("record_invalid", f"RECORD line {lineno}: bad hash or size")
    entries[name] = Entry(digest, int(size))


def write(root: Path, entries: Mapping[str, Entry]) -> bytes:
    data = dumps(entries)
    (root / RECORD_NAME).write_bytes(data)
    return data


def total_bytes(entries: Iterable[Entry]) -> int:
    return sum(e.size for e in entries)
