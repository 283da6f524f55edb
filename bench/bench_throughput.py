"""Throughput, latency during a swap, swap time by phase, and supervisor memory.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_throughput.py [--runs 12] [--seconds 3] [--connections 32]
        [--concurrent-rounds 8] [--idle-swaps 10] [--load-swaps 10] [--steady 2.0]
        [--background-wrk C] [--supervisor-env KEY=VALUE] [--skip-throughput] [--json PATH]

About 4 minutes with the defaults.

The fixture app (tests/fixtures/app) is built as v1 and v2 release tarballs with the real
``hotswap build``. Then, in one run:

(i)   throughput: the app under the supervisor (``hotswap run``, one generation, uvicorn, one
      worker) against the same uvicorn serving the same unpacked release directly (same
      ``uvicorn.Config``, same interpreter flags, a TCP socket on 127.0.0.1 with the same
      backlog), all alive at once; wrk ``-t1 -cN`` runs of ``--seconds`` each, interleaved
      (the order rotates every round), median of ``--runs``; ratio = median(supervised) /
      median(direct). A third target is that direct uvicorn with ``date_header=False,
      server_header=False``: hotswap's uvicorn adapter never runs uvicorn's main loop, whose
      tick is what sets those default headers, so its responses carry neither, and that
      variant compares like with like. The server side's CPU time per request (from
      /proc/<pid>/stat) is printed too.
(i-b) the same three targets loaded *at the same time*, each by its own wrk with a third of the
      connections, ``--concurrent-rounds`` rounds: noise from other work on a shared machine
      then hits all of them alike, and the ratio of their req/s is their relative cost per
      request; median of the per-round ratios.
(i-c) hotswap's only per-request code in a uvicorn generation, its ``DrainAware`` ASGI
      wrapper, timed in-process against the bare app (no network, deterministic).
(ii)  latency during a swap against steady state: ``hotswap.testing.load.Load`` (keep-alive and
      fresh-connection clients, every request timed) runs while the supervisor does
      ``--load-swaps`` swaps; a request belongs to the window in which it *started*: "steady"
      windows are the ``--steady`` seconds before each swap (each starting at least 0.5 s after
      the previous swap returned), "swap" windows run from the ``upgrade()`` call to its
      return (unpack, boot, health, cutover and the old generation's whole drain).
(iii) swap time by phase: the ``timings_ms`` of every swap (idle swaps by tarball path, the
      first of which extracts the new release and is shown alone, idle swaps by release id,
      and the swaps under load of (ii)); median, min and max per phase. The
      supervisor's own overhead is defined as ``total_ms - boot - drain``: everything a swap
      costs beyond the new generation's boot (spawn→ready: interpreter start, imports, app
      start-up, as reported by the child) and the old generation's drain (cutover→old exited);
      that is unpack (verify tarball, find or extract the release) + spawn + health probe +
      cutover + bookkeeping between phases.
(iv)  supervisor RSS: VmRSS (and peak VmHWM) of the ``hotswap run`` process itself (not its
      children), idle after start, after the throughput runs, and after each swap.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    HOST,
    PY,
    Built,
    Reaper,
    SupervisorProc,
    UvicornProc,
    Wrk,
    WrkResult,
    build_releases,
    cpu_seconds,
    ensure_wrk,
    free_port,
    log,
    machine_info,
    median,
    pct,
    print_machine,
    rss_kb,
    table,
    workdir,
)
from hotswap.testing.load import Load

PHASES = ("unpack", "spawn", "boot", "health", "cutover", "drain")
TARGET_RATIO = 0.98
TARGET_OVERHEAD_MS = 50.0
TARGET_RSS_MB = 30.0


# -- (i) throughput --------------------------------------------------------------------------


def measure_rps(
    reaper: Reaper, wrk: str | None, port: int, pids: list[int], args: argparse.Namespace
) -> dict[str, float]:
    """One run against ``port``; also the CPU time the server side (``pids``) spent per
    request, which other work on a shared machine disturbs far less than the rate."""
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    if wrk is not None:
        result: WrkResult = Wrk(
            reaper, wrk, port, connections=args.connections, seconds=args.seconds
        ).run()
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
        return {
            "rps": result.rps,
            "p50": result.latency_ms.get("p50", float("nan")),
            "p99": result.latency_ms.get("p99", float("nan")),
            "errors": float(result.errors),
            "cpu_us": cpu / result.requests * 1e6 if result.requests else float("nan"),
        }
    # fallback without wrk: Python keep-alive clients (client-bound, lower absolute figures)
    load = Load(HOST, port, keepalive=8, fresh=0, max_seconds=args.seconds + 30)
    started = time.monotonic()
    with load:
        time.sleep(args.seconds)
    elapsed = time.monotonic() - started
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
    lat = load.report.latencies()
    return {
        "rps": load.report.ok / elapsed,
        "p50": pct(lat, 0.50) * 1000,
        "p99": pct(lat, 0.99) * 1000,
        "errors": float(load.report.failed),
        "cpu_us": cpu / load.report.ok * 1e6 if load.report.ok else float("nan"),
    }


SUP, DIRECT, BARE = "supervised", "direct", "direct, no Date/Server"


def throughput(
    reaper: Reaper,
    wrk: str | None,
    targets: dict[str, tuple[int, list[int]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``targets``: name -> (port, server-side pids); runs rotate the order every round."""
    warm = argparse.Namespace(**{**vars(args), "seconds": 2})
    for name, (port, pids) in targets.items():
        log(f"throughput: warming up {name}")
        measure_rps(reaper, wrk, port, pids, warm)
    names = list(targets)
    rounds: list[dict[str, dict[str, float]]] = []
    for r in range(args.runs):
        k = r % len(names)
        order = names[k:] + names[:k]
        if r // len(names) % 2:
            order.reverse()
        row: dict[str, dict[str, float]] = {}
        for name in order:
            row[name] = measure_rps(reaper, wrk, *targets[name], args)
        log(
            f"throughput round {r + 1}/{args.runs}: "
            + ", ".join(f"{n} {row[n]['rps']:.0f} req/s" for n in names)
        )
        rounds.append(row)
    summary = {
        name: {key: median(x[name][key] for x in rounds) for key in ("rps", "p50", "p99", "cpu_us")}
        | {"errors": sum(x[name]["errors"] for x in rounds)}
        for name in names
    }
    return {
        "tool": "wrk" if wrk else "python Load client (wrk unavailable)",
        "rounds": rounds,
        "summary": summary,
        "ratio": summary[SUP]["rps"] / summary[DIRECT]["rps"],
        "paired_ratio": median(x[SUP]["rps"] / x[DIRECT]["rps"] for x in rounds),
        "ratio_bare": summary[SUP]["rps"] / summary[BARE]["rps"] if BARE in summary else None,
        "paired_ratio_bare": median(x[SUP]["rps"] / x[BARE]["rps"] for x in rounds)
        if BARE in summary
        else None,
    }


