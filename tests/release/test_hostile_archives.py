"""Promise 8, nothing escapes the state dir: broken and hostile tarballs, one defect each.

Every case is a small valid release with one thing changed, written member by member with
``tarfile`` and given a matching ``.sha256`` (except the checksum cases), so the check that
fires is the deep one the case is about. Each asserts the stable code, that the message names
the member or field, that the refusal came from the checks that run before anything is
written, and that no path appeared anywhere in the sandbox (no staging dir, no release, nothing
beside or above the state dir).
"""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import HotswapError, ReleaseError, UsageError
from hotswap.release import extract, verify
from hotswap.release.store import ReleaseStore
from hotswap.release.verify import Limits
from tests.release import forge
from tests.release.forge import M, directory, file

Make = Callable[[Path], Path]  # (sandbox root) -> tarball path
ESCAPE_ETC = "/etc/hotswap-escape-test"


@dataclass(frozen=True)
class Case:
    make: Make
    code: str
    names: str  # what the message must name
    limits: Limits = field(default_factory=Limits)


def tarball_path(root: Path) -> Path:
    return root / "in" / "demo-1.0.tar.gz"


def archive(members: Callable[[Path], list[M]] | list[M]) -> Make:
    def make(root: Path) -> Path:
        listed = members(root) if callable(members) else members
        return forge.write_archive(tarball_path(root), listed)

    return make


def raw(data: Callable[[], bytes], *, sidecar: str = "match") -> Make:
    """Arbitrary bytes as the tarball. ``sidecar``: ``match`` (a .sha256 of these bytes),
    ``valid`` (the .sha256 of the valid release, so the bytes differ from it) or ``none``."""

    def make(root: Path) -> Path:
        path = tarball_path(root)
        forge.write_raw(path, data(), sidecar=sidecar == "match")
        if sidecar == "valid":
            forge.write_sidecar(path, _sha256(VALID_GZ()))
        return path

    return make


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def base() -> list[M]:
    return forge.release_members()


def plus(*extra: M) -> list[M]:
    return base() + list(extra)


def with_files(files: dict[str, bytes], *, drop_dir: str) -> list[M]:
    """A release listing ``files`` in RECORD on top of the base, without the directory
    member ``drop_dir`` (so that a file can stand where a directory is implied)."""
    members = forge.release_members({**forge.BASE_FILES, **files})
    return [m for m in members if not (m.name == drop_dir and m.type == tarfile.DIRTYPE)]


def _bytes_before(name: str) -> int:
    """The unpacked bytes of the base release's members sorted before ``name``."""
    return sum(len(m.data) for m in base() if m.name < name)


def edit(fn: Callable[[dict[str, Any]], None], *, keep_id: bool = False) -> list[M]:
    return forge.release_members(edit_manifest=fn, keep_id=keep_id)


def with_record(rec: bytes) -> list[M]:
    return forge.release_members(rec=rec)


