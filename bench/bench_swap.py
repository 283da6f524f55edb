"""Swap under saturating load: failed requests per swap, three ways of shipping new code.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_swap.py [--swaps 30] [--methods hotswap,reuseport,restart]
                                         [--wrk-connections 32] [--keepalive 4] [--fresh 2]
    .venv/bin/python bench/bench_swap.py --methods hotswap --swaps 100   # the full target

The same app (the fixture app of tests/fixtures/app, built as v1 and v2 release tarballs with
the real ``hotswap build``), the same load and the same number of swaps, alternating v1/v2, for:

- ``hotswap``: the supervisor (``hotswap run``), blue-green swaps with ``hotswap.upgrade()``;
  one listening socket for life, inherited by every generation;
- ``reuseport``: the seed's (BeamDeploy's) method: start a second uvicorn serving the other
  version from its unpacked release ``lib/`` on its own SO_REUSEPORT socket on the same port,
  wait until it has started and answered, then SIGTERM the old one and wait for it to exit;
- ``restart``: stop-then-start: SIGTERM uvicorn, wait for it to exit, start the other version
  on the same port (SO_REUSEADDR), wait until it has started.

For each method, during its swaps: wrk saturates the server (``-t1 -c32`` by default; it is
installed with ``apt-get install -y wrk`` when missing, and skipped if that fails), and
``hotswap.testing.load.Load`` runs keep-alive and fresh-connection clients that record every
request's outcome: that gives the failed count. A request fails if it gets no complete
response (refused, reset, closed without ``Connection: close``, timed out) or a 5xx.
"Longest gap" is, per swap, the longest time during the swap in which no Load request
completed successfully (the client-visible outage); the table gives its median and maximum.

``--idle-keepalive N`` adds N keep-alive clients that pause between requests (``--think``,
uniform, default 0.2-2.5 s; below uvicorn's 5 s keep-alive timeout, so without swaps their
connections are never closed under them). Load's clients are never idle; these are, so they
exercise how a drain treats idle keep-alive connections. They are reported in their own table.
``--supervisor-env KEY=VALUE`` passes environment to the hotswap supervisor (and so to its
generations), e.g. ``HOTSWAP_IDLE_GRACE=5``.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import itertools
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import (
    HOST,
    Built,
    Reaper,
    SupervisorProc,
    UvicornProc,
    Wrk,
    WrkResult,
    build_releases,
    ensure_wrk,
    free_port,
    http_get,
    log,
    machine_info,
    median,
    print_machine,
    table,
    workdir,
)
from hotswap.testing.load import Load, Outcome

METHODS = ("hotswap", "reuseport", "restart")
PHASES = ("unpack", "spawn", "boot", "health", "cutover", "drain")


class Method:
    name = ""

    def __init__(
        self,
        reaper: Reaper,
        releases: list[Built],
        work: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = env or {}
        self.reaper = reaper
        self.releases = releases
        self.work = work
        self.port = free_port()

    def start(self) -> None:
        raise NotImplementedError

    def swap(self, i: int) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def target(self, i: int) -> Built:
        """Swap ``i`` (0-based) goes to v2, v1, v2, ... (generation 0 serves v1)."""
        return self.releases[(i + 1) % len(self.releases)]


class Hotswap(Method):
    name = "hotswap"

    def start(self) -> None:
        self.sup = SupervisorProc(
            self.reaper,
            self.releases[0].tarball,
            self.port,
            self.work / "state-hotswap",
            self.work / "hotswap.log",
            env=self.env,
        )
        self.sup.start()

    def swap(self, i: int) -> dict[str, Any]:
        record = self.sup.upgrade(self.target(i).tarball)
        return {"timings_ms": record["timings_ms"], "total_ms": record["total_ms"]}

    def stop(self) -> None:
        self.sup.stop()


class Uvicorns(Method):
    reuseport = False

    def start(self) -> None:
        self.current = self._new(self.releases[0])
        self.current.start()

    def _new(self, built: Built) -> UvicornProc:
        return UvicornProc(
            self.reaper,
            built.lib,
            self.port,
            self.work / f"{self.name}.log",
            reuseport=self.reuseport,
        )

    def stop(self) -> None:
        self.current.stop()


class ReusePort(Uvicorns):
    name = "reuseport"
    reuseport = True

    def swap(self, i: int) -> dict[str, Any]:
        started = time.monotonic()
        new = self._new(self.target(i))
        ready_s = new.start()
        answered = self._answered_by(new.pid, timeout=5.0)
        old_s = self.current.stop()
        self.current = new
        return {
            "total_ms": (time.monotonic() - started) * 1000,
            "new_ready_ms": ready_s * 1000,
            "old_exit_ms": old_s * 1000,
            "new_answered": answered,
        }

    def _answered_by(self, pid: int, timeout: float) -> bool:
        """Fresh connections until one reaches ``pid`` (the kernel spreads them over both)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = http_get(self.port)
                if status == 200 and body.get("pid") == pid:
                    return True
            except OSError:
                pass
            time.sleep(0.005)
        return False


