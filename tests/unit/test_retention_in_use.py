"""Retention never removes a release a running process still loads code from."""

from __future__ import annotations

from pathlib import Path

from hotswap.release.store import ReleaseStore
from tests.release import forge

T0 = 1_700_000_000


def test_releases_in_use_are_kept_besides_current_and_previous(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "state", keep=1)

    def unpack(n: int) -> str:
        members = forge.release_members(version=f"1.{n}", created=T0 + 3600 * n)
        return store.unpack(forge.write_archive(tmp_path / f"demo-1.{n}.tar.gz", members)).id

    r1 = unpack(1)
    store.set_current(r1, how="initial", protect=frozenset({r1}))
    # the generation that booted r1 is hot-upgraded to r2, then to r3: it still reads r1's
    # and r2's files (the source lines of modules that never changed)
    r2 = unpack(2)
    store.set_current(r2, how="hot", protect=frozenset({r1, r2}))
    r3 = unpack(3)
    store.set_current(r3, how="hot", protect=frozenset({r1, r2, r3}))
    assert {r.id for r in store.releases()} == {r1, r2, r3}
    # a blue-green swap to r4 once that generation is gone: only current and previous stay
    r4 = unpack(4)
    store.set_current(r4, how="blue-green", protect=frozenset({r4}))
    assert {r.id for r in store.releases()} == {r4, r3}


def test_unpacking_the_same_tarball_again_skips_the_scan_but_not_the_checksum(
    tmp_path: Path,
) -> None:
    store = ReleaseStore(tmp_path / "state")
    tarball = forge.write_archive(tmp_path / "demo.tar.gz", forge.release_members(version="1.0"))
    first = store.unpack(tarball)
    said: list[str] = []
    again = store.unpack(tarball, progress=said.append)
    assert again.id == first.id
    assert said == [f"release {first.id} is already unpacked (same tarball sha256)"]
    # a tarball whose bytes changed under the same checksum file is still refused
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))
    try:
        store.unpack(tarball)
    except Exception as e:
        assert getattr(e, "code", None) == "checksum_mismatch"
    else:
        raise AssertionError("a changed tarball was accepted")