def set_path(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(manifest: dict[str, Any]) -> None:
        *keys, last = path.split(".")
        target: Any = manifest
        for k in keys:
            target = target[int(k)] if isinstance(target, list) else target[k]
        target[last] = value

    return fn


def delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest.pop(key)


@functools.cache
def VALID_GZ() -> bytes:
    return forge.gzip_bytes(forge.tar_bytes(base()))


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x40
    return bytes(out)


@functools.cache
def _bomb() -> bytes:
    """3 GiB of zeros in one member after a valid release prefix: about 3 MB of gzip."""
    head = forge.tar_bytes(base(), end=False) + forge.header_bytes("lib/demo/zeros.bin", 3 << 30)
    return forge.zero_bomb_gzip(head, 3 << 30, tail=bytes(10240))


@functools.cache
def _pax_bomb() -> bytes:
    """An extended (pax) header whose own data is 3 GiB of zeros: tarfile reads such a header
    whole, before any member reaches the member checks."""
    head = forge.tar_bytes(base(), end=False) + forge.header_bytes(
        "lib/demo/pax", 3 << 30, tarfile.XHDTYPE
    )
    return forge.zero_bomb_gzip(head, 3 << 30, tail=bytes(10240))


def _pax_chain() -> bytes:
    """3,000 extended headers in a row, each announcing the next."""
    chain = b""
    for _ in range(3000):
        data = b"20 comment=aaaaaaaa\n"
        chain += forge.header_bytes("pax", len(data), tarfile.XHDTYPE)[-512:]
        chain += data.ljust(512, b"\0")
    head = forge.tar_bytes(base(), end=False) + chain
    return forge.gzip_bytes(head + forge.header_bytes("lib/demo/last.py", 0) + bytes(10240))


def _changed_data_bin() -> bytes:
    data = bytearray(forge.BASE_FILES["lib/demo/data.bin"])
    data[100] ^= 0xFF
    return bytes(data)


def _sparse_pax() -> M:
    # GNU sparse 1.0 in pax form: the sparse map travels at the start of the data
    sparse_map = b"1\n0\n4\n".ljust(512, b"\0")
    return M(
        "lib/demo/GNUSparseFile.0/sparse.bin",
        sparse_map + b"abcd",
        pax=(
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "lib/demo/sparse.bin"),
            ("GNU.sparse.realsize", "1000000"),
        ),
    )


def _base_record(extra_rows: str = "") -> bytes:
    return forge.record_bytes(dict(forge.BASE_FILES)) + extra_rows.encode()


def _empty_tar_gz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    return forge.gzip_bytes(buf.getvalue())


NUL_NAME = "lib/demo/" + "n" * 110 + "\x00.py"  # long enough for a pax path, which keeps NUL