class Restart(Uvicorns):
    name = "restart"

    def swap(self, i: int) -> dict[str, Any]:
        started = time.monotonic()
        old_s = self.current.stop()
        new = self._new(self.target(i))
        self.current = new
        ready_s = new.start()
        return {
            "total_ms": (time.monotonic() - started) * 1000,
            "old_exit_ms": old_s * 1000,
            "new_ready_ms": ready_s * 1000,
        }


# -- measuring -------------------------------------------------------------------------------


def error_kind(outcome: Outcome) -> str:
    error = outcome.error or ""
    head = error.split(":", 1)[0] if not error.startswith("HTTP ") else error
    return f"{outcome.kind}: {head}"


def longest_gaps(outcomes: list[Outcome], windows: list[tuple[float, float]]) -> list[float]:
    """Per swap window, the longest interval (ms) without a successful completion, counting
    from the last success before the window to the first one after it."""
    done = sorted(o.started + o.seconds for o in outcomes if o.error is None)
    gaps = []
    for t0, t1 in windows:
        lo = max(0, bisect.bisect_left(done, t0) - 1)
        hi = min(len(done), bisect.bisect_right(done, t1) + 1)
        points = done[lo:hi]
        gap = max((b - a for a, b in itertools.pairwise(points)), default=t1 - t0)
        gaps.append(gap * 1000)
    return gaps


def outside(outcomes: list[Outcome], windows: list[tuple[float, float]], margin: float) -> int:
    """Failed requests that started outside every swap window (widened by ``margin`` s)."""
    count = 0
    for o in outcomes:
        if o.error is None:
            continue
        if not any(t0 - margin <= o.started <= t1 + margin for t0, t1 in windows):
            count += 1
    return count


class IdleKeepAlive:
    """Keep-alive clients that pause ``think`` seconds (uniform) between requests; every
    request's outcome is recorded as in ``Load`` (a reused connection the server closed without
    ``Connection: close`` is a failure). Bounded by ``max_seconds``."""

    def __init__(
        self, port: int, n: int, think: tuple[float, float], max_seconds: float, seed: int = 1
    ) -> None:
        self.port = port
        self.think = think
        self.deadline = time.monotonic() + max_seconds
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(seed + i,), daemon=True) for i in range(n)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.outcomes

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            if conn is None:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=10.0)
            started = time.monotonic()
            status = version = error = None
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                status = response.status
                version = response.getheader("x-version")
                if status >= 500:
                    error = f"HTTP {status}"
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
                conn.close()
                conn = None
            outcome = Outcome(started, time.monotonic() - started, status, version, error, "idle")
            with self._lock:
                self.outcomes.append(outcome)
            self._stop.wait(rnd.uniform(*self.think))
        if conn is not None:
            conn.close()


