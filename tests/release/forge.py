"""Forge release tarballs member by member, to test what verify + unpack refuses.

A small valid release (``lib/demo/...`` files, RECORD and RELEASE.json written with the real
record and manifest code, for this interpreter) is the base; a test changes one thing (adds a
symlink, breaks a hash, renames a member) and writes the members with ``tarfile`` directly, in
the order given, plus a matching ``.sha256`` so that the outer checksum passes and the deeper
check is the one that fires.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import io
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hotswap.release import interpreter, record
from hotswap.release.config import AppConfig
from hotswap.release.manifest import FORMAT, release_id_for

MTIME = 1_700_000_000

BASE_FILES: dict[str, bytes] = {
    "lib/demo/__init__.py": b'VERSION = "1.0"\n',
    "lib/demo/main.py": b"def app(environ, start_response):\n    return [b'demo']\n",
    "lib/demo/data.bin": bytes(range(256)) * 8,
    "lib/demo/run.sh": b"#!/bin/sh\necho demo\n",
    "lib/demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "lib/demo-1.0.dist-info/WHEEL": (
        b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ),
}
EXECUTABLE = frozenset({"lib/demo/run.sh"})


@dataclass(frozen=True)
class M:
    """One tar member as it will be written: any type, mode, name or claimed size."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    mode: int = 0o644
    linkname: str = ""
    size: int | None = None  # the header's size; defaults to len(data)
    pax: tuple[tuple[str, str], ...] = ()  # extra pax header records

    @property
    def is_file(self) -> bool:
        return self.type in (tarfile.REGTYPE, tarfile.AREGTYPE)


def file(name: str, data: bytes, mode: int = 0o644) -> M:
    return M(name, data, mode=mode)


def directory(name: str, mode: int = 0o755) -> M:
    return M(name, type=tarfile.DIRTYPE, mode=mode)


def record_bytes(files: dict[str, bytes]) -> bytes:
    entries = {
        name: record.Entry(record.encode_digest(hashlib.sha256(data).digest()), len(data))
        for name, data in files.items()
    }
    return record.dumps(entries)


def manifest_dict(
    files: dict[str, bytes], rec: bytes, *, version: str = "1.0", created: int = MTIME
) -> dict[str, Any]:
    """The manifest ``hotswap build`` would write for these files and this RECORD."""
    record_sha = hashlib.sha256(rec).hexdigest()
    manifest = {
        "format": FORMAT,
        "name": "demo",
        "version": version,
        "release_id": "",
        "created": created,
        "builder": {"hotswap": "test", "installer": "forge"},
        "python": interpreter.identity(),
        "distributions": [
            {
                "name": "demo",
                "version": version,
                "purelib": True,
                "has_extensions": False,
                "tags": ["py3-none-any"],
            }
        ],
        "app": AppConfig(distribution="demo", entry="demo.main:app", server="callable").to_json(),
        "record": {
            "sha256": record_sha,
            "files": len(files),
            "bytes": sum(len(d) for d in files.values()),
        },
    }
    manifest["release_id"] = release_id_for(manifest)
    return manifest


def dump_manifest(manifest: dict[str, Any]) -> bytes:
    import json

    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def release_members(
    files: dict[str, bytes] | None = None,
    *,
    version: str = "1.0",
    created: int = MTIME,
    edit_manifest: Callable[[dict[str, Any]], None] | None = None,
    rec: bytes | None = None,
    keep_id: bool = False,
) -> list[M]:
    """The members of a valid release of ``files`` (default: BASE_FILES), sorted as
    ``hotswap build`` sorts them. ``edit_manifest`` changes the manifest after it was made
    (so the manifest lies), and the release id follows the edit unless the edit set it or
    ``keep_id`` (the manifest then claims the id of the unedited release); ``rec`` replaces
    RECORD (and the manifest pins its hash)."""
    files = dict(BASE_FILES if files is None else files)
    rec = record_bytes(files) if rec is None else rec
    manifest = manifest_dict(files, rec, version=version, created=created)
    if edit_manifest is not None:
        before = manifest["release_id"]
        manifest = copy.deepcopy(manifest)
        edit_manifest(manifest)
        if manifest.get("release_id") == before and not keep_id:
            with contextlib.suppress(KeyError, TypeError):  # (unless it broke what it names)
                manifest["release_id"] = release_id_for(manifest)  # the edit is the only defect
    members = [file(record.RECORD_NAME, rec), file(record.MANIFEST_NAME, dump_manifest(manifest))]
    dirs: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    members += [directory(d) for d in dirs]
    members += [file(n, d, 0o755 if n in EXECUTABLE else 0o644) for n, d in files.items()]
    return sorted(members, key=lambda m: m.name)