CASES: dict[str, Case] = {
    # -- links, devices and other special members
    "symlink": Case(
        archive(plus(M("lib/demo/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"))),
        "unsafe_member",
        "lib/demo/link",
    ),
    "symlink-relative-inside": Case(
        archive(plus(M("lib/demo/alias", type=tarfile.SYMTYPE, linkname="data.bin"))),
        "unsafe_member",
        "lib/demo/alias",
    ),
    "symlink-dir-then-file-through-it": Case(
        archive(
            plus(
                M("lib/out", type=tarfile.SYMTYPE, linkname="../../../.."),
                file("lib/out/escaped", b"x"),
            )
        ),
        "unsafe_member",
        "lib/out",
    ),
    "hardlink": Case(
        archive(plus(M("lib/demo/hard", type=tarfile.LNKTYPE, linkname="lib/demo/data.bin"))),
        "unsafe_member",
        "lib/demo/hard",
    ),
    "hardlink-outside": Case(
        archive(plus(M("lib/demo/pw", type=tarfile.LNKTYPE, linkname="../../../etc/passwd"))),
        "unsafe_member",
        "lib/demo/pw",
    ),
    "char-device": Case(
        archive(plus(M("lib/demo/null", type=tarfile.CHRTYPE))), "unsafe_member", "lib/demo/null"
    ),
    "block-device": Case(
        archive(plus(M("lib/demo/sda", type=tarfile.BLKTYPE))), "unsafe_member", "lib/demo/sda"
    ),
    "fifo": Case(
        archive(plus(M("lib/demo/pipe", type=tarfile.FIFOTYPE))), "unsafe_member", "lib/demo/pipe"
    ),
    "contiguous-file": Case(
        archive(plus(M("lib/demo/cont", b"x", type=tarfile.CONTTYPE))),
        "unsafe_member",
        "lib/demo/cont",
    ),
    "unknown-type": Case(
        archive(plus(M("lib/demo/odd", type=b"Z"))), "unsafe_member", "lib/demo/odd"
    ),
    "gnu-sparse": Case(
        archive(plus(M("lib/demo/sparse", type=tarfile.GNUTYPE_SPARSE))),
        "unsafe_member",
        "lib/demo/sparse",
    ),
    "pax-sparse": Case(archive(plus(_sparse_pax())), "unsafe_member", "sparse"),
    "setuid": Case(
        archive(forge.replace_member(base(), "lib/demo/run.sh", mode=0o4755)),
        "unsafe_member",
        "lib/demo/run.sh",
    ),
    "setgid": Case(
        archive(forge.replace_member(base(), "lib/demo/run.sh", mode=0o2755)),
        "unsafe_member",
        "lib/demo/run.sh",
    ),
    "sticky-dir": Case(
        archive(forge.replace_member(base(), "lib/demo", mode=0o1777)),
        "unsafe_member",
        "lib/demo",
    ),
    # -- names
    "absolute-into-sandbox": Case(
        archive(lambda root: plus(file(f"{root}/escaped", b"x"))), "unsafe_member", "/escaped"
    ),
    "absolute-etc": Case(archive(plus(file(ESCAPE_ETC, b"x"))), "unsafe_member", ESCAPE_ETC),
    "dotdot": Case(archive(plus(file("../escaped", b"x"))), "unsafe_member", "../escaped"),
    "dotdot-inner": Case(
        archive(plus(file("a/../../escaped", b"x"))), "unsafe_member", "a/../../escaped"
    ),
    "dotdot-deep": Case(
        archive(plus(file("lib/demo/../../../../escaped", b"x"))),
        "unsafe_member",
        "lib/demo/../../../../escaped",
    ),
    "dotdot-dir": Case(
        archive(plus(directory("../escaped-dir"))), "unsafe_member", "../escaped-dir"
    ),
    "backslash": Case(
        archive(plus(file("lib\\..\\..\\escaped", b"x"))), "unsafe_member", "escaped"
    ),
    "nul-in-name": Case(archive(plus(file(NUL_NAME, b"x"))), "unsafe_member", "\\x00.py"),
    "dot-slash-prefix": Case(
        archive(plus(file("./lib/demo/x.py", b"x"))), "unsafe_member", "./lib/demo/x.py"
    ),
    "double-slash": Case(
        archive(plus(file("lib//demo/x.py", b"x"))), "unsafe_member", "lib//demo/x.py"
    ),
    "trailing-dot": Case(archive(plus(file("lib/demo/.", b"x"))), "unsafe_member", "lib/demo/."),
    "empty-name": Case(archive(plus(file("", b"x"))), "unsafe_member", "''"),
    "control-char-name": Case(
        archive(plus(file("lib/demo/\x1b[2Jx.py", b"x"))), "unsafe_member", "\\x1b[2Jx.py"
    ),
    "c1-control-nel": Case(
        archive(plus(file("lib/demo/x\u0085y.py", b"x"))), "unsafe_member", "lib/demo/x"
    ),
    "bidi-override": Case(
        archive(plus(file("lib/demo/\u202eyp.exe", b"x"))), "unsafe_member", "lib/demo/"
    ),
    "line-separator": Case(
        archive(plus(file("lib/demo/a\u2028b.py", b"x"))), "unsafe_member", "lib/demo/a"
    ),
    "pax-path-differs-from-ustar-name": Case(
        archive(plus(M("lib/EVIL.py", b"x", pax=(("path", "lib/demo/evil.py"),)))),
        "unsafe_member",
        "lib/EVIL.py",
    ),
    "case-only-pair": Case(
        archive(with_files({"lib/demo/Main.py": b"x"}, drop_dir="lib/x")),
        "duplicate_member",
        "case-insensitive",
    ),
    "nfc-nfd-pair": Case(
        archive(
            with_files(
                {"lib/demo/caf\u00e9.py": b"x", "lib/demo/cafe\u0301.py": b"y"},
                drop_dir="lib/x",
            )
        ),
        "duplicate_member",
        "normalising",
    ),
    "manifest-release-id-double-dot": Case(
        archive(edit(set_path("release_id", "1..-" + "a" * 12))),
        "manifest_invalid",
        "release_id",
    ),
    "non-utf8-name": Case(
        archive(plus(file("lib/demo/\udcff.py", b"x"))), "unsafe_member", "lib/demo/"
    ),
    # -- duplicates and shape
    "duplicate-file": Case(
        archive(plus(file("lib/demo/main.py", b"print('second copy')\n"))),
        "duplicate_member",
        "lib/demo/main.py",
    ),
    "duplicate-dir": Case(archive(plus(directory("lib/demo"))), "duplicate_member", "lib/demo"),
    "file-and-dir-same-name": Case(
        archive(plus(directory("lib/demo/main.py"))), "duplicate_member", "lib/demo/main.py"
    ),
    "file-below-a-file": Case(
        archive(with_files({"lib/demo/main.py/evil.py": b"x"}, drop_dir="lib/demo/main.py")),
        "unsafe_member",
        "lib/demo/main.py/evil.py",
    ),
    "file-below-RECORD": Case(
        archive(with_files({"RECORD/evil.py": b"x"}, drop_dir="RECORD")),
        "unsafe_member",
        "RECORD/evil.py",
    ),
    "dir-below-a-file": Case(
        archive(plus(directory("lib/demo/main.py/sub"))),
        "unsafe_member",
        "lib/demo/main.py/sub",
    ),
    "dir-below-a-file-past-siblings": Case(
        archive(
            [
                *with_files(
                    {"lib/demo/main.py-x": b"x", "lib/demo/main.py.y": b"y"}, drop_dir="lib/x"
                ),
                directory("lib/demo/main.py/sub"),
            ]
        ),
        "unsafe_member",
        "lib/demo/main.py/sub",
    ),
    # -- RECORD against the archive
    "member-not-in-record": Case(
        archive(plus(file("lib/demo/extra.py", b"x = 1\n"))),
        "member_not_in_record",
        "lib/demo/extra.py",
    ),
    "record-entry-missing": Case(
        archive(forge.drop_member(base(), "lib/demo/data.bin")),
        "record_entry_missing",
        "lib/demo/data.bin",
    ),
    "size-mismatch": Case(
        archive(forge.replace_member(base(), "lib/demo/main.py", data=b"app = None  # longer\n")),
        "hash_mismatch",
        "lib/demo/main.py",
    ),
    "hash-mismatch-same-size": Case(
        archive(forge.replace_member(base(), "lib/demo/data.bin", data=_changed_data_bin())),
        "hash_mismatch",
        "lib/demo/data.bin",
    ),
    "record-missing": Case(
        archive(forge.drop_member(base(), "RECORD")), "record_invalid", "RECORD"
    ),
    "record-malformed-row": Case(
        archive(with_record(_base_record("lib/demo/x.py,sha256=abc\n"))),
        "record_invalid",
        "line 8",
    ),
    "record-unsafe-path": Case(
        archive(with_record(_base_record("../x.py,sha256=" + "A" * 43 + ",1\n"))),
        "record_invalid",
        "../x.py",
    ),
    "record-lists-twice": Case(
        archive(
            with_record(
                _base_record(forge.record_bytes(dict(forge.BASE_FILES)).decode().split("\n")[0])
            )
        ),
        "record_invalid",
        "twice",
    ),
    "record-not-utf8": Case(
        archive(with_record(b"lib/\xff,sha256=x,1\n")), "record_invalid", "UTF-8"
    ),
    "record-edited-after-manifest": Case(
        archive(forge.replace_member(base(), "RECORD", data=_base_record("# edited\n"))),
        "record_invalid",
        "RECORD has sha256",
    ),
    "record-totals-lie": Case(
        archive(edit(set_path("record.files", 99))), "record_invalid", "totals"
    ),
    # -- the manifest
    "manifest-missing": Case(
        archive(forge.drop_member(base(), "RELEASE.json")), "manifest_invalid", "RELEASE.json"
    ),
    "manifest-not-json": Case(
        archive(forge.replace_member(base(), "RELEASE.json", data=b"{not json")),
        "manifest_invalid",
        "RELEASE.json",
    ),
    "manifest-wrong-format": Case(
        archive(edit(set_path("format", "hotswap-release/99"))), "manifest_invalid", "format"
    ),
    "manifest-lacks-python": Case(archive(edit(delete("python"))), "manifest_invalid", "python"),
    "manifest-release-id-not-record": Case(
        archive(edit(set_path("release_id", "1.0-000000000000"))),
        "manifest_invalid",
        "release_id",
    ),
    "manifest-release-id-traversal": Case(
        archive(edit(set_path("release_id", "../../escaped"))), "manifest_invalid", "release_id"
    ),
    "manifest-claims-another-config's-id": Case(
        archive(edit(set_path("app.health_path", "/other"), keep_id=True)),
        "manifest_invalid",
        "release_id",
    ),
    "manifest-claims-another-interpreter's-id": Case(
        archive(edit(set_path("python.libc", "musl 1.2"), keep_id=True)),
        "manifest_invalid",
        "release_id",
    ),
    "manifest-bad-app": Case(
        archive(edit(set_path("app.entry", "not an entry"))), "manifest_invalid", "app"
    ),
    "manifest-created-nan": Case(
        archive(edit(set_path("created", float("nan")))), "manifest_invalid", "NaN is not JSON"
    ),
    "manifest-created-string": Case(
        archive(edit(set_path("created", "tomorrow"))), "manifest_invalid", "created"
    ),
    "manifest-created-huge": Case(
        archive(edit(set_path("created", 1e20))), "manifest_invalid", "created"
    ),
    "manifest-created-2-40": Case(
        archive(edit(set_path("created", 2**40))), "manifest_invalid", "created"
    ),
    "manifest-created-negative": Case(
        archive(edit(set_path("created", -1))), "manifest_invalid", "created"
    ),
    "manifest-created-bool": Case(
        archive(edit(set_path("created", True))), "manifest_invalid", "created"
    ),
    "manifest-deeply-nested-json": Case(
        archive(forge.replace_member(base(), "RELEASE.json", data=b"[" * 200_000 + b"]" * 200_000)),
        "manifest_invalid",
        "nested too deeply",
    ),
    "manifest-infinity": Case(
        archive(forge.replace_member(base(), "RELEASE.json", data=b'{"created": Infinity}')),
        "manifest_invalid",
        "not JSON",
    ),
    "manifest-distributions-not-objects": Case(
        archive(edit(set_path("distributions", [1]))), "manifest_invalid", "distributions"
    ),
    "manifest-tags-unhashable": Case(
        archive(edit(set_path("distributions.0.tags", [["py3-none-any"]]))),
        "manifest_invalid",
        "tags",
    ),
    "manifest-name-not-a-string": Case(
        archive(edit(set_path("name", 5))), "manifest_invalid", "name"
    ),
    "manifest-builder-not-an-object": Case(
        archive(edit(set_path("builder", [1]))), "manifest_invalid", "builder"
    ),
    "manifest-python-nested": Case(
        archive(edit(set_path("python.version", {"major": 3}))), "manifest_invalid", "python"
    ),
    "manifest-record-sha256-not-hex": Case(
        archive(edit(set_path("record.sha256", "z" * 64))), "manifest_invalid", "record"
    ),
    "manifest-record-files-bool": Case(
        archive(edit(set_path("record.files", True))), "manifest_invalid", "record"
    ),
    "record-size-superscript-digit": Case(
        archive(with_record(_base_record("lib/demo/x.py,sha256=" + "A" * 43 + ",\u00b2\n"))),
        "record_invalid",
        "bad hash or size",
    ),
    "record-size-arabic-indic-digits": Case(
        archive(with_record(_base_record("lib/demo/x.py,sha256=" + "A" * 43 + ",\u0663\n"))),
        "record_invalid",
        "bad hash or size",
    ),
    "record-field-over-csv-limit": Case(
        archive(with_record(_base_record("lib/demo/x.py,sha256=" + "A" * 200_000 + ",1\n"))),
        "record_invalid",
        "CSV",
    ),
    # -- the interpreter
    "interpreter-cache-tag": Case(
        archive(edit(set_path("python.cache_tag", "cpython-99"))),
        "interpreter_mismatch",
        "cache_tag",
    ),
    "interpreter-minor": Case(
        archive(edit(set_path("python.version", "3.99.0"))), "interpreter_mismatch", "3.99.0"
    ),
    "interpreter-wheel-tags": Case(
        archive(edit(set_path("distributions.0.tags", ["cp27-cp27m-win32"]))),
        "interpreter_mismatch",
        "cp27-cp27m-win32",
    ),
    # -- limits and bombs
    "too-many-files": Case(archive(base()), "too_large", "5 entries", Limits(max_files=5)),
    "too-many-bytes": Case(
        archive(base()),
        "too_large",
        "lib/demo/data.bin",
        Limits(max_bytes=_bytes_before("lib/demo/data.bin") + 100),
    ),
    "zero-bomb-3GiB": Case(raw(_bomb), "too_large", "lib/demo/zeros.bin"),
    "pax-header-bomb-3GiB": Case(raw(_pax_bomb), "unsafe_member", "extended header"),
    "pax-header-chain": Case(raw(_pax_chain), "unsafe_member", "extended headers"),
    # -- the outer file
    "truncated-gzip": Case(
        raw(lambda: VALID_GZ()[: len(VALID_GZ()) // 2]), "corrupt_archive", "demo-1.0.tar.gz"
    ),
    "truncated-gzip-original-sha256": Case(
        raw(lambda: VALID_GZ()[:-100], sidecar="valid"), "checksum_mismatch", "demo-1.0.tar.gz"
    ),
    "flipped-byte": Case(
        raw(lambda: _flip(VALID_GZ(), len(VALID_GZ()) // 2), sidecar="valid"),
        "checksum_mismatch",
        "demo-1.0.tar.gz",
    ),
    "bad-gzip-crc": Case(
        raw(lambda: _flip(VALID_GZ(), len(VALID_GZ()) - 6)), "corrupt_archive", "demo-1.0.tar.gz"
    ),
    "data-after-gzip-stream": Case(
        raw(lambda: VALID_GZ() + b"trailing bytes"), "corrupt_archive", "demo-1.0.tar.gz"
    ),
    "gzip-not-tar": Case(
        raw(lambda: gzip.compress(b"just some text, not a tar archive\n" * 40)),
        "corrupt_archive",
        "demo-1.0.tar.gz",
    ),
    "plain-tar-not-gzip": Case(
        raw(lambda: forge.tar_bytes(base())), "corrupt_archive", "demo-1.0.tar.gz"
    ),
    "random-bytes": Case(raw(lambda: bytes(range(256)) * 4), "corrupt_archive", "demo-1.0.tar.gz"),
    "empty-file": Case(raw(lambda: b""), "corrupt_archive", "demo-1.0.tar.gz"),
    "empty-tar": Case(raw(_empty_tar_gz), "corrupt_archive", "empty"),
    "sha256-missing": Case(raw(VALID_GZ, sidecar="none"), "checksum_missing", ".sha256"),
    "sha256-garbage": Case(
        lambda root: _garbage_sidecar(raw(VALID_GZ)(root)), "checksum_missing", ".sha256"
    ),
}


def _garbage_sidecar(path: Path) -> Path:
    path.with_name(path.name + ".sha256").write_text("not a digest\n")
    return path


@dataclass
class Sandbox:
    root: Path
    store: ReleaseStore

    @property
    def state(self) -> Path:
        return self.store.state_dir


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """``tmp/in`` holds the tarball, ``tmp/a/b/state`` is a state dir that already exists."""
    (tmp_path / "in").mkdir()
    store = ReleaseStore(tmp_path / "a" / "b" / "state")
    store.ensure()
    return Sandbox(tmp_path, store)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.code for c in CASES.values()}) >= 12


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_archive_is_refused_and_leaves_no_trace(name: str, sandbox: Sandbox) -> None:
    case = CASES[name]
    tarball = case.make(sandbox.root)
    store = ReleaseStore(sandbox.state, limits=case.limits)
    before = forge.snapshot(sandbox.root)

    with pytest.raises(HotswapError) as caught:
        store.unpack(tarball)

    error = caught.value
    assert error.code == case.code, error
    assert isinstance(error, ReleaseError)
    assert case.names in error.message, error.message
    assert forge.snapshot(sandbox.root) == before  # nothing written, nothing left
    assert not any(".staging-" in p for p in forge.snapshot(sandbox.root))
    assert store.releases() == []
    assert not Path(ESCAPE_ETC).exists()


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_archive_is_refused_before_anything_is_written(name: str, sandbox: Sandbox) -> None:
    """The same refusal comes from the scan and interpreter check alone: the phases that
    run before a staging dir exists. ``inspect`` says the same."""
    case = CASES[name]
    tarball = case.make(sandbox.root)
    with pytest.raises(HotswapError) as caught:
        scanned = verify.scan(tarball, limits=case.limits)
        verify.check_interpreter(scanned)
    assert caught.value.code == case.code
    with pytest.raises(HotswapError) as inspected:
        ReleaseStore(sandbox.state, limits=case.limits).inspect(tarball)
    assert inspected.value.code == case.code


@pytest.mark.parametrize("name", ["zero-bomb-3GiB", "pax-header-bomb-3GiB"])
def test_decompression_bomb_is_refused_fast(name: str, sandbox: Sandbox) -> None:
    """3 MB of gzip that would inflate to 3 GiB: refused at the header, in well under the
    time it takes to inflate it (about 3 s here), with nothing written."""
    tarball = CASES[name].make(sandbox.root)
    assert tarball.stat().st_size < 4 * 1024**2
    before = forge.snapshot(sandbox.root)
    started = time.monotonic()
    with pytest.raises(ReleaseError):
        ReleaseStore(sandbox.state).unpack(tarball)
    assert time.monotonic() - started < 1.0  # tolerance: a loaded 2-core machine
    assert forge.snapshot(sandbox.root) == before


def test_a_valid_forged_release_unpacks(sandbox: Sandbox) -> None:
    """The base every case starts from is itself accepted: each case fails for its one defect."""
    tarball = archive(base())(sandbox.root)
    release = sandbox.store.unpack(tarball)
    assert (release.root / "lib" / "demo" / "data.bin").read_bytes() == forge.BASE_FILES[
        "lib/demo/data.bin"
    ]
    assert release.manifest.name == "demo"


def test_missing_tarball_is_a_usage_error(sandbox: Sandbox) -> None:
    with pytest.raises(UsageError) as caught:
        sandbox.store.unpack(sandbox.root / "in" / "nope.tar.gz")
    assert caught.value.code == "release_not_found"
    assert "nope.tar.gz" in caught.value.message


def test_spilled_stream_rechecks_hashes_while_writing(sandbox: Sandbox) -> None:
    """Above the in-memory buffer the second pass reads the file again and re-hashes every
    file as it writes it; a mismatch found there still leaves nothing behind."""
    tarball = CASES["hash-mismatch-same-size"].make(sandbox.root)
    small = Limits(buffer_bytes=1024)
    (sandbox.root / "good" / "in").mkdir(parents=True)
    good = archive(base())(sandbox.root / "good")
    assert ReleaseStore(sandbox.state, limits=small).unpack(good).manifest.name == "demo"
    before = forge.snapshot(sandbox.root)
    with pytest.raises(ReleaseError) as caught:
        ReleaseStore(sandbox.state, limits=small).unpack(tarball)
    assert caught.value.code == "hash_mismatch"
    assert forge.snapshot(sandbox.root) == before


def test_tarball_swapped_between_passes_is_refused(sandbox: Sandbox) -> None:
    """With the stream spilled to disk, the second pass reads the file again: if it changed
    since the scan, the headers or the hashes differ and the unpack stops."""
    good = archive(base())(sandbox.root)
    scanned = verify.scan(good, limits=Limits(buffer_bytes=1024))
    forge.write_archive(
        good, forge.replace_member(base(), "lib/demo/data.bin", data=_changed_data_bin())
    )
    with sandbox.store.open_staging() as staging, pytest.raises(ReleaseError) as caught:
        extract.extract(good, scanned, staging)
    assert caught.value.code in {"checksum_mismatch", "hash_mismatch"}
