"""Retention never removes a release a running process still loads code from."""

from __future__ import annotations

from pathlib import Path

from hotswap.release.store import ReleaseStore
from tests.release import forge

T0 = 1_700_000_000


def test_releases_in_use_are_kept_besides_current_and_previous(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "state", keep=1)
    releases = []
    for n in range(1, 5):
        members = forge.release_members(version=f"1.{n}", created=T0 + 3600 * n)
        tarball = forge.write_archive(tmp_path / f"demo-1.{n}.tar.gz", members)
        releases.append(store.unpack(tarball))
    r1, r2, r3, r4 = releases
    # a generation booted r1 and was hot-upgraded to r2, then r3: it still reads r1's files
    store.set_current(r2.id, how="hot", protect=frozenset({r1.id, r2.id}))
    store.set_current(r3.id, how="hot", protect=frozenset({r1.id, r2.id, r3.id}))
    kept = {r.id for r in store.releases()}
    assert kept == {r1.id, r2.id, r3.id, r4.id}  # r4 newest, r3 current, r2 previous, r1 in use
    store.set_current(r4.id, how="blue-green", protect=frozenset({r4.id}))
    assert {r.id for r in store.releases()} == {r4.id, r3.id}
