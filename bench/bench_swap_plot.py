"""A swap as Prometheus sees it: a real supervisor with ``--metrics`` under light load, its
``/metrics`` scraped every 100 ms across a few swaps, drawn as a small Grafana-style PNG.

Run: ``.venv/bin/python bench/bench_swap_plot.py [--png docs/img/swap-metrics.png]
[--interval 0.1] [--keep DIR]`` (needs matplotlib: ``pip install -e '.[bench]'``).

The releases are the test fixture app (tests/fixtures/app) at 1.0.0 and 2.0.0, built with the
real ``hotswap build``; the supervisor is a real ``hotswap run --metrics``. The swaps, 2 s
apart: blue-green to 2.0.0, blue-green to 1.0.0, hot upgrade to 2.0.0, rollback (to 1.0.0),
and one failed upgrade (a 3.0.0 that crashes at import: ``FIXTURE_CRASH_AT_IMPORT``).

The load is ``hotswap.testing.load`` in this process: two keep-alive clients and one opening a
connection per request, 5 ms of think time each. Requests served per second are counted on the
client side (the supervisor never sees a request: its generations serve them), by the version
that answered. A scraper thread GETs ``/metrics`` every ``--interval`` and parses it with
prometheus_client's own parser; a third thread asks ``status`` on the control socket every
100 ms. The CPU of this process (load generator, scraper, status poller) and of the supervisor
are printed separately, so the load generator's share is accounted for.

Panels: requests/s by version (200 ms bins), ``hotswap_active_generation``,
``hotswap_upgrading``, and each swap's phase durations (the deltas of
``hotswap_swap_phase_duration_seconds_sum`` between two scrapes, stacked, at the scrape that
saw the swap end; a hot upgrade's prepare and quiesce, and its suspension window from
``hotswap_hot_suspension_seconds``). The printed table has each swap's phases from the same
deltas, and the scrape and status latencies (median, p99, max) while the swaps ran.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    HOST,
    PY,
    Reaper,
    build_releases,
    cpu_seconds,
    free_port,
    log,
    machine_info,
    print_machine,
    terminate,
    wait_http,
    workdir,
)

import hotswap
from hotswap.supervisor.metrics import parsed
from hotswap.testing.load import Load

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("unpack", "spawn", "boot", "health", "cutover", "commit", "drain", "prepare", "quiesce")
COLORS = {  # Grafana's classic palette
    "unpack": "#5794f2",
    "spawn": "#b877d9",
    "boot": "#73bf69",
    "health": "#fade2a",
    "cutover": "#f2495c",
    "commit": "#ff9830",
    "drain": "#8ab8ff",
    "prepare": "#37872d",
    "quiesce": "#c4162a",
    "window": "#ffee52",
}
Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Scrape:
    at: float  # seconds since the start
    took: float  # the HTTP GET, parsing not included
    samples: dict[Key, float]

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def phase_sums(self) -> dict[tuple[str, str], float]:
        out = {}
        for (name, labels), value in self.samples.items():
            if name == "hotswap_swap_phase_duration_seconds_sum":
                d = dict(labels)
                out[(d["result"], d["phase"])] = value
        return out

    def swap_counts(self) -> dict[tuple[str, str], float]:
        return {
            (dict(labels)["kind"], dict(labels)["outcome"]): value
            for (name, labels), value in self.samples.items()
            if name == "hotswap_swaps_total"
        }


@dataclass
class Timeline:
    t0: float
    scrapes: list[Scrape] = field(default_factory=list)
    status_ms: list[float] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (at, label) of each swap


def _scrape(port: int) -> tuple[float, dict[Key, float]]:
    """Seconds the GET took, and the parsed samples."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    took = time.monotonic() - started
    return took, {(name, frozenset(labels.items())): v for name, labels, v in parsed(body)}


