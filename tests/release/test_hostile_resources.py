"""Tarballs that attack memory, CPU, the stack or time rather than the file system.

Each is refused with a stable code, fast, with bounded memory (measured with tracemalloc; the
bounds are generous, the attacks they stop take hundreds of MiB or minutes), and leaves
nothing behind.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hotswap.errors import HotswapError, ReleaseError
from hotswap.release import extract, verify
from hotswap.release.store import ReleaseStore
from hotswap.release.verify import Limits
from tests.release import forge
from tests.release.forge import M, directory

T = TypeVar("T")
MiB = 1024**2


def measured(fn: Callable[[], T]) -> tuple[T | HotswapError, float, int]:
    """Run ``fn``: its result (or the HotswapError it raised), seconds, tracemalloc peak."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        result: T | HotswapError = fn()
    except HotswapError as e:
        result = e
    finally:
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, elapsed, peak


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReleaseStore]:
    (tmp_path / "in").mkdir()
    store = ReleaseStore(tmp_path / "state")
    store.ensure()
    yield store


def tarball(tmp_path: Path, data: bytes) -> Path:
    return forge.write_raw(tmp_path / "in" / "demo-1.0.tar.gz", data)


def assert_refused(
    result: object, code: str, store: ReleaseStore, *, names: str = ""
) -> ReleaseError:
    assert isinstance(result, ReleaseError), result
    assert result.code == code, result
    assert names in result.message, result.message
    assert store.releases() == []
    assert forge.snapshot(store.state_dir) == {"releases"}
    return result


def test_global_pax_header_before_many_directories_is_refused_at_once(
    tmp_path: Path, store: ReleaseStore
) -> None:
    """The audit's memory bomb (1 MiB global pax header, then empty directories: 300 of them
    took 580 MiB): refused at the global header, before any directory is read."""
    path = tarball(tmp_path, forge.global_pax_amplifier(dirs=100))
    for run in (store.inspect, store.unpack):
        result, elapsed, peak = measured(lambda: run(path))  # noqa: B023
        assert_refused(result, "unsafe_member", store, names="global pax header")
        assert elapsed < 2.0, elapsed  # tolerance: a loaded 2-core machine
        assert peak < 32 * MiB, peak


def test_a_small_global_pax_header_is_refused_too(tmp_path: Path, store: ReleaseStore) -> None:
    head = forge.extended_block(forge.pax_record("comment", "hello"))
    path = tarball(tmp_path, forge.gzip_bytes(head + forge.tar_bytes(forge.release_members())))
    result, _elapsed, _peak = measured(lambda: store.unpack(path))
    assert_refused(result, "unsafe_member", store, names="global pax header")


def test_scanned_headers_are_not_kept(tmp_path: Path, store: ReleaseStore) -> None:
    """500 directories that each carry 60 KiB of pax data (30 MB that tarfile would keep in
    ``tar.members``) scan in bounded memory and are accepted: the data is within the caps."""
    comment = (("comment", "c" * 60_000),)
    dirs = [M(f"d{i:04d}", type=directory("x").type, mode=0o755, pax=comment) for i in range(500)]
    path = forge.write_archive(tmp_path / "in" / "demo-1.0.tar.gz", dirs + forge.release_members())
    small = ReleaseStore(store.state_dir, limits=Limits(buffer_bytes=1024))
    result, _elapsed, peak = measured(lambda: small.inspect(path))
    assert not isinstance(result, HotswapError), result
    assert peak < 16 * MiB, peak


def test_one_member_with_too_many_pax_records_is_refused(
    tmp_path: Path, store: ReleaseStore
) -> None:
    pax = tuple((f"hotswap.k{i}", "v") for i in range(1000))
    members = [*forge.release_members(), M("lib/demo/many", type=directory("x").type, pax=pax)]
    path = forge.write_archive(tmp_path / "in" / "demo-1.0.tar.gz", members)
    result, _elapsed, _peak = measured(lambda: store.unpack(path))
    assert_refused(result, "unsafe_member", store, names="pax records")


@pytest.mark.parametrize(
    "members",
    [
        pytest.param(forge.stepped_deep_tree(2000, 500), id="stepped-2000-levels"),
        pytest.param([directory("/".join(["d"] * 65))], id="65-levels"),
        pytest.param([forge.file("/".join(["d"] * 993), b"x")], id="993-levels-file"),
        pytest.param([forge.file("lib/" + "/".join(["n" * 200] * 6), b"x")], id="1209-chars"),
    ],
)
def test_deep_or_long_names_are_refused(
    members: list[M], tmp_path: Path, store: ReleaseStore
) -> None:
    """The audit's 4 members that a recursive mkdir made into a 2,000-level tree (inspect
    said OK, unpack and its own cleanup raised RecursionError and left a staging dir): refused
    at the first member, by inspect and by unpack, with nothing left."""
    path = forge.write_archive(
        tmp_path / "in" / "demo-1.0.tar.gz", forge.release_members() + members
    )
    for run in (store.inspect, store.unpack):
        result, elapsed, _peak = measured(lambda: run(path))  # noqa: B023
        error = assert_refused(result, "unsafe_member", store)
        assert "(at most" in error.message
        assert len(error.message) < 400
        assert elapsed < 2.0