def run_method(method: Method, args: argparse.Namespace, wrk: str | None) -> dict[str, Any]:
    log(f"{method.name}: starting on port {method.port}")
    method.start()
    windows: list[tuple[float, float]] = []
    swaps: list[dict[str, Any]] = []
    aborted = None
    wrk_run: Wrk | None = None
    wrk_result: WrkResult | None = None
    budget = args.max_seconds
    load = Load(
        HOST,
        method.port,
        keepalive=args.keepalive,
        fresh=args.fresh,
        timeout=10.0,
        max_seconds=budget + 60,
    )
    idle = (
        IdleKeepAlive(method.port, args.idle_keepalive, args.think, budget + 60)
        if args.idle_keepalive
        else None
    )
    started = time.monotonic()
    try:
        if idle is not None:
            idle.start()
        if wrk is not None and args.wrk_connections > 0:
            wrk_run = Wrk(
                method.reaper,
                wrk,
                method.port,
                connections=args.wrk_connections,
                seconds=budget + 30,
            ).start()
        load.start()
        load.wait_requests(100, timeout=10)
        time.sleep(max(args.pause, args.think[1] if idle else 0.0))
        for i in range(args.swaps):
            if time.monotonic() - started > budget:
                aborted = f"time budget of {budget:.0f}s reached after {i} swaps"
                log(f"{method.name}: {aborted}")
                break
            t0 = time.monotonic()
            try:
                info = method.swap(i)
            except Exception as e:  # report it, keep the results so far
                aborted = f"swap {i + 1} raised {type(e).__name__}: {e}"
                log(f"{method.name}: {aborted}")
                windows.append((t0, time.monotonic()))
                break
            windows.append((t0, time.monotonic()))
            swaps.append(info)
            if (i + 1) % 10 == 0:
                log(f"{method.name}: {i + 1} swaps, {load.report.failed} failed so far")
            load.wait_requests(args.settle_requests, timeout=5)
            time.sleep(args.pause)
        if idle is not None:  # let every idle client send once more after the last swap
            time.sleep(args.think[1] + 0.5)
    finally:
        report = load.stop()
        idle_outcomes = idle.stop() if idle is not None else []
        if wrk_run is not None:
            wrk_result = wrk_run.stop()
        elapsed = time.monotonic() - started
        method.stop()
    outcomes = list(report.outcomes)
    failed = [o for o in outcomes if o.error is not None]
    gaps = longest_gaps(outcomes, windows)
    n = len(swaps)
    return {
        "method": method.name,
        "swaps": n,
        "aborted": aborted,
        "seconds": elapsed,
        "requests": len(outcomes),
        "failed": len(failed),
        "failed_keepalive": sum(1 for o in failed if o.kind == "keepalive"),
        "failed_fresh": sum(1 for o in failed if o.kind == "fresh"),
        "failed_outside_swaps": outside(outcomes, windows, margin=0.5),
        "failed_per_swap": len(failed) / n if n else float("nan"),
        "error_kinds": dict(Counter(error_kind(o) for o in failed).most_common()),
        "error_examples": sorted({o.error or "" for o in failed})[:5],
        "versions": dict(report.versions),
        "gap_ms_median": median(gaps),
        "gap_ms_max": max(gaps, default=float("nan")),
        "swap_ms_median": median(float(s["total_ms"]) for s in swaps),
        "swap_records": swaps,
        "idle": None
        if idle is None
        else {
            "clients": args.idle_keepalive,
            "requests": len(idle_outcomes),
            "failed": sum(1 for o in idle_outcomes if o.error),
            "error_kinds": dict(
                Counter(error_kind(o) for o in idle_outcomes if o.error).most_common()
            ),
        },
        "wrk": None
        if wrk_result is None
        else {
            "requests": wrk_result.requests,
            "seconds": wrk_result.seconds,
            "rps": wrk_result.rps,
            "socket_errors": wrk_result.socket_errors,
            "non_2xx": wrk_result.non_2xx,
            "errors": wrk_result.errors,
            "latency_ms": wrk_result.latency_ms,
        },
    }


