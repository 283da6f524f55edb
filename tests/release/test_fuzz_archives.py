"""Promise 8 under random input: whatever the members' names, types, modes and sizes,
unpacking either succeeds or raises a :class:`HotswapError`, never writes outside the state
dir, and never leaves a staging dir behind."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from hotswap.errors import HotswapError
from hotswap.release import record
from hotswap.release.store import ReleaseStore
from hotswap.release.verify import Limits
from tests.release import forge
from tests.release.forge import M

ROOT = "<root>"  # replaced by the sandbox's absolute path: an absolute name that would land in it

SAFE_PARTS = st.sampled_from(["lib", "demo", "pkg", "x.py", "m.py", "data.bin", "__pycache__"])
ODD_PARTS = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            "RECORD",
            "RELEASE.json",
            "a\\b",
            "n\x00ul",
            "new\nline",
            "é",
            "\udcff",
            ROOT,
        ]
    ),
    st.text(min_size=1, max_size=6),
)
SAFE_TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE])
ODD_TYPES = st.sampled_from(
    [
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
        tarfile.GNUTYPE_SPARSE,
        b"Z",
    ]
)
SAFE_MODES = st.sampled_from([0o644, 0o755, 0o600, 0o777, 0])
ODD_MODES = st.sampled_from([0o4755, 0o2755, 0o1777])
LINKS = st.sampled_from(["", "../../escaped", "/etc/passwd", "lib/demo/data.bin", ROOT])


@st.composite
def members(draw: st.DrawFn) -> M:
    """A member that is plain two times in three, else odd in one aspect (or more)."""
    odd = draw(st.sampled_from(["", "", "", "", "name", "type", "mode", "slash", "all"]))
    parts = draw(
        st.lists(ODD_PARTS if odd in ("name", "all") else SAFE_PARTS, min_size=1, max_size=4)
    )
    name = "/".join(parts)
    if odd in ("slash", "all"):
        name = draw(st.sampled_from(["/" + name, name + "/", "/" + name + "/"]))
    size = draw(st.sampled_from([0, 1, 511, 512, 513, 3000]))
    return M(
        name=name,
        data=bytes((i * 7) % 251 for i in range(size)),
        type=draw(ODD_TYPES if odd in ("type", "all") else SAFE_TYPES),
        mode=draw(ODD_MODES if odd in ("mode", "all") else SAFE_MODES),
        linkname=draw(LINKS) if odd in ("type", "all") else "",
    )


def _resolve(m: M, root: Path) -> M:
    return M(
        m.name.replace(ROOT, str(root)),
        m.data,
        m.type,
        m.mode,
        m.linkname.replace(ROOT, str(root)),
    )


def _consistent(extra: list[M], base: bool) -> list[M]:
    """A release whose RECORD and manifest list the regular files among ``extra`` (so the
    archive can be valid when the random members happen to be harmless)."""
    files = dict(forge.BASE_FILES) if base else {}
    for m in extra:
        if m.is_file and record.is_safe_relpath(m.name):
            files.setdefault(m.name, m.data)
    out = forge.release_members(files)
    listed = {(m.name, m.type) for m in out}
    return out + [m for m in extra if (m.name, m.type) not in listed]


@settings(
    max_examples=int(os.environ.get("HOTSWAP_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    extra=st.lists(members(), max_size=6),
    shape=st.sampled_from(["base+extra", "consistent", "consistent-without-base", "extra-only"]),
    shuffle=st.randoms(use_true_random=False),
    limits=st.sampled_from(
        [Limits(), Limits(max_files=8), Limits(max_bytes=4000), Limits(buffer_bytes=700)]
    ),
)
def test_random_members_never_escape_nor_leave_staging(
    extra: list[M], shape: str, shuffle: object, limits: Limits
) -> None:
    with tempfile.TemporaryDirectory(prefix="hotswap-fuzz-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        state = root / "a" / "state"
        resolved = [_resolve(m, root) for m in extra]
        if shape == "base+extra":
            listed = forge.release_members() + resolved
        elif shape == "consistent":
            listed = _consistent(resolved, base=True)
        elif shape == "consistent-without-base":
            listed = _consistent(resolved, base=False)
        else:
            listed = resolved
        assume(listed)
        if shape != "consistent":
            shuffle.shuffle(listed)  # type: ignore[attr-defined]
        tarball = root / "in" / "fuzz.tar.gz"
        try:
            forge.write_archive(tarball, listed)
        except (ValueError, UnicodeError, tarfile.TarError):
            assume(False)  # a name tarfile itself cannot write
        before = forge.snapshot(root)

        try:
            release = ReleaseStore(state, limits=limits).unpack(tarball)
            event("unpacked")
        except HotswapError as e:
            event(f"refused: {e.code}")
            release = None

        new = forge.snapshot(root) - before
        state_rel = "a/state"
        allowed = {"a", state_rel, f"{state_rel}/releases"}
        if release is not None:
            prefix = f"{state_rel}/releases/{release.id}"
            allowed |= {p for p in new if p == prefix or p.startswith(prefix + "/")}
            allowed.add(f"{state_rel}/releases/.tarballs.json")  # which tarball made it
            for name, entry in release_files(release.root).items():
                assert record.hash_file(release.root / name) == entry
        assert new <= allowed, sorted(new - allowed)
        assert not any(".staging-" in p for p in forge.snapshot(root))


def release_files(root: Path) -> dict[str, record.Entry]:
    """RECORD of an unpacked release, checked against its own bytes by the caller."""
    data = (root / record.RECORD_NAME).read_bytes()
    manifest = (root / record.MANIFEST_NAME).read_bytes()
    assert hashlib.sha256(data).hexdigest() in manifest.decode()
    return record.loads(data)


def _safe_by_normpath(name: str) -> bool:
    """The definition is_safe_relpath is checked against (it was once written this way)."""
    import posixpath

    if not name or name.startswith("/") or name == "." or record._CONTROL.search(name):
        return False
    if record.path_too_long(name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return posixpath.normpath(name) == name and ".." not in name.split("/")


_PATHS = st.lists(
    st.sampled_from(["a", "b.py", ".", "..", "", "...", ".a", "a.", "\\", "\n", "\udcff", "é"]),
    max_size=70,
).map("/".join) | st.text(max_size=40)


@settings(max_examples=int(os.environ.get("HOTSWAP_FUZZ_EXAMPLES", "300")), deadline=None)
@given(name=_PATHS | _PATHS.map(lambda p: "/" + p) | _PATHS.map(lambda p: p + "/"))
def test_is_safe_relpath_agrees_with_normpath(name: str) -> None:
    assert record.is_safe_relpath(name) is _safe_by_normpath(name)


def test_is_safe_relpath_caps() -> None:
    deep = "/".join(["a"] * record.MAX_DEPTH)
    assert record.is_safe_relpath(deep) and not record.is_safe_relpath(deep + "/a")
    assert not record.is_safe_relpath("a" * (record.MAX_PATH + 1))
