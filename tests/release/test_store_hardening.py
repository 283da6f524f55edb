"""The store never trips over what is on its disk: a corrupt state.json, a release whose
manifest is bad, a current release that is gone, a malformed index or argument. Each ends in
a stable code or a warning and a fallback, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hotswap.errors import HotswapError, ResourceError, UsageError
from hotswap.fsutil import lock_state_dir
from hotswap.release.store import Release, ReleaseStore
from tests.release import forge

T0 = 1_700_000_000


def forged(tmp_path: Path, n: int) -> Path:
    out = tmp_path / "in"
    out.mkdir(exist_ok=True)
    members = forge.release_members(version=f"1.{n}", created=T0 + 3600 * n)
    return forge.write_archive(out / f"demo-1.{n}.tar.gz", members)


@pytest.fixture
def warnings() -> list[str]:
    return []


@pytest.fixture
def store(tmp_path: Path, warnings: list[str]) -> ReleaseStore:
    store = ReleaseStore(tmp_path / "state", keep=1, warn=warnings.append)
    store.ensure()
    return store


def poison(release: Release, **fields: object) -> None:
    """Rewrite an unpacked release's manifest (as an older hotswap could have let in)."""
    path = release.root / "RELEASE.json"
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    os.chmod(release.root, 0o755)
    os.chmod(path, 0o644)
    path.write_text(json.dumps(manifest))


# -- state.json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{half", id="truncated"),
        pytest.param(b"[]", id="a-list"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"current": 5}', id="current-an-int"),
        pytest.param(b'{"current": "../../etc"}', id="current-not-an-id"),
        pytest.param(b'{"previous": ["x"]}', id="previous-a-list"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100k"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_a_corrupt_state_json_is_moved_aside_with_a_warning(
    content: bytes, store: ReleaseStore, warnings: list[str], tmp_path: Path
) -> None:
    store.state_file.write_bytes(content)
    state = store.read_state()
    assert state == {"current": None, "previous": None, "history": []}
    assert not store.state_file.exists()
    aside = [p for p in store.state_dir.iterdir() if p.name.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert len(warnings) == 1 and "moved aside" in warnings[0], warnings
    # and an explicit release still deploys on top of it
    release = store.unpack(forged(tmp_path, 1))
    assert store.set_current(release.id, how="initial")["current"] == release.id


def test_history_of_the_wrong_shape_is_dropped_not_fatal(
    store: ReleaseStore, tmp_path: Path, warnings: list[str]
) -> None:
    release = store.unpack(forged(tmp_path, 1))
    store.state_file.write_text(json.dumps({"current": release.id, "history": [1, {"a": 1}]}))
    assert store.read_state()["history"] == [{"a": 1}]
    store.state_file.write_text(json.dumps({"current": release.id, "history": 5}))
    assert store.read_state()["history"] == []
    state = store.set_current(release.id, how="rollback")
    assert state["current"] == release.id and len(state["history"]) == 1
    assert any("history" in w for w in warnings)


def test_a_missing_current_falls_back_to_previous(
    store: ReleaseStore, tmp_path: Path, warnings: list[str]
) -> None:
    one, two = (store.unpack(forged(tmp_path, n)) for n in (1, 2))
    store.set_current(one.id, how="initial")
    store.set_current(two.id, how="blue-green")
    forge_gone = store.releases_dir / two.id
    os.chmod(forge_gone, 0o755)
    os.rename(forge_gone, tmp_path / "gone")
    current = store.current()
    assert current is not None and current.id == one.id
    assert any("falling back" in w for w in warnings), warnings


def test_neither_current_nor_previous_in_the_store_is_release_not_found(
    store: ReleaseStore,
) -> None:
    store.state_file.write_text(
        json.dumps({"current": "1.0-000000000000", "previous": "0.9-000000000000"})
    )
    with pytest.raises(UsageError) as caught:
        store.current()
    assert caught.value.code == "release_not_found"
    assert "0.9-000000000000" in caught.value.message


# -- a poisoned store -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"created": "tomorrow"}, id="created-a-string"),
        pytest.param({"created": 1e20}, id="created-huge"),
        pytest.param({"distributions": [1]}, id="distributions-not-objects"),
        pytest.param({"format": "hotswap-release/99"}, id="another-format"),
    ],
)
def test_a_release_with_a_bad_manifest_is_skipped_never_fatal(
    fields: dict[str, object], store: ReleaseStore, tmp_path: Path, warnings: list[str]
) -> None:
    """The audit's poisoned store: with `created: "tomorrow"` in one release, `releases()`,
    every later unpack (which lists the store) and pruning raised. Now that release is
    skipped with a warning and the rest of the store works."""
    bad = store.unpack(forged(tmp_path, 1))
    poison(bad, **fields)
    good = [store.unpack(forged(tmp_path, n)) for n in (2, 3, 4)]
    assert [r.id for r in store.releases()] == [r.id for r in reversed(good)]
    assert any(bad.id in w for w in warnings), warnings
    store.set_current(good[0].id, how="initial")
    store.set_current(good[2].id, how="blue-green")  # prunes with keep=1
    assert {r.id for r in store.releases()} == {good[0].id, good[2].id}
    with pytest.raises(HotswapError) as caught:
        store.get(bad.id)
    assert caught.value.code == "manifest_invalid"


def test_a_malformed_tarball_index_is_ignored(store: ReleaseStore, tmp_path: Path) -> None:
    tarball = forged(tmp_path, 1)
    release = store.unpack(tarball)
    index = store.releases_dir / ".tarballs.json"
    sha = tarball.with_name(tarball.name + ".sha256").read_text().split()[0]
    for content in ("[1]", json.dumps({sha: ["x"]}), "{" * 50_000, "nonsense"):
        index.write_text(content)
        assert store.unpack(tarball).id == release.id
        store.unpack(forged(tmp_path, 2))  # _remember copes with it too