def _poll(stop: threading.Event, interval: float, fn: Any) -> threading.Thread:
    def run() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            fn()
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _run(args: argparse.Namespace, work: Path, reaper: Reaper) -> tuple[Timeline, Load, dict]:
    v1, v2, v3 = build_releases(work, ("1.0.0", "2.0.0", "3.0.0"))
    port, mport = free_port(), free_port()
    state = work / "state"
    argv = [
        PY, "-m", "hotswap.cli", "run", str(v1.tarball), "--bind", f"{HOST}:{port}",
        "--state-dir", str(state), "--metrics", f"{HOST}:{mport}",
    ]  # fmt: skip
    env = {**os.environ, "FIXTURE_CRASH_AT_IMPORT": "3.0.0"}
    with open(work / "supervisor.log", "ab") as out:
        proc = reaper.add(
            subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        )  # fmt: skip
    wait_http(port, 60)
    deadline = time.monotonic() + 30
    while hotswap.status(state_dir=state)["upgrading"] and time.monotonic() < deadline:
        time.sleep(0.05)
    load = Load(HOST, port, keepalive=2, fresh=1, pause=0.005, max_seconds=180)
    load.start()
    try:
        ab = _side_by_side(args, proc.pid, state, mport)
    except BaseException:
        load.stop()
        raise
    timeline = Timeline(t0=time.monotonic())
    stop = threading.Event()

    def scrape() -> None:
        started = time.monotonic()
        took, samples = _scrape(mport)
        timeline.scrapes.append(Scrape(started - timeline.t0, took, samples))

    def status() -> None:
        started = time.monotonic()
        for gen in hotswap.status(state_dir=state)["generations"]:
            reaper.add_pid(int(gen["pid"]), str(state))
        timeline.status_ms.append((time.monotonic() - started) * 1000)

    cpu_self0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_sup0 = cpu_seconds(proc.pid)
    threads = [_poll(stop, args.interval, scrape), _poll(stop, 0.1, status)]

    def swap(label: str, fn: Any) -> None:
        time.sleep(args.gap)
        timeline.marks.append((time.monotonic() - timeline.t0, label))
        log(label)
        try:
            fn()
        except hotswap.HotswapError as e:
            log(f"  failed as meant: {e.code}")

    try:
        swap("blue-green 2.0.0", lambda: hotswap.upgrade(str(v2.tarball), state_dir=state))
        swap("blue-green 1.0.0", lambda: hotswap.upgrade(str(v1.tarball), state_dir=state))
        swap(
            "hot 2.0.0",
            lambda: hotswap.hot_upgrade_generation(str(v2.tarball), state_dir=state),
        )
        swap("rollback", lambda: hotswap.rollback(state_dir=state))
        swap("3.0.0, crashes at import", lambda: hotswap.upgrade(str(v3.tarball), state_dir=state))
        time.sleep(args.gap)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        report = load.stop()
    cpu_self1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {
        "bench process (load + scraper + status)": (cpu_self1.ru_utime + cpu_self1.ru_stime)
        - (cpu_self0.ru_utime + cpu_self0.ru_stime),
        "supervisor": cpu_seconds(proc.pid) - cpu_sup0,
        "seconds": time.monotonic() - timeline.t0,
    }
    terminate(proc, 30)
    log(f"{report.total} requests, {report.failed} failed")
    cpu["ab"] = ab
    return timeline, load, cpu


def _side_by_side(
    args: argparse.Namespace, sup_pid: int, state: Path, mport: int
) -> dict[str, dict[str, Any]]:
    """Before the swaps, under the same load: windows of ``--ab-seconds`` without and with a
    scrape every ``--interval``, interleaved, ``--ab-rounds`` of each. In each: the latency of
    ``status`` (every 50 ms) and the supervisor's CPU."""
    out: dict[str, dict[str, Any]] = {
        mode: {"status_ms": [], "cpu_s": 0.0, "seconds": 0.0, "scrapes": 0}
        for mode in ("off", "on")
    }
    for i in range(2 * args.ab_rounds):
        mode = "on" if i % 2 else "off"
        stop = threading.Event()
        window = out[mode]

        def status(window: dict[str, Any] = window) -> None:
            started = time.monotonic()
            hotswap.status(state_dir=state)
            window["status_ms"].append((time.monotonic() - started) * 1000)

        def scrape(window: dict[str, Any] = window) -> None:
            conn = http.client.HTTPConnection(HOST, mport, timeout=5)
            try:  # the GET alone: parsing here would hold this process's GIL, not the
                conn.request("GET", "/metrics")  # supervisor's, and slow the status client
                conn.getresponse().read()
            finally:
                conn.close()
            window["scrapes"] += 1

        cpu0, t0 = cpu_seconds(sup_pid), time.monotonic()
        threads = [_poll(stop, 0.05, status)]
        if mode == "on":
            threads.append(_poll(stop, args.interval, scrape))
        time.sleep(args.ab_seconds)
        stop.set()
        for thread in threads:
            thread.join(10)
        window["cpu_s"] += cpu_seconds(sup_pid) - cpu0
        window["seconds"] += time.monotonic() - t0
    return out


