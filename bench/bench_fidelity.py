"""Hot-upgrade fidelity on real releases: every pair of ``tests/fidelity/pairs.py``. On demand::

    .venv/bin/python bench/bench_fidelity.py                 # all pairs (PyPI for the wheels)
    .venv/bin/python bench/bench_fidelity.py --only click    # pairs whose library matches

Each pair of adjacent releases of a pure-Python library is hot-upgraded by the real engine in a
process that imported the old release and holds its objects, then compared with a fresh import
of the new release in another interpreter (:mod:`tests.fidelity.harness`). Prints the table
(outcome, refusal reason or what differs, what ``hotswap.hot.check`` said) and a summary, and
writes everything as JSON to ``bench/results/fidelity-<time>.json``. Wheels are cached in
``--cache`` (default: ``$TMPDIR/hotswap-fidelity-wheels``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fidelity import harness  # noqa: E402
from tests.fidelity.pairs import PAIRS  # noqa: E402


def _median(per_pair: Iterable[list[float]]) -> float:
    medians = [statistics.median(t) for t in per_pair if t]
    return round(statistics.median(medians), 1) if medians else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], help="library name (repeatable)")
    ap.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "hotswap-fidelity-wheels"
    )
    ap.add_argument("--samples", type=int, default=3, help="timed runs of each check per pair")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    pairs = [p for p in PAIRS if not args.only or any(o in p.dist for o in args.only)]
    results = []
    with tempfile.TemporaryDirectory(prefix="hotswap-fidelity-") as work:
        for pair in pairs:
            r = harness.run_pair(pair, Path(work), args.cache, args.samples)
            print(f"{r.pair}: {r.outcome} {r.reason} ({r.seconds:.1f} s)", file=sys.stderr)
            results.append(r)
    print(harness.table(results))
    s = harness.summary(results)
    print(
        f"\n{s['pairs']} pairs: {s['equivalent']} accepted and equivalent ({s['equivalent_pct']}%),"
        f" {s['refused']} refused, {s['failed']} failed and rolled back, {s['different']}"
        f" accepted but different, {s['error']} harness errors; accepted live"
        f" {s['accepted_pct']}%; check agreed with the live engine on {s['check_agrees_pct']}%"
    )
    print(
        f"static analysis agreed on {s['static_agrees_pct']}%.\n\n"
        f"check timing (median of {args.samples} per pair, then median over pairs):"
        f" source-only analysis {_median(r.static_ms for r in results)} ms,"
        f" check through the child {_median(r.check_ms for r in results)} ms"
    )
    for r in results:
        for d in r.differences:
            print(f"  {r.pair}: {d}")
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    out = args.out / f"fidelity-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "commit": commit,
                "python": platform.python_version(),
                "summary": s,
                "results": [r.to_json() for r in results],
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