@pytest.mark.parametrize("sha256", [5, "x" * 64, "ab", ["a"]])
def test_a_malformed_sha256_argument_is_a_usage_error(
    sha256: object, store: ReleaseStore, tmp_path: Path
) -> None:
    tarball = forged(tmp_path, 1)
    for run in (store.unpack, store.inspect):
        with pytest.raises(UsageError) as caught:
            run(tarball, expected_sha256=sha256)  # type: ignore[arg-type]
        assert caught.value.code == "bad_config"
        assert "sha256" in caught.value.message


# -- the state dir lock ---------------------------------------------------------------------


def test_the_state_dir_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first = lock_state_dir(tmp_path)
    assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(ResourceError) as caught:
        lock_state_dir(tmp_path)
    assert caught.value.code == "state_dir_locked"
    assert caught.value.details["pid"] == os.getpid()
    assert f"pid {os.getpid()}" in caught.value.message
    first.release()
    lock_state_dir(tmp_path).release()


# -- what the store trusts on disk (audit #10, #19) -------------------------------------------

NOBODY = 65534
as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to make files another user's (chown to 65534)"
)


@pytest.mark.parametrize("name", ["releases", "runtime", "run"])
@pytest.mark.parametrize("how", ["mode-0777", "mode-0775", "another-uid", "a-symlink"])
def test_a_trusted_directory_others_can_write_is_refused(
    name: str, how: str, store: ReleaseStore, tmp_path: Path
) -> None:
    """With releases/ at 0777 another uid planted a release and rewrote .tarballs.json, and
    the owner's next upgrade of a legit tarball ran its code. Every directory below the state
    dir that hotswap trusts is now checked."""
    path = store.state_dir / name
    path.mkdir(exist_ok=True)
    if how.startswith("mode-"):
        path.chmod(int(how[5:], 8))
    elif how == "another-uid":
        if os.geteuid() != 0:
            pytest.skip("needs root to make a directory another user's (chown to 65534)")
        os.chown(path, NOBODY, NOBODY)
    else:
        path.rmdir()
        (tmp_path / "elsewhere").mkdir()
        path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError) as caught:
        store.unpack(forged(tmp_path, 1))
    assert caught.value.code == "state_dir_invalid"
    assert name in caught.value.message


@as_root
@pytest.mark.parametrize("name", ["state.json", "releases/.tarballs.json"])
def test_an_index_file_of_another_user_is_not_trusted(
    name: str, store: ReleaseStore, tmp_path: Path, warnings: list[str]
) -> None:
    release = store.unpack(forged(tmp_path, 1))
    store.set_current(release.id, how="initial")
    os.chown(store.state_dir / name, NOBODY, NOBODY)
    if name == "state.json":
        with pytest.raises(UsageError) as caught:
            store.read_state()
        assert caught.value.code == "state_dir_invalid"
    else:
        messages: list[str] = []
        store.unpack(forged(tmp_path, 1), progress=messages.append)
        assert not any("same tarball sha256" in m for m in messages), messages
        assert any(".tarballs.json" in w and "uid 65534" in w for w in warnings), warnings


def test_a_world_writable_index_is_not_trusted(
    store: ReleaseStore, tmp_path: Path, warnings: list[str]
) -> None:
    tarball = forged(tmp_path, 1)
    store.unpack(tarball)
    (store.releases_dir / ".tarballs.json").chmod(0o666)
    messages: list[str] = []
    store.unpack(tarball, progress=messages.append)
    assert not any("same tarball sha256" in m for m in messages), messages
    assert any("writable by other users" in w for w in warnings), warnings


def test_an_indexed_release_that_is_not_the_tarballs_is_not_used(
    store: ReleaseStore, tmp_path: Path, warnings: list[str]
) -> None:
    """The audit's plant: a copy of a release under another id, with edited code, and the
    index mapping the legit tarball's sha256 to it. The index entry is re-verified (RECORD's
    sha256, the id its manifest gives): the legit tarball is unpacked and used instead."""
    tarball = forged(tmp_path, 1)
    legit = store.unpack(tarball)
    planted = store.releases_dir / "1.0-000000000000"
    os.chmod(legit.root, 0o755)
    import shutil

    shutil.copytree(legit.root, planted)
    shutil.rmtree(legit.root)
    (planted / "lib" / "demo").chmod(0o755)
    (planted / "lib" / "demo" / "main.py").chmod(0o644)
    (planted / "lib" / "demo" / "main.py").write_text("PWNED = True\n")
    sha = tarball.with_name(tarball.name + ".sha256").read_text().split()[0]
    (store.releases_dir / ".tarballs.json").write_text(json.dumps({sha: planted.name}))
    again = store.unpack(tarball)
    assert again.id == legit.id
    assert "PWNED" not in (again.root / "lib" / "demo" / "main.py").read_text()
    assert any("does not match its RECORD" in w for w in warnings), warnings


def test_a_release_dir_that_is_a_symlink_is_refused(store: ReleaseStore, tmp_path: Path) -> None:
    release = store.unpack(forged(tmp_path, 1))
    outside = tmp_path / "outside"
    os.chmod(release.root, 0o755)
    release.root.rename(outside)
    release.root.symlink_to(outside)
    with pytest.raises(UsageError) as caught:
        store.get(release.id)
    assert caught.value.code == "state_dir_invalid"
    assert "symbolic link" in caught.value.message