def print_results(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(
        f"load: wrk -t1 -c{args.wrk_connections} (saturating) + Load(keepalive={args.keepalive}, "
        f"fresh={args.fresh}); {args.swaps} swaps per method asked, alternating v1/v2"
    )
    print()
    print("Load client (every request's outcome recorded):")
    rows = []
    for r in results:
        rows.append(
            [
                r["method"],
                r["swaps"],
                r["requests"],
                r["failed"],
                r["failed_per_swap"],
                r["failed_keepalive"],
                r["failed_fresh"],
                r["failed_outside_swaps"],
                r["gap_ms_median"],
                r["gap_ms_max"],
                r["swap_ms_median"],
                " ".join(f"{k}={v}" for k, v in sorted(r["versions"].items())),
            ]
        )
    print(
        table(
            [
                "method", "swaps", "requests", "failed", "failed/swap", "failed keep-alive",
                "failed fresh", "failed outside swaps", "longest gap ms (median)",
                "longest gap ms (max)", "swap ms (median)", "versions answered",
            ],
            rows,
            digits=1,
        )
    )  # fmt: skip
    print()
    print("error kinds (client kind: exception):")
    rows = []
    for r in results:
        kinds = r["error_kinds"] or {"-": 0}
        for kind, count in kinds.items():
            rows.append([r["method"], kind, count])
    print(table(["method", "error kind", "count"], rows))
    if any(r["idle"] for r in results):
        lo, hi = args.think
        print()
        print(
            f"idle keep-alive clients ({args.idle_keepalive}, pausing {lo:g}-{hi:g} s between "
            "requests on one connection):"
        )
        rows = []
        for r in results:
            if r["idle"]:
                i = r["idle"]
                rows.append(
                    [
                        r["method"],
                        r["swaps"],
                        i["requests"],
                        i["failed"],
                        i["failed"] / r["swaps"] if r["swaps"] else float("nan"),
                        ", ".join(f"{k} {v}" for k, v in i["error_kinds"].items()) or "-",
                    ]
                )
        print(table(["method", "swaps", "requests", "failed", "failed/swap", "errors"], rows))
    if any(r["wrk"] for r in results):
        print()
        print("wrk (saturating, keep-alive connections, during the same swaps):")
        rows = []
        for r in results:
            w = r["wrk"]
            if not w:
                continue
            se = w["socket_errors"] or {}
            rows.append(
                [
                    r["method"],
                    w["requests"],
                    w["seconds"],
                    w["rps"],
                    se.get("connect", 0),
                    se.get("read", 0),
                    se.get("write", 0),
                    se.get("timeout", 0),
                    w["non_2xx"],
                    w["errors"] / r["swaps"] if r["swaps"] else float("nan"),
                    w["latency_ms"].get("p99", float("nan")),
                ]
            )
        print(
            table(
                [
                    "method", "requests", "seconds", "req/s", "connect err", "read err",
                    "write err", "timeouts", "non-2xx", "errors/swap", "p99 ms",
                ],
                rows,
            )
        )  # fmt: skip
    hot = next((r for r in results if r["method"] == "hotswap" and r["swap_records"]), None)
    if hot is not None:
        seen = {k for s in hot["swap_records"] for k in s["timings_ms"]}
        phases = [p for p in PHASES if p in seen] + sorted(seen - set(PHASES))
        print()
        print(f"hotswap swap phases under this load (median ms over {hot['swaps']} swaps):")
        print(
            table(
                [*phases, "total"],
                [
                    [median(s["timings_ms"].get(p, float("nan")) for s in hot["swap_records"])
                     for p in phases] + [hot["swap_ms_median"]]
                ],
            )
        )  # fmt: skip
    for r in results:
        if r["aborted"]:
            print(f"\n{r['method']}: stopped early: {r['aborted']}")
        if r["error_examples"]:
            print(f"\n{r['method']}: example errors: {r['error_examples'][:3]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swaps", type=int, default=30, help="swaps per method (default 30)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}"
    )
    parser.add_argument("--wrk-connections", type=int, default=32, help="0: no wrk")
    parser.add_argument("--keepalive", type=int, default=4, help="keep-alive Load clients")
    parser.add_argument("--fresh", type=int, default=2, help="fresh-connection Load clients")
    parser.add_argument(
        "--pause", type=float, default=0.3, help="seconds of plain load between swaps"
    )
    parser.add_argument(
        "--settle-requests",
        type=int,
        default=50,
        help="Load requests that must complete between two swaps",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=240.0, help="time budget per method (default 240)"
    )
    parser.add_argument(
        "--idle-keepalive", type=int, default=0, metavar="N",
        help="also run N keep-alive clients that pause between requests (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--think", default="0.2-2.5", metavar="LO-HI",
        help="their pause between requests, seconds (default 0.2-2.5)",
    )  # fmt: skip
    parser.add_argument(
        "--supervisor-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for the hotswap supervisor (e.g. HOTSWAP_IDLE_GRACE=5)",
    )  # fmt: skip
    parser.add_argument("--keep", metavar="DIR", help="work dir to keep (logs, releases)")
    parser.add_argument("--json", metavar="PATH", help="write the raw results as JSON")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    lo, _, hi = args.think.partition("-")
    args.think = (float(lo), float(hi or lo))
    sup_env = dict(kv.split("=", 1) for kv in args.supervisor_env)
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")

    info = machine_info()
    wrk = ensure_wrk() if args.wrk_connections > 0 else None
    if wrk is not None and info["wrk"] == "absent":
        info = machine_info()
    classes = {"hotswap": Hotswap, "reuseport": ReusePort, "restart": Restart}
    reaper = Reaper()
    results = []
    try:
        with workdir(args.keep) as work:
            releases = build_releases(work)
            for name in methods:
                method = classes[name](reaper, releases, work, sup_env)
                results.append(run_method(method, args, wrk))
                reaper.reap()
    finally:
        reaper.reap()
    print()
    print_machine(info)
    if sup_env:
        print(f"hotswap supervisor environment: {sup_env}")
    print_results(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=2))
    hot = next((r for r in results if r["method"] == "hotswap"), None)
    if hot is not None:
        verdict = "met" if hot["failed"] == 0 and not hot["aborted"] else "NOT met"
        if hot["idle"]:
            print(
                f"\nhotswap, idle keep-alive clients: {hot['idle']['failed']} failed of "
                f"{hot['idle']['requests']} (not part of the target below)"
            )
        wrk_errors = hot["wrk"]["errors"] if hot["wrk"] else "n/a"
        print(
            f"\ntarget: zero failed requests for hotswap: {verdict} "
            f"({hot['failed']} failed over {hot['swaps']} swaps, {hot['requests']} requests, "
            f"keep-alive clients included; wrk errors {wrk_errors})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