def tar_bytes(members: Iterable[M], *, end: bool = True) -> bytes:
    """An uncompressed PAX tar of ``members``, in order, exactly as given (without the
    end-of-archive blocks when ``end`` is false, so that more can be appended)."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
    for m in members:
        info = tarfile.TarInfo(m.name)
        info.type = m.type
        info.mode = m.mode
        info.mtime = MTIME
        info.linkname = m.linkname
        info.pax_headers = dict(m.pax)
        if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = 1, 3
        if m.is_file or m.type == tarfile.CONTTYPE:
            info.size = len(m.data)
            tar.addfile(info, io.BytesIO(m.data))
        else:
            tar.addfile(info)
        if m.size is not None:  # lie about the size: patch the header written last
            _patch_size(buf, m)
    if end:
        tar.close()
    return buf.getvalue()


def _patch_size(buf: io.BytesIO, m: M) -> None:
    """Rewrite the size field of the last header written for ``m`` (ustar, octal)."""
    data = bytearray(buf.getvalue())
    end = len(data) - tarfile.BLOCKSIZE * ((len(m.data) + 511) // 512)
    header = end - tarfile.BLOCKSIZE
    assert m.size is not None
    field = (b"%011o" % m.size) + b"\0" if m.size < 8**11 else _base256(m.size)
    data[header + 124 : header + 136] = field
    data[header + 148 : header + 156] = b"        "
    chksum = sum(data[header : header + 512])
    data[header + 148 : header + 156] = b"%06o\0 " % chksum
    buf.seek(0)
    buf.truncate()
    buf.write(bytes(data))


def _base256(n: int) -> bytes:
    return b"\x80" + n.to_bytes(11, "big")


def gzip_bytes(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=6, mtime=0)


def write_archive(path: Path, members: Iterable[M], *, sidecar: bool = True) -> Path:
    """Write ``members`` as a ``.tar.gz`` at ``path`` (and its ``.sha256``)."""
    return write_raw(path, gzip_bytes(tar_bytes(members)), sidecar=sidecar)


def write_raw(path: Path, data: bytes, *, sidecar: bool = True) -> Path:
    """Write arbitrary bytes as a tarball, with a ``.sha256`` that matches them."""
    path.write_bytes(data)
    if sidecar:
        write_sidecar(path, hashlib.sha256(data).hexdigest())
    return path


def write_sidecar(path: Path, digest: str) -> None:
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def replace_member(members: list[M], name: str, **changes: Any) -> list[M]:
    out = [replace(m, **changes) if m.name == name else m for m in members]
    assert out != members, f"no member {name!r}"
    return out


def drop_member(members: list[M], name: str) -> list[M]:
    out = [m for m in members if m.name != name]
    assert len(out) == len(members) - 1, f"no member {name!r}"
    return out


def zero_bomb_gzip(head: bytes, zeros: int, tail: bytes = b"", chunk: int = 16 << 20) -> bytes:
    """A real, valid gzip of ``head``, then ``zeros`` zero bytes, then ``tail``, made in a
    blink: deflate after a full flush is stateless, so one compressed chunk of zeros is
    repeated. 3 GiB of zeros take about 3 MB."""
    assert zeros % chunk == 0
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(head) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
    again = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
    assert again == block  # the trick holds
    last = co.compress(tail) + co.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    zero_chunk = bytes(chunk)
    for _ in range(zeros // chunk):
        crc = zlib.crc32(zero_chunk, crc)
    crc = zlib.crc32(tail, crc)
    size = (len(head) + zeros + len(tail)) & 0xFFFFFFFF
    gz_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    body = first + block * (zeros // chunk) + last
    return gz_header + body + crc.to_bytes(4, "little") + size.to_bytes(4, "little")


def header_bytes(name: str, size: int, type: bytes = tarfile.REGTYPE) -> bytes:
    """A lone tar header (PAX format) claiming ``size`` bytes of data."""
    info = tarfile.TarInfo(name)
    info.type = type
    info.size = size
    info.mtime = MTIME
    return info.tobuf(tarfile.PAX_FORMAT)


def snapshot(root: Path) -> set[str]:
    """Every path below ``root`` (files, dirs, links), relative, for before/after checks."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def pax_record(key: str, value: str) -> bytes:
    """One pax record, ``"<len> key=value\\n"`` (its length counts itself)."""
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def extended_block(data: bytes, type: bytes = tarfile.XGLTYPE) -> bytes:
    """A raw extended header (global pax by default) carrying ``data``, padded to a block."""
    head = header_bytes("pax", len(data), type)[-tarfile.BLOCKSIZE :]
    return head + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def global_pax_amplifier(dirs: int, header_bytes_: int = 1 << 20) -> bytes:
    """The audit's memory bomb: one global pax header of ``header_bytes_`` of tiny records,
    then ``dirs`` empty directories (free: not in RECORD, 512 bytes each), then a valid
    release. tarfile copies the global records into every later member and keeps them all."""
    records = bytearray()
    i = 0
    while len(records) < header_bytes_ - 32:
        records += pax_record(f"k{i}", "v")
        i += 1
    head = extended_block(bytes(records))
    head += tar_bytes([directory(f"d{i:05d}") for i in range(dirs)], end=False)
    return gzip_bytes(head + tar_bytes(release_members()))


def stepped_deep_tree(depth: int = 2000, step: int = 500) -> list[M]:
    """The audit's deep tree: directory members at depths ``step``, ``2 * step``, ... ``depth``
    (each a long pax name), which a recursive mkdir would turn into one ``depth``-level tree."""
    return [directory("/".join(["d"] * n)) for n in range(step, depth + 1, step)]


def make_deep_dirs(top: Path, depth: int, name: str = "d") -> None:
    """Create ``top/d/d/.../d`` (``depth`` levels, past PATH_MAX if need be) with a file in
    the deepest, one level at a time relative to a directory fd."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        leaf = os.open("leaf.py", os.O_WRONLY | os.O_CREAT, 0o444, dir_fd=fd)
        os.close(leaf)
        os.fchmod(fd, 0o555)
    finally:
        os.close(fd)


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