def test_a_record_path_too_deep_is_refused(tmp_path: Path, store: ReleaseStore) -> None:
    deep = "/".join(["d"] * 70)
    rec = forge.record_bytes(dict(forge.BASE_FILES)) + f"{deep},sha256={'A' * 43},1\n".encode()

    def one_more(manifest: dict[str, Any]) -> None:  # the totals agree: the path is at fault
        manifest["record"]["files"] += 1
        manifest["record"]["bytes"] += 1

    members = forge.release_members(rec=rec, edit_manifest=one_more)
    path = forge.write_archive(tmp_path / "in" / "demo-1.0.tar.gz", members)
    result, _elapsed, _peak = measured(lambda: store.unpack(path))
    assert_refused(result, "record_invalid", store, names="unsafe path")


def test_a_leftover_staging_dir_of_any_depth_is_cleaned(store: ReleaseStore) -> None:
    """A staging dir holding a 2,000-level read-only tree (past PATH_MAX) is removed at
    start, and a release next to it is left alone."""
    staging = store.releases_dir / ".staging-deep"
    staging.mkdir()
    forge.make_deep_dirs(staging, 2000)
    (store.releases_dir / ".staging-flat").mkdir()
    (store.releases_dir / "keep-me").mkdir()
    assert store.clean_staging() == 2
    assert sorted(p.name for p in store.releases_dir.iterdir()) == ["keep-me"]


def test_clean_staging_warns_and_goes_on_when_it_cannot_remove(
    store: ReleaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leftover that cannot be removed never stops a start: a warning, then the rest."""
    warnings: list[str] = []
    store.warn = warnings.append
    (store.releases_dir / ".staging-a").mkdir()
    (store.releases_dir / ".staging-b").mkdir()
    from hotswap.release import store as store_mod

    real = store_mod.remove_tree

    def fail_on_a(path: str) -> None:
        if path.endswith(".staging-a"):
            raise PermissionError(13, "Permission denied", path)
        real(path)

    monkeypatch.setattr(store_mod, "remove_tree", fail_on_a)
    assert store.clean_staging() == 1
    assert len(warnings) == 1 and ".staging-a" in warnings[0]


def test_deep_names_cost_no_cpu_to_refuse(tmp_path: Path, store: ReleaseStore) -> None:
    """The audit's CPU bomb: directory members with 200 KB deep names (pax path) took 2.4 s
    each in the cross-check's walk up their parents (three 1 MiB ones took 190 s)."""
    deep = [directory("/".join(["a"] * 100_000) + f"{i}") for i in range(3)]
    path = forge.write_archive(tmp_path / "in" / "demo-1.0.tar.gz", forge.release_members() + deep)
    assert path.stat().st_size < 64 * 1024
    for run in (store.inspect, store.unpack):
        result, elapsed, _peak = measured(lambda: run(path))  # noqa: B023
        assert_refused(result, "unsafe_member", store)
        assert elapsed < 1.0, elapsed  # tolerance: a loaded 2-core machine


def test_verify_and_unpack_have_a_deadline(tmp_path: Path, store: ReleaseStore) -> None:
    """``Limits.seconds`` bounds the scan and the extract together (the clock is injected)."""
    path = forge.write_archive(tmp_path / "in" / "demo-1.0.tar.gz", forge.release_members())
    now = [0.0]
    limits = Limits(seconds=10.0, clock=lambda: now[0])
    scanned = verify.scan(path, limits=limits)  # within the deadline
    now[0] = 11.0
    with store.open_staging() as staging, pytest.raises(ReleaseError) as caught:
        extract.extract(path, scanned, staging)
    assert caught.value.code == "unpack_timeout"
    assert "10 s" in caught.value.message
    # and in the scan: a clock that moves 1 s per look
    ticks = iter(range(1_000_000))
    slow = ReleaseStore(store.state_dir, limits=Limits(seconds=5.0, clock=lambda: next(ticks)))
    result, _elapsed, _peak = measured(lambda: slow.unpack(path))
    assert_refused(result, "unpack_timeout", store)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _symlink_to_a_good_sidecar(path: Path) -> None:
    good = path.with_name("elsewhere.sha256")
    path.rename(good)
    path.symlink_to(good)


def _huge(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(600 * MiB)  # sparse: costs no disk


@pytest.mark.parametrize(
    "make", [_fifo, _dev_zero, _symlink_to_a_good_sidecar, _huge], ids=lambda f: f.__name__
)
def test_a_sidecar_that_is_not_a_small_regular_file_is_refused_at_once(
    make: Callable[[Path], None], tmp_path: Path, store: ReleaseStore
) -> None:
    """A FIFO blocked inspect, unpack and a supervisor's upgrade (and then SIGTERM) forever;
    /dev/zero and a 600 MB file exhausted memory."""
    path = forge.write_archive(tmp_path / "in" / "demo-1.0.tar.gz", forge.release_members())
    sidecar = path.with_name(path.name + ".sha256")
    if make is not _symlink_to_a_good_sidecar:
        sidecar.unlink()
        if make is _huge:
            sidecar.write_text(forge.sha256_hex(path) + "  demo-1.0.tar.gz\n")
    make(sidecar)
    for run in (store.inspect, store.unpack):
        result, elapsed, peak = measured(lambda: run(path))  # noqa: B023
        assert_refused(result, "checksum_missing", store, names=".sha256")
        assert elapsed < 1.0 and peak < 1 * MiB, (elapsed, peak)
