"""The release store: unpack into ``releases/<id>``, ``state.json`` (promise 7: what is
current survives restarts), retention, staging leftovers, and the state dir itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hotswap.errors import HotswapError, UsageError
from hotswap.release.store import (
    STAGING_PREFIX,
    Release,
    ReleaseStore,
    resolve_state_dir,
    write_json_atomic,
)
from tests.release import forge

T0 = 1_700_000_000


def forged(tmp_path: Path, n: int) -> Path:
    """A small valid release ``1.<n>`` built ``n`` hours after T0."""
    out = tmp_path / "in"
    out.mkdir(exist_ok=True)
    members = forge.release_members(version=f"1.{n}", created=T0 + 3600 * n)
    return forge.write_archive(out / f"demo-1.{n}.tar.gz", members)


@pytest.fixture
def store(tmp_path: Path) -> ReleaseStore:
    return ReleaseStore(tmp_path / "state", keep=2)


def unpack(store: ReleaseStore, tmp_path: Path, *ns: int) -> list[Release]:
    return [store.unpack(forged(tmp_path, n)) for n in ns]


def ids(store: ReleaseStore) -> list[str]:
    return [r.id for r in store.releases()]


def leftovers(state: Path) -> list[str]:
    return sorted(
        p.name for p in state.rglob("*") if p.name.startswith((".state.json.", STAGING_PREFIX))
    )


# -- unpack ---------------------------------------------------------------------------------


def test_unpack_is_idempotent(store: ReleaseStore, tmp_path: Path) -> None:
    tarball = forged(tmp_path, 1)
    first = store.unpack(tarball)
    made = first.root.stat().st_mtime_ns
    messages: list[str] = []
    second = store.unpack(tarball, progress=messages.append)
    assert (second.id, second.root) == (first.id, first.root)
    assert second.root.stat().st_mtime_ns == made
    assert any("already unpacked" in m for m in messages)
    assert ids(store) == [first.id]
    assert leftovers(store.state_dir) == []


def test_unpack_lands_in_releases_id(store: ReleaseStore, tmp_path: Path) -> None:
    (release,) = unpack(store, tmp_path, 1)
    assert release.root == store.state_dir / "releases" / release.id
    assert release.id == release.manifest.release_id
    assert release.lib == release.root / "lib"
    assert (release.lib / "demo" / "run.sh").stat().st_mode & 0o777 == 0o555
    assert store.get(release.id).manifest.raw == release.manifest.raw


def test_state_dir_is_created_private(store: ReleaseStore, tmp_path: Path) -> None:
    unpack(store, tmp_path, 1)
    assert store.state_dir.stat().st_mode & 0o777 == 0o700
    assert store.releases_dir.stat().st_mode & 0o777 == 0o700


def test_inspect_writes_nothing(store: ReleaseStore, tmp_path: Path) -> None:
    tarball = forged(tmp_path, 1)
    result = store.inspect(tarball)
    assert result.checks == ["checksum, members, record, manifest", "interpreter", "file hashes"]
    assert result.manifest.version == "1.1"
    assert not store.state_dir.exists()


# -- state.json -----------------------------------------------------------------------------


def test_state_json_records_current_previous_and_history(
    store: ReleaseStore, tmp_path: Path
) -> None:
    a, b = unpack(store, tmp_path, 1, 2)
    assert store.read_state() == {"current": None, "previous": None, "history": []}
    store.set_current(a.id, how="initial")
    store.set_current(b.id, how="blue-green", generation=2)
    on_disk = json.loads(store.state_file.read_text())
    assert on_disk == store.read_state()
    assert (on_disk["current"], on_disk["previous"]) == (b.id, a.id)
    assert [(h["release"], h["how"]) for h in on_disk["history"]] == [
        (b.id, "blue-green"),
        (a.id, "initial"),
    ]
    assert on_disk["history"][0]["generation"] == 2
    assert leftovers(store.state_dir) == []


def test_current_survives_a_restart(store: ReleaseStore, tmp_path: Path) -> None:
    """Promise 7: a new store on the same dir (a restarted supervisor) finds the last release
    that was made current, not the first one."""
    a, b = unpack(store, tmp_path, 1, 2)
    store.set_current(a.id, how="initial")
    store.set_current(b.id, how="hot")
    restarted = ReleaseStore(store.state_dir)
    current = restarted.current()
    assert current is not None and current.id == b.id
    assert restarted.read_state()["previous"] == a.id


def test_making_the_current_release_current_again_keeps_previous(
    store: ReleaseStore, tmp_path: Path
) -> None:
    a, b = unpack(store, tmp_path, 1, 2)
    store.set_current(a.id, how="initial")
    store.set_current(b.id, how="blue-green")
    state = store.set_current(b.id, how="blue-green")
    assert (state["current"], state["previous"]) == (b.id, a.id)
    assert len(state["history"]) == 3


def test_set_current_of_an_unknown_release_changes_nothing(
    store: ReleaseStore, tmp_path: Path
) -> None:
    (a,) = unpack(store, tmp_path, 1)
    store.set_current(a.id, how="initial")
    before = store.state_file.read_bytes()
    with pytest.raises(UsageError) as caught:
        store.set_current("9.9-0123456789ab", how="blue-green")
    assert caught.value.code == "release_not_found"
    assert store.state_file.read_bytes() == before


def test_state_json_write_is_atomic(tmp_path: Path) -> None:
    """A write that fails half way (here: a value JSON cannot encode, after the first keys
    are out) leaves the old file whole and no temporary file behind."""
    path = tmp_path / "state.json"
    write_json_atomic(path, {"current": "a"})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"current": "b", "zz": object()})
    assert json.loads(path.read_text()) == {"current": "a"}
    assert os.listdir(tmp_path) == ["state.json"]


# -- retention ------------------------------------------------------------------------------


def test_releases_are_listed_newest_first(store: ReleaseStore, tmp_path: Path) -> None:
    a, b, c = unpack(store, tmp_path, 2, 3, 1)
    assert ids(store) == [b.id, a.id, c.id]


def test_retention_keeps_newest_n_and_never_current_or_previous(
    store: ReleaseStore, tmp_path: Path
) -> None:
    r1, r2, r3, r4, r5 = unpack(store, tmp_path, 1, 2, 3, 4, 5)
    store.set_current(r2.id, how="initial")  # keep=2: r5, r4 by age, r2 as current
    assert ids(store) == [r5.id, r4.id, r2.id]
    store.set_current(r4.id, how="blue-green")  # r2 is now previous: still kept
    assert ids(store) == [r5.id, r4.id, r2.id]
    (r6,) = unpack(store, tmp_path, 6)
    assert store.prune() == []  # r6, r5 by age; r4 current; r2 previous
    store.set_current(r6.id, how="blue-green")  # r4 becomes previous, r2 goes
    assert ids(store) == [r6.id, r5.id, r4.id]
    assert not (store.releases_dir / r2.id).exists()
    assert not (store.releases_dir / r1.id).exists() and not (store.releases_dir / r3.id).exists()


def test_default_retention_is_five(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "state")
    r1, r2, r3, r4, r5, r6, r7 = unpack(store, tmp_path, 1, 2, 3, 4, 5, 6, 7)
    assert len(ids(store)) == 7  # unpacking alone removes nothing
    store.set_current(r1.id, how="initial")  # the newest five, and the current one
    assert ids(store) == [r7.id, r6.id, r5.id, r4.id, r3.id, r1.id]
    store.set_current(r7.id, how="blue-green")  # r1 is previous now: kept
    assert ids(store) == [r7.id, r6.id, r5.id, r4.id, r3.id, r1.id]
    store.set_current(r6.id, how="rollback")  # r1 is neither: it goes
    assert ids(store) == [r7.id, r6.id, r5.id, r4.id, r3.id]
    assert not (store.releases_dir / r2.id).exists()


def test_clean_staging_removes_what_a_crash_left(store: ReleaseStore, tmp_path: Path) -> None:
    (a,) = unpack(store, tmp_path, 1)
    crashed = store.releases_dir / f"{STAGING_PREFIX}crashed"
    (crashed / "lib" / "pkg").mkdir(parents=True)
    (crashed / "lib" / "pkg" / "x.py").write_text("x = 1\n")
    os.chmod(crashed / "lib" / "pkg", 0o555)  # as a crash after the freeze would leave it
    os.chmod(crashed / "lib", 0o555)
    assert store.clean_staging() == 1
    assert not crashed.exists()
    assert ids(store) == [a.id]
    assert store.clean_staging() == 0


def test_find_refuses_ids_that_are_not_release_ids(store: ReleaseStore, tmp_path: Path) -> None:
    unpack(store, tmp_path, 1)
    for odd in ("../state", "..", "", "1.1-XYZ", "/etc"):
        assert store.find(odd) is None
    with pytest.raises(UsageError) as caught:
        store.get("../../etc")
    assert caught.value.code == "release_not_found"


# -- the state dir --------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a dir to another uid")
def test_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    tarball = forged(tmp_path, 1)
    with pytest.raises(UsageError) as caught:
        ReleaseStore(state).unpack(tarball)
    assert caught.value.code == "state_dir_invalid"
    assert "65534" in caught.value.message
    assert os.listdir(state) == []


def test_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    with pytest.raises(UsageError) as caught:
        ReleaseStore(state).unpack(forged(tmp_path, 1))
    assert caught.value.code == "state_dir_invalid"
    assert "writable by other users" in caught.value.message
    assert os.listdir(state) == []


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a dir")
    with pytest.raises(HotswapError) as caught:
        ReleaseStore(tmp_path / "state").unpack(forged(tmp_path, 1))
    assert caught.value.code == "state_dir_invalid"


def test_state_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit dir, else $HOTSWAP_STATE_DIR, else $XDG_STATE_HOME/hotswap/<app>, else
    ~/.local/state/hotswap/<app>."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HOTSWAP_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert resolve_state_dir(None, app="web") == tmp_path / "home/.local/state/hotswap/web"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir(None, app="web") == tmp_path / "xdg/hotswap/web"
    monkeypatch.setenv("HOTSWAP_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(None, app="web") == tmp_path / "env"
    assert resolve_state_dir(tmp_path / "explicit", app="web") == tmp_path / "explicit"
    monkeypatch.chdir(tmp_path)
    assert resolve_state_dir("relative") == tmp_path / "relative"