def _swaps(timeline: Timeline) -> list[dict[str, Any]]:
    """Each swap, from the scrapes: the scrape that saw its counter move, its phases."""
    out = []
    for before, after in zip(timeline.scrapes, timeline.scrapes[1:], strict=False):
        counts_b, counts_a = before.swap_counts(), after.swap_counts()
        moved = [k for k in counts_a if counts_a[k] != counts_b.get(k, 0.0)]
        if not moved:
            continue
        sums_b, sums_a = before.phase_sums(), after.phase_sums()
        phases: dict[str, float] = {}
        for key, value in sums_a.items():
            delta = value - sums_b.get(key, 0.0)
            if delta > 0:
                phases[key[1]] = phases.get(key[1], 0.0) + delta * 1000
        window = (
            after.get("hotswap_hot_suspension_seconds_sum")
            - before.get("hotswap_hot_suspension_seconds_sum")
        ) * 1000
        total = 0.0
        for (name, labels), value in after.samples.items():
            if name == "hotswap_swap_duration_seconds_sum":
                total += value - before.samples.get((name, labels), 0.0)
        kinds = ", ".join(f"{kind} {outcome}" for kind, outcome in moved)
        if len(moved) == 1 and len(out) < len(timeline.marks):
            outcome = moved[0][1]
            kinds = timeline.marks[len(out)][1] + ("" if outcome == "ok" else f" [{outcome}]")
        out.append(
            {
                "at": after.at,
                "what": kinds,
                "phases": phases,
                "window_ms": window,
                "total_ms": total * 1000,
            }
        )
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _plot(timeline: Timeline, report: Any, swaps: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bg, panel, grid, text = "#111217", "#181b1f", "#2c3235", "#ccccdc"
    plt.rcParams.update(
        {
            "figure.facecolor": bg,
            "axes.facecolor": panel,
            "axes.edgecolor": grid,
            "axes.labelcolor": text,
            "axes.titlecolor": text,
            "xtick.color": text,
            "ytick.color": text,
            "grid.color": grid,
            "text.color": text,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.titlelocation": "left",
            "legend.facecolor": panel,
            "legend.edgecolor": grid,
            "legend.fontsize": 8,
        }
    )
    fig, axes = plt.subplots(
        4, 1, figsize=(10, 8.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 1, 3]}
    )
    end = max(s.at for s in timeline.scrapes)
    # requests/s by version, 200 ms bins
    width = 0.2
    bins = int(end / width) + 1
    versions = sorted({o.version for o in report.outcomes if o.version})
    series = {v: [0.0] * bins for v in versions}
    failed = [0.0] * bins
    for o in report.outcomes:
        i = math.floor((o.started + o.seconds - timeline.t0) / width)
        if 0 <= i < bins:
            if o.error is None and o.version:
                series[o.version][i] += 1 / width
            elif o.error is not None:
                failed[i] += 1 / width
    xs = [i * width for i in range(bins)]
    palette = ["#73bf69", "#5794f2", "#ff9830", "#b877d9"]
    axes[0].stackplot(
        xs,
        *[series[v] for v in versions],
        labels=[f"version {v}" for v in versions],
        colors=palette[: len(versions)],
        alpha=0.85,
        step="post",
    )
    if any(failed):
        axes[0].step(xs, failed, where="post", color="#f2495c", label="failed")
    axes[0].set_title("Requests served / s (client side, by the version that answered)")
    axes[0].legend(loc="lower left", ncol=4)
    # the gauges
    at = [s.at for s in timeline.scrapes]
    axes[1].step(
        at, [s.get("hotswap_active_generation") for s in timeline.scrapes], where="post",
        color="#5794f2", linewidth=2,
    )  # fmt: skip
    axes[1].set_title("hotswap_active_generation")
    axes[1].yaxis.get_major_locator().set_params(integer=True)
    up = [s.get("hotswap_upgrading") for s in timeline.scrapes]
    axes[2].fill_between(at, up, step="post", color="#ff9830", alpha=0.6)
    axes[2].step(at, up, where="post", color="#ff9830", linewidth=1.5)
    axes[2].set_title("hotswap_upgrading")
    axes[2].set_ylim(-0.05, 1.2)
    axes[2].set_yticks([0, 1])
    # phases, stacked, at the scrape that saw each swap end
    seen: set[str] = set()
    for swap in swaps:
        bottom = 0.0
        parts = [(p, swap["phases"][p]) for p in PHASES if p in swap["phases"]]
        if swap["window_ms"] > 0:
            parts.append(("window", swap["window_ms"]))
        for phase, ms in parts:
            label = phase if phase not in seen else None
            seen.add(phase)
            axes[3].bar(
                swap["at"], ms, width=0.5, bottom=bottom, color=COLORS[phase], label=label,
                align="edge",
            )  # fmt: skip
            bottom += ms
        window = f", window {swap['window_ms']:.2f} ms" if swap["window_ms"] > 0 else ""
        axes[3].annotate(
            f"{swap['what']}\n{swap['total_ms']:.0f} ms{window}",
            (swap["at"] + 0.25, bottom),
            ha="center", va="bottom", fontsize=7.5, color=text,
        )  # fmt: skip
    axes[3].set_title("Swap phases (ms): deltas of hotswap_swap_phase_duration_seconds_sum")
    axes[3].legend(loc="upper left", ncol=5)
    top = max((sum(s["phases"].values()) + s["window_ms"] for s in swaps), default=1.0)
    axes[3].set_ylim(0, top * 1.45)
    axes[3].set_xlabel("seconds")
    for ax in axes:
        ax.grid(True, linewidth=0.6)
        for mark, _label in timeline.marks:
            ax.axvline(mark, color="#8e8e8e", linewidth=0.8, linestyle=":")
        ax.set_xlim(0, end)
    fig.suptitle(
        "hotswap: four swaps and a failed upgrade, scraped from /metrics every 100 ms",
        x=0.01, ha="left", fontsize=11, fontweight="bold",
    )  # fmt: skip
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    log(f"wrote {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", default=str(ROOT / "docs" / "img" / "swap-metrics.png"))
    parser.add_argument("--interval", type=float, default=0.1, help="scrape interval (s)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between swaps")
    parser.add_argument("--ab-rounds", type=int, default=4, help="windows without/with scrapes")
    parser.add_argument("--ab-seconds", type=float, default=1.5, help="seconds per window")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    args = parser.parse_args()
    info = machine_info()
    print_machine(info)
    reaper = Reaper()
    with workdir(args.keep) as work:
        try:
            timeline, load, cpu = _run(args, work, reaper)
        finally:
            reaper.reap()
    report = load.report
    swaps = _swaps(timeline)
    print(f"\n{'swap':<40} {'total ms':>9}  phases (ms)")
    for swap in swaps:
        phases = "  ".join(f"{p} {ms:.0f}" for p, ms in swap["phases"].items())
        window = f"  window {swap['window_ms']:.2f}" if swap["window_ms"] else ""
        print(f"{swap['what']:<40} {swap['total_ms']:>9.0f}  {phases}{window}")
    took = [s.took * 1000 for s in timeline.scrapes]
    gaps = [b.at - a.at for a, b in zip(timeline.scrapes, timeline.scrapes[1:], strict=False)]
    print(
        f"\n{len(timeline.scrapes)} scrapes over {cpu['seconds']:.1f} s (interval"
        f" {statistics.median(gaps) * 1000:.0f} ms median): the GET took median"
        f" {statistics.median(took):.1f} ms, p99 {_pct(took, 0.99):.1f} ms, max {max(took):.1f} ms"
    )
    st = timeline.status_ms
    print(
        f"{len(st)} status calls: median {statistics.median(st):.1f} ms, p99"
        f" {_pct(st, 0.99):.1f} ms, max {max(st):.1f} ms"
    )
    print(f"{report.total} requests, {report.failed} failed")
    ab = cpu.pop("ab")
    off, on = ab["off"], ab["on"]
    print(
        f"\nside by side, the same load, {args.ab_rounds} interleaved windows of"
        f" {args.ab_seconds:g} s each, status every 50 ms:"
    )
    print(f"{'':<26} {'status p50':>11} {'p99':>8} {'max':>8} {'supervisor CPU':>16}")
    for name, w in (("no scrapes", off), (f"scrape every {args.interval * 1000:.0f} ms", on)):
        ms = w["status_ms"]
        print(
            f"{name:<26} {statistics.median(ms):>9.1f}ms {_pct(ms, 0.99):>6.1f}ms"
            f" {max(ms):>6.1f}ms {w['cpu_s'] / w['seconds'] * 1000:>10.0f} ms/s"
        )
    per_scrape = (on["cpu_s"] / on["seconds"] - off["cpu_s"] / off["seconds"]) * on["seconds"]
    per_scrape /= max(1, on["scrapes"])
    ratio = statistics.median(on["status_ms"]) / statistics.median(off["status_ms"])
    print(
        f"status median with/without scrapes: {ratio:.2f}x; supervisor CPU per scrape"
        f" {per_scrape * 1000:.1f} ms ({on['scrapes']} scrapes)"
    )
    cpu_json = {**cpu, "side_by_side": ab}
    print(
        "CPU seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "seconds")
        + f" (over {cpu['seconds']:.1f} s of wall time)"
    )
    _plot(timeline, report, swaps, Path(args.png))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"swap-plot-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "machine": info,
                "swaps": swaps,
                "scrape_ms": took,
                "status_ms": st,
                "requests": report.total,
                "failed": report.failed,
                "cpu_s": cpu_json,
            },
            indent=1,
        )
    )
    log(f"wrote {path}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
