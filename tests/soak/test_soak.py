"""Many swaps in a row (issue: a soak of 1,000 swaps; here a short one, the long one is
``bench/bench_soak.py``): under light load, no request fails, and the supervisor does not grow.

Bounds, after the first sample (taken once the first generation serves): descriptors and
threads come back to the same count (+1 of slack each for a swap's transient pipe or executor
thread); RSS grows by at most 8 MiB (the supervisor trims its heap after every swap); exactly one
generation is alive between swaps and no zombie is left; the store keeps at most its retention
(5) releases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import BuildResult
from tests.e2e.harness import supervisor
from tests.soak.soak import soak, table

SWAPS = int(os.environ.get("HOTSWAP_SOAK_SWAPS", "100"))
RSS_GROWTH_KB = 8 * 1024


@pytest.mark.slow
def test_many_swaps_under_load_fail_nothing_and_leak_nothing(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        sup.upgrade(release_v2.tarball)  # both in the store: later swaps go by id
        ids = [release_v2.manifest.release_id, release_v1.manifest.release_id]
        samples, load = soak(
            sup_pid=sup.proc.pid,
            state_dir=sup.state_dir,
            port=sup.port,
            releases=ids,
            swaps=SWAPS,
            every=20,
        )
        print(table(samples))
        first, last = samples[0], samples[-1]
        assert load.report.failed == 0, load.report.summary()
        assert load.report.versions.keys() == {"1.0.0", "2.0.0"}
        for s in samples:
            assert s.fds <= first.fds + 1, table(samples)
            assert s.threads <= first.threads + 1, table(samples)
            assert s.processes == first.processes, table(samples)
            assert s.zombies == 0, table(samples)
            assert s.releases <= 5, table(samples)
        assert last.rss_kb - first.rss_kb <= RSS_GROWTH_KB, table(samples)
        assert sup.status()["current"] == ids[SWAPS % 2]
