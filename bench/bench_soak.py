"""The long soak: 1,000 blue-green swaps alternating two releases under light load, and the
supervisor's resources every 100 swaps. Not a test (``tests/soak/test_soak.py`` runs a short one
in CI with the same code).

Run: ``.venv/bin/python bench/bench_soak.py [--swaps 1000] [--every 100] [--keep DIR]``.

The releases are the test fixture app (tests/fixtures/app) built with the real ``hotswap build``;
the supervisor is a real ``hotswap run``; the load is two clients of ``hotswap.testing.load``
(one keep-alive, one opening a connection per request, 20 ms of think time each), so the load
generator costs little CPU next to the swaps (each boots a Python process). Columns: RSS, open
descriptors and threads of the supervisor; live and zombie processes it started; releases kept
in the store (retention 5); requests sent and failed so far. The table and a JSON file go to
stdout and bench/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Reaper,
    SupervisorProc,
    build_releases,
    free_port,
    log,
    machine_info,
    print_machine,
    workdir,
)
from tests.soak.soak import Sample, soak, table

import hotswap
from hotswap.testing.load import Load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    reaper = Reaper()
    with workdir(args.keep) as work:
        try:
            result = _run(args, work, reaper)
        finally:
            reaper.reap()
    samples, load, seconds = result
    _report(args, info, samples, load, seconds)
    return 1 if load.report.failed else 0


def _run(args: argparse.Namespace, work: Path, reaper: Reaper) -> tuple[list[Sample], Load, float]:
    v1, v2 = build_releases(work)
    port = free_port()
    state = work / "state"
    sup = SupervisorProc(reaper, v1.tarball, port, state, work / "supervisor.log")
    sup.start()
    hotswap.upgrade(str(v2.tarball), state_dir=state)
    ids = [v2.release_id, v1.release_id]
    started = time.monotonic()
    samples, load = soak(
        sup_pid=sup.pid,
        state_dir=state,
        port=port,
        releases=ids,
        swaps=args.swaps,
        every=args.every,
        on_sample=lambda s: log(f"{s.swaps} swaps: RSS {s.rss_kb} kB, fds {s.fds}"),
        max_seconds=24 * 3600,
    )
    seconds = time.monotonic() - started
    sup.stop()
    return samples, load, seconds


def _report(
    args: argparse.Namespace,
    info: dict[str, str],
    samples: list[Sample],
    load: Load,
    seconds: float,
) -> None:
    print(table(samples))
    first, last = samples[0], samples[-1]
    print(
        f"\n{args.swaps} swaps in {seconds:.0f} s ({seconds / args.swaps * 1000:.0f} ms each):"
        f" {load.report.total} requests, {load.report.failed} failed;"
        f" RSS {first.rss_kb / 1024:.1f} -> {last.rss_kb / 1024:.1f} MiB"
        f" (max {max(s.rss_kb for s in samples) / 1024:.1f}),"
        f" fds {first.fds} -> {last.fds}, threads {first.threads} -> {last.threads}"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "machine": info,
                "swaps": args.swaps,
                "seconds": seconds,
                "requests": load.report.total,
                "failed": load.report.failed,
                "samples": [s.to_json() for s in samples],
            },
            indent=1,
        )
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