def concurrent_ab(
    reaper: Reaper, wrk: str, targets: dict[str, tuple[int, list[int]]], args: argparse.Namespace
) -> dict[str, Any]:
    """All targets loaded at the same time, each by its own wrk with a share of the
    connections: whatever else runs on the machine hits them alike, and the kernel shares the
    CPUs between them, so their req/s ratio is their relative cost per request."""
    conns = max(1, args.connections // len(targets))
    rounds: list[dict[str, float]] = []
    for r in range(args.concurrent_rounds):
        runs = {
            name: Wrk(reaper, wrk, port, connections=conns, seconds=args.seconds).start()
            for name, (port, _pids) in targets.items()
        }
        rounds.append({name: run.wait().rps for name, run in runs.items()})
        log(
            f"concurrent round {r + 1}/{args.concurrent_rounds}: "
            + ", ".join(f"{n} {v:.0f} req/s" for n, v in rounds[-1].items())
        )
    return {
        "connections_each": conns,
        "rounds": rounds,
        "paired_ratio": median(x[SUP] / x[DIRECT] for x in rounds),
        "paired_ratio_bare": median(x[SUP] / x[BARE] for x in rounds) if BARE in targets else None,
    }


# The only per-request code hotswap adds to a uvicorn generation is its ASGI wrapper
# (``DrainAware``: responses say ``Connection: close`` once draining). Timed in-process against
# the bare app, no network: a deterministic figure the noisy req/s runs cannot resolve.
WRAPPER_SCRIPT = r"""
import asyncio, site, sys, time
site.addsitedir(sys.argv[1])
from fixture_app.main import app
from hotswap.child.adapters.uvicorn import DrainAware

class Runtime:
    draining = False

wrapped = DrainAware(app, Runtime())
scope = {"type": "http", "path": "/", "query_string": b"", "method": "GET", "headers": []}

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def send(message):
    pass

async def per_call(target, n):
    started = time.perf_counter()
    for _ in range(n):
        await target(scope, receive, send)
    return (time.perf_counter() - started) / n * 1e6

async def main():
    plain, wrap = [], []
    for _ in range(9):
        plain.append(await per_call(app, 20000))
        wrap.append(await per_call(wrapped, 20000))
    plain.sort()
    wrap.sort()
    print(plain[4], wrap[4])

asyncio.run(main())
"""


def wrapper_cost(lib: Path) -> dict[str, float]:
    done = subprocess.run(
        [PY, "-c", WRAPPER_SCRIPT, str(lib)], capture_output=True, text=True, timeout=300
    )
    plain, wrapped = (float(x) for x in done.stdout.split())
    return {"app_us": plain, "wrapped_us": wrapped, "added_us": wrapped - plain}


# -- (ii)-(iv) swaps -------------------------------------------------------------------------


class Swapper:
    """Drives swaps of one supervisor, alternating releases, and samples its RSS after each."""

    def __init__(self, sup: SupervisorProc, releases: list[Built]) -> None:
        self.sup = sup
        self.releases = releases
        self.count = 0
        self.rss_after: list[dict[str, int]] = []

    def swap(self, by_id: bool = False) -> dict[str, Any]:
        self.count += 1
        built = self.releases[self.count % len(self.releases)]
        if by_id:
            import hotswap

            record: dict[str, Any] = hotswap.upgrade(built.release_id, state_dir=self.sup.state_dir)
            if record.get("pid"):
                self.sup.reaper.add_pid(int(record["pid"]), str(self.sup.state_dir))
        else:
            record = self.sup.upgrade(built.tarball)
        self.rss_after.append(rss_kb(self.sup.pid))
        return record


def latency_windows(
    swapper: Swapper, args: argparse.Namespace, reaper: Reaper, wrk: str | None
) -> dict[str, Any]:
    steady: list[tuple[float, float]] = []
    swaps: list[tuple[float, float]] = []
    records: list[dict[str, Any]] = []
    load = Load(
        HOST,
        swapper.sup.port,
        keepalive=args.keepalive,
        fresh=args.fresh,
        max_seconds=args.load_swaps * (args.steady + 10) + 60,
    )
    background: Wrk | None = None
    if wrk is not None and args.background_wrk > 0:
        background = Wrk(
            reaper,
            wrk,
            swapper.sup.port,
            connections=args.background_wrk,
            seconds=args.load_swaps * (args.steady + 10) + 30,
        ).start()
    try:
        with load:
            load.wait_requests(100, timeout=10)
            time.sleep(0.5)
            for i in range(args.load_swaps):
                t0 = time.monotonic()
                time.sleep(args.steady)
                steady.append((t0, time.monotonic()))
                t1 = time.monotonic()
                records.append(swapper.swap())
                swaps.append((t1, time.monotonic()))
                log(f"latency: swap {i + 1}/{args.load_swaps} in {records[-1]['total_ms']:.0f} ms")
                time.sleep(0.5)
    finally:
        if background is not None:
            background.stop()
    report = load.report

    def window_stats(windows: list[tuple[float, float]]) -> dict[str, Any]:
        pooled: list[float] = []
        per_window_p99 = []
        failed = 0
        for a, b in windows:
            lat = report.latencies(a, b)
            pooled += lat
            per_window_p99.append(pct(lat, 0.99) * 1000)
            failed += sum(1 for o in report.errors if a <= o.started < b)
        return {
            "windows": len(windows),
            "seconds": sum(b - a for a, b in windows),
            "requests": len(pooled),
            "failed": failed,
            "p50_ms": pct(pooled, 0.50) * 1000,
            "p90_ms": pct(pooled, 0.90) * 1000,
            "p99_ms": pct(pooled, 0.99) * 1000,
            "max_ms": max(pooled, default=float("nan")) * 1000,
            "median_window_p99_ms": median(per_window_p99),
        }

    return {
        "steady": window_stats(steady),
        "swap": window_stats(swaps),
        "records": records,
        "total_failed": report.failed,
        "total_requests": report.total,
    }


def import_baseline() -> dict[str, int]:
    """RSS of a bare interpreter, and of one that imported what the supervisor imports."""
    probe = (
        "import sys\n"
        "if sys.argv[1] == '1':\n"
        "    import asyncio, hotswap.cli, hotswap.supervisor.core, hotswap.control.server\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])\n"
    )
    out = {}
    for key, flag in (("bare python", "0"), ("python + supervisor imports", "1")):
        done = subprocess.run([PY, "-c", probe, flag], capture_output=True, text=True, timeout=60)
        out[key] = int(done.stdout.strip() or 0)
    return out


def phase_rows(label: str, records: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    stats = (
        (("median", median), ("min", min), ("max", max))
        if len(records) > 1
        else (("value", median),)
    )
    for stat, fn in stats:
        row: list[Any] = [label if stat in ("median", "value") else "", len(records), stat]
        for phase in PHASES:
            row.append(fn(float(r["timings_ms"].get(phase, float("nan"))) for r in records))
        row.append(fn(float(r["total_ms"]) for r in records))
        row.append(fn(overhead(r) for r in records))
        rows.append(row)
    return rows


def overhead(record: dict[str, Any]) -> float:
    t = record["timings_ms"]
    return float(record["total_ms"]) - float(t.get("boot", 0.0)) - float(t.get("drain", 0.0))


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=12, help="wrk runs per target (default 12)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per wrk run (3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--concurrent-rounds", type=int, default=8, metavar="N",
        help="rounds of all targets loaded at once (0: skip; default 8)",
    )  # fmt: skip
    parser.add_argument("--idle-swaps", type=int, default=10, help="swaps without load, per kind")
    parser.add_argument("--load-swaps", type=int, default=10, help="swaps under Load, for p99")
    parser.add_argument("--steady", type=float, default=2.0, help="steady seconds before a swap")
    parser.add_argument("--keepalive", type=int, default=4, help="keep-alive Load clients")
    parser.add_argument("--fresh", type=int, default=2, help="fresh-connection Load clients")
    parser.add_argument(
        "--background-wrk", type=int, default=0, metavar="C",
        help="also run wrk -cC during the latency windows (default: no)",
    )  # fmt: skip
    parser.add_argument(
        "--supervisor-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for the supervisor (e.g. MALLOC_ARENA_MAX=2)",
    )  # fmt: skip
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--keep", metavar="DIR", help="work dir to keep (logs, releases)")
    parser.add_argument("--json", metavar="PATH", help="write the raw results as JSON")
    args = parser.parse_args()
    sup_env = dict(kv.split("=", 1) for kv in args.supervisor_env)

    info = machine_info()
    wrk = None if args.skip_throughput else ensure_wrk()
    if wrk is not None and info["wrk"] == "absent":
        info = machine_info()
    reaper = Reaper()
    out: dict[str, Any] = {"machine": info, "supervisor_env": sup_env}
    rss: list[list[Any]] = []

    def sample(label: str, pid: int, swaps: int) -> None:
        r = rss_kb(pid)
        rss.append([label, swaps, r["VmRSS"] / 1024, r["VmHWM"] / 1024, r.get("Threads", 0)])

    try:
        with workdir(args.keep) as work:
            releases = build_releases(work)
            sup = SupervisorProc(
                reaper,
                releases[0].tarball,
                free_port(),
                work / "state",
                work / "supervisor.log",
                env=sup_env,
            )
            sup.start()
            time.sleep(1.0)
            sample("idle, after start", sup.pid, 0)
            gen_pid = int(sup.status()["active"]["pid"])
            out["generation_rss_mb"] = rss_kb(gen_pid)["VmRSS"] / 1024
            if not args.skip_throughput:
                direct = UvicornProc(
                    reaper, releases[0].lib, free_port(), work / "direct.log", reuseport=False
                )
                direct.start()
                out["direct_rss_mb"] = rss_kb(direct.pid)["VmRSS"] / 1024
                bare = UvicornProc(
                    reaper,
                    releases[0].lib,
                    free_port(),
                    work / "direct-bare.log",
                    reuseport=False,
                    config={"date_header": False, "server_header": False},
                )
                bare.start()
                targets = {
                    SUP: (sup.port, [sup.pid, gen_pid]),
                    DIRECT: (direct.port, [direct.pid]),
                    BARE: (bare.port, [bare.pid]),
                }
                try:
                    out["throughput"] = throughput(reaper, wrk, targets, args)
                    if wrk is not None and args.concurrent_rounds > 0:
                        out["concurrent"] = concurrent_ab(reaper, wrk, targets, args)
                    out["wrapper"] = wrapper_cost(releases[0].lib)
                finally:
                    direct.stop()
                    bare.stop()
                sample("after the throughput runs", sup.pid, 0)

            swapper = Swapper(sup, releases)
            idle_path = []
            for _ in range(args.idle_swaps):
                idle_path.append(swapper.swap())
                time.sleep(0.2)
            log(f"{len(idle_path)} idle swaps by tarball path done")
            idle_id = []
            for _ in range(args.idle_swaps):
                idle_id.append(swapper.swap(by_id=True))
                time.sleep(0.2)
            log(f"{len(idle_id)} idle swaps by release id done")
            time.sleep(1.0)
            sample(f"idle, after {swapper.count} idle swaps", sup.pid, swapper.count)
            out["latency"] = latency_windows(swapper, args, reaper, wrk)
            time.sleep(1.0)
            sample("idle, after the swaps under load", sup.pid, swapper.count)
            out["swaps"] = {
                "idle, new release (extracted)": idle_path[:1],
                "idle, by tarball path": idle_path[1:],
                "idle, by release id": idle_id,
                "under Load": out["latency"]["records"],
            }
            out["rss_after_each_swap_kb"] = swapper.rss_after
            sup.stop()
    finally:
        reaper.reap()
    out["import_baseline_kb"] = import_baseline()
    out["rss_table"] = rss

    print()
    print_machine(info)
    if sup_env:
        print(f"supervisor environment: {sup_env}")

    if "throughput" in out:
        t = out["throughput"]
        names = list(t["summary"])
        print()
        print(
            f"(i) throughput, {t['tool']} -t1 -c{args.connections}, {args.seconds:g}s runs, "
            f"{args.runs} rounds, order rotated every round; req/s:"
        )
        rows = []
        for i, r in enumerate(t["rounds"], 1):
            rows.append(
                [i, *(r[n]["rps"] for n in names), r[SUP]["rps"] / r[DIRECT]["rps"],
                 r[SUP]["rps"] / r[BARE]["rps"]]
            )  # fmt: skip
        rows.append(
            ["median", *(t["summary"][n]["rps"] for n in names), t["ratio"], t["ratio_bare"]]
        )
        print(
            table(
                ["round", *names, f"{SUP} / {DIRECT}", f"{SUP} / {BARE}"],
                rows,
                digits=2,
            )
        )
        print()
        print("medians per target (CPU: user+sys of the serving processes per request):")
        rows = []
        for n in names:
            x = t["summary"][n]
            rows.append([n, x["rps"], x["p50"], x["p99"], x["cpu_us"], int(x["errors"])])
        print(
            table(["target", "req/s", "p50 ms", "p99 ms", "CPU us/req", "errors"], rows, digits=2)
        )
        verdict = "met" if t["ratio"] >= TARGET_RATIO else "NOT met"
        print(
            f"{SUP} / {DIRECT}: ratio of medians {t['ratio']:.3f}, median of per-round ratios "
            f"{t['paired_ratio']:.3f}; target >= {TARGET_RATIO}: {verdict}"
        )
        cpu = t["summary"]
        print(
            f"{SUP} / {BARE} (same headers as hotswap's responses): ratio of medians "
            f"{t['ratio_bare']:.3f}, median of per-round ratios {t['paired_ratio_bare']:.3f}; "
            f"CPU per request {DIRECT}/{SUP} = {cpu[DIRECT]['cpu_us'] / cpu[SUP]['cpu_us']:.3f}, "
            f"{BARE}/{SUP} = {cpu[BARE]['cpu_us'] / cpu[SUP]['cpu_us']:.3f}"
        )

    if "concurrent" in out:
        c = out["concurrent"]
        names = list(c["rounds"][0])
        print()
        print(
            f"(i-b) the same targets loaded at the same time, wrk -t1 -c{c['connections_each']} "
            f"each, {args.seconds:g}s rounds (shared noise; req/s ratio = relative cost):"
        )
        rows = [
            [i, *(r[n] for n in names), r[SUP] / r[DIRECT], r[SUP] / r[BARE]]
            for i, r in enumerate(c["rounds"], 1)
        ]
        rows.append(
            ["median", *(median(r[n] for r in c["rounds"]) for n in names),
             c["paired_ratio"], c["paired_ratio_bare"]]
        )  # fmt: skip
        print(table(["round", *names, f"{SUP} / {DIRECT}", f"{SUP} / {BARE}"], rows, digits=2))

    if "wrapper" in out:
        w = out["wrapper"]
        sup_cpu = out["throughput"]["summary"][SUP]["cpu_us"]
        print()
        print(
            f"(i-c) hotswap's per-request code (the DrainAware ASGI wrapper), in-process, median "
            f"of 9 x 20,000 calls: app alone {w['app_us']:.2f} us, wrapped {w['wrapped_us']:.2f} "
            f"us: +{w['added_us']:.2f} us per request = {w['added_us'] / sup_cpu * 100:.1f}% of "
            f"the {sup_cpu:.0f} us of CPU a supervised request costs (i): expected throughput "
            f"ratio against a like-for-like uvicorn {1 - w['added_us'] / sup_cpu:.3f}"
        )

    lat = out["latency"]
    print()
    print(
        f"(ii) latency, Load(keepalive={args.keepalive}, fresh={args.fresh})"
        + (f" + wrk -c{args.background_wrk}" if args.background_wrk else "")
        + f", {args.load_swaps} swaps, {args.steady:g}s steady before each; a request counts "
        "in the window where it started:"
    )
    rows = []
    for name in ("steady", "swap"):
        w = lat[name]
        rows.append(
            [name, w["windows"], w["seconds"], w["requests"], w["failed"], w["p50_ms"],
             w["p90_ms"], w["p99_ms"], w["max_ms"], w["median_window_p99_ms"]]
        )  # fmt: skip
    print(
        table(
            ["window", "windows", "seconds", "requests", "failed", "p50 ms", "p90 ms", "p99 ms",
             "max ms", "median of per-window p99 ms"],
            rows,
            digits=2,
        )
    )  # fmt: skip
    st, sw = lat["steady"], lat["swap"]
    print(
        f"p99 during a swap / steady p99 = {sw['p99_ms'] / st['p99_ms']:.2f}x "
        f"({sw['p99_ms']:.1f} ms vs {st['p99_ms']:.1f} ms); failed requests over the whole "
        f"run: {lat['total_failed']} of {lat['total_requests']}"
    )

    print()
    print(
        "(iii) swap time by phase (ms). overhead = total_ms - boot - drain (what the supervisor "
        "adds beyond the new generation's boot and the old one's drain):"
    )
    rows = []
    for label, records in out["swaps"].items():
        if records:
            rows += phase_rows(label, records)
    print(table(["swaps", "n", "stat", *PHASES, "total", "overhead"], rows, digits=1))
    idle_over = median(overhead(r) for r in out["swaps"]["idle, by tarball path"])
    verdict = "met" if idle_over <= TARGET_OVERHEAD_MS else "NOT met"
    print(
        f"supervisor overhead, idle swaps by tarball (median): {idle_over:.1f} ms; "
        f"target <= {TARGET_OVERHEAD_MS:g} ms: {verdict}"
    )

    print()
    print("(iv) supervisor (the `hotswap run` process) memory, /proc/<pid>/status:")
    print(table(["when", "swaps so far", "VmRSS MB", "VmHWM MB", "threads"], rss, digits=1))
    after = swapper.rss_after
    marks = [n for n in (1, 10, 20, 30, len(after)) if n <= len(after)]
    print(
        "VmRSS after swap n (MB): "
        + ", ".join(f"#{n} {after[n - 1]['VmRSS'] / 1024:.1f}" for n in sorted(set(marks)))
    )
    base = out["import_baseline_kb"]
    print(
        "for reference: "
        + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in base.items())
        + f"; one generation (uvicorn + app) {out['generation_rss_mb']:.1f} MB"
        + (f"; direct uvicorn {out['direct_rss_mb']:.1f} MB" if "direct_rss_mb" in out else "")
    )
    idle_mb = rss[0][2]
    after20 = after[19]["VmRSS"] / 1024 if len(after) >= 20 else after[-1]["VmRSS"] / 1024
    verdict = "met" if max(idle_mb, after20) <= TARGET_RSS_MB else "NOT met"
    print(
        f"supervisor VmRSS idle {idle_mb:.1f} MB, after {min(20, len(after))} swaps "
        f"{after20:.1f} MB; target <= {TARGET_RSS_MB:g} MB: {verdict}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
