"""Build time of the fixture app (tests/fixtures/app) with uv and with pip, cold and warm cache.

Run it on demand (not a test; it downloads the app's dependencies and build backend from the
package index for every cold run)::

    .venv/bin/python bench/bench_build.py [--cold-runs 3] [--warm-runs 5]

Cold: a fresh, empty ``UV_CACHE_DIR`` / ``PIP_CACHE_DIR`` for each run, so the wheel's build
backend and every dependency are fetched again. Warm: one cache per installer, filled by an
unmeasured first build. Runs are interleaved (uv, pip, uv, pip, ...) and each row is the
median. Every build runs the whole of ``hotswap build``: wheel, install, compile, RECORD,
manifest, tarball. It also checks that every build of one installer gave the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hotswap.release.build import build, find_uv

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_APP = ROOT / "tests" / "fixtures" / "app"
INSTALLERS = ("uv", "pip")
CACHE_VARS = {"uv": "UV_CACHE_DIR", "pip": "PIP_CACHE_DIR"}


def _build_once(work: Path, installer: str, cache: Path) -> tuple[float, str]:
    project = work / "project"
    out = work / "out"
    shutil.rmtree(project, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(FIXTURE_APP, project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    old = os.environ.get(CACHE_VARS[installer])
    os.environ[CACHE_VARS[installer]] = str(cache)
    try:
        started = time.perf_counter()
        result = build(project, out, installer=installer)
        elapsed = time.perf_counter() - started
    finally:
        if old is None:
            os.environ.pop(CACHE_VARS[installer], None)
        else:
            os.environ[CACHE_VARS[installer]] = old
    return elapsed, result.sha256


def run(cold_runs: int, warm_runs: int) -> dict[tuple[str, str], list[float]]:
    if find_uv() is None:
        sys.exit("uv is not installed: pip install uv")
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    times: dict[tuple[str, str], list[float]] = {
        (i, c): [] for i in INSTALLERS for c in ("cold", "warm")
    }
    digests: dict[str, set[str]] = {i: set() for i in INSTALLERS}
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-build-") as tmp:
        work = Path(tmp)
        warm_cache = {i: work / f"warm-cache-{i}" for i in INSTALLERS}
        for installer in INSTALLERS:  # fill the warm caches, unmeasured
            print(f"priming the {installer} cache ...", file=sys.stderr)
            _build_once(work / "prime", installer, warm_cache[installer])
        for n in range(max(cold_runs, warm_runs)):
            for installer in INSTALLERS:
                if n < cold_runs:
                    cold = work / f"cold-{installer}-{n}"
                    elapsed, digest = _build_once(work / "b", installer, cold)
                    times[(installer, "cold")].append(elapsed)
                    digests[installer].add(digest)
                    shutil.rmtree(cold, ignore_errors=True)
                    print(f"  {installer} cold run {n + 1}: {elapsed:.2f}s", file=sys.stderr)
                if n < warm_runs:
                    elapsed, digest = _build_once(work / "b", installer, warm_cache[installer])
                    times[(installer, "warm")].append(elapsed)
                    digests[installer].add(digest)
                    print(f"  {installer} warm run {n + 1}: {elapsed:.2f}s", file=sys.stderr)
    for installer, found in digests.items():
        same = "yes" if len(found) == 1 else f"NO ({len(found)} different)"
        print(f"{installer}: every build gave the same tarball bytes: {same}")
    return times


def report(times: dict[tuple[str, str], list[float]]) -> None:
    print(
        f"hotswap build of tests/fixtures/app; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus; median of each row"
    )
    print(f"{'installer':<10} {'cache':<6} {'median':>8} {'min':>8} {'max':>8} {'runs':>5}")
    for (installer, cache), values in times.items():
        print(
            f"{installer:<10} {cache:<6} {statistics.median(values):7.2f}s "
            f"{min(values):7.2f}s {max(values):7.2f}s {len(values):>5}"
        )
    for cache in ("cold", "warm"):
        ratio = statistics.median(times[("pip", cache)]) / statistics.median(times[("uv", cache)])
        print(f"pip / uv, {cache} cache: {ratio:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold-runs", type=int, default=3, help="cold builds per installer")
    parser.add_argument("--warm-runs", type=int, default=5, help="warm builds per installer")
    args = parser.parse_args()
    report(run(args.cold_runs, args.warm_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
