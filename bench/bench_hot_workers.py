"""A hot upgrade of a generation of N workers against one of a single worker, through the
supervisor: the whole upgrade's time, each worker's prepare and window, and failed requests.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_hot_workers.py [--upgrades 15] [--workers 4] [--json PATH]
        [--keep DIR] [--no-load] [--held]

About 1.5 minutes with the defaults, plus about 15 s of builds. The targets (the hot-upgrade
issue): with N = 4 workers the window of each worker stays <= 5 ms, as for one worker, and the
whole upgrade takes at most 1.5x the time of the one-worker upgrade.

The app is the FastAPI fixture (tests/fixtures/fastapiapp), built with the real ``hotswap
build`` four times: a pair of releases with ``workers = 1`` in ``[tool.hotswap]`` and a pair
with ``workers = N``. The two releases of a pair differ in code only: the version stamped into
``fastapi_app/__init__.py`` (``VERSION``, which ``main.py`` imports with ``from fastapi_app
import VERSION``) and the body of the ``/`` route (``X-Version`` set to ``str(VERSION)`` in the
second); same dependencies, same wiring. ``hotswap check`` accepts it both ways, so the
upgrades alternate A -> B -> A ...; each goes to the release that does not run (a hot upgrade
to the release already running is refused with ``same_release``). Each upgrade changes one
module and patches one function (plus the rebinding of ``VERSION`` in ``main``).

With ``--held`` both releases of every pair also bind ``ABOUT = {"version": VERSION}`` in
``main.py``: a dict outside the module namespaces holds the value the upgrade rebinds (not a
copy under its own name, so the upgrade is still accepted), and every worker must find its
holders with a walk of its heap: a reader's early walk looks for them too
(``prepare.early_values``), so it still walks its heap once.

Two supervisors are alive at once, each on its own 127.0.0.1 port: ``workers = 1`` and
``workers = N``. One warm-up hot upgrade each first (it unpacks the second release and imports
the engine's modules into every worker), not counted. Then ``--upgrades`` rounds: in each, one
hot upgrade of each supervisor, the order swapped every round, a 0.3 s pause after each. First
idle (no load), then the same number of rounds under a light load.

What is measured, per upgrade:

- **whole**: the wall time of the control call ``hotswap.hot_upgrade_generation(TARBALL)``
  from this process, which is what ``hotswap hot-upgrade TARBALL --json`` does after its own
  interpreter start-up (the CLI adds only that, the same for both). It includes the
  supervisor's verification of the tarball (its sha256 against the store's index: the release
  is already unpacked), the prepare and commit round trips to every worker, and the
  supervisor making the release current. **supervisor total** is the supervisor's own
  ``total_ms`` of the same upgrade (the record the call returns).
- per worker, from each worker's stats: **prepare** (``prepare_ms``: check and plan while still
  serving), **quiesce** (the wait for the event loop to run the commit) and **window**
  (``window_ms``: requests suspended, from quiescence to the end of the commit; with several
  workers it includes the hold, the wait until every worker has applied it and the supervisor's
  decision has arrived). "max" is the slowest worker of each upgrade, "all" every worker's
  figure pooled; medians and p90 (nearest rank) over the upgrades.
- **span in the workers**: each worker's ``total_ms`` (from loading the two release trees at
  prepare to the end of its commit), the slowest worker's; **supervisor's own** is supervisor
  total minus that span: tarball verification, channel round trips, ``set_current``.
- **whole-heap walks**: ``heap_walks`` summed over the workers of an upgrade: one per worker,
  plus one per reader whose early walk did not look for what holds a value the upgrade
  rebinds.
- CPU per upgrade: user + system time (``/proc/<pid>/stat``, read before and after the call,
  outside the timed part, in clock ticks of 10 ms) of the supervisor process and of all
  workers together; and that CPU spread over ``min(workers, cores)``: the least wall time the
  workers' part can take on this machine when they all work at once.
- the ratio of the N-worker median whole time to the 1-worker one (target <= 1.5), and the
  same ratio of the p90s.

Under load each supervisor gets its own ``hotswap.testing.load.Load`` (2 keep-alive clients and
1 new-connection client, 20 ms think time each: some 100 requests/s per supervisor, 127.0.0.1
only, bounded by ``max_seconds``), both running through the whole loaded phase, so both
supervisors see the same load all the time. A request fails if it gets no complete response or
a 5xx (target: 0). The load generator's CPU: it runs as threads of this process, is light and
identical for both supervisors, and is not subtracted from anything; it is printed (this
process's CPU time over the loaded phase, as % of all cores) so its size can be judged. Its
threads share this process's GIL with the control call, which can delay noticing the answer by
up to one switch interval (5 ms), equally for both. After each phase the bench checks that
every worker of each supervisor runs the expected release and that no worker pid changed (a hot
upgrade keeps the processes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    HOST,
    ROOT,
    SOURCE_DATE_EPOCH,
    Reaper,
    SupervisorProc,
    cpu_seconds,
    free_port,
    log,
    machine_info,
    median,
    pct,
    print_machine,
    table,
    workdir,
)
from hotswap.testing.load import Load

FASTAPI = ROOT / "tests" / "fixtures" / "fastapiapp"
TARGET_WINDOW_MS = 5.0
TARGET_RATIO = 1.5
CALL_TIMEOUT = 60.0  # one hot upgrade, through the control socket
SETTLE = 0.3  # seconds after each upgrade
CORES = len(os.sched_getaffinity(0))
ROUTE_OLD = 'response.headers["X-Version"] = VERSION\n    return Info('
ROUTE_NEW = 'response.headers["X-Version"] = str(VERSION)\n    return Info('
STATE_LINE = "STATE: dict[str, bool] = {}\n"
HELD_LINE = 'ABOUT = {"version": VERSION}  # VERSION held outside the module namespaces\n'


# -- releases --------------------------------------------------------------------------------


@dataclass
class Rel:
    version: str
    tarball: Path
    release_id: str
    workers: int


def build_release(work: Path, version: str, workers: int, variant: bool, held: bool = False) -> Rel:
    """The FastAPI fixture with ``version`` stamped in and ``workers`` in ``[tool.hotswap]``;
    ``variant`` changes the body of the ``/`` route (same behaviour); ``held`` adds a dict
    that holds ``VERSION`` (see ``--held``)."""
    from hotswap.release.build import build

    dest = work / f"project-{version}-w{workers}"
    shutil.copytree(FASTAPI, dest, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    pyproject = dest / "pyproject.toml"
    text = re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), flags=re.M)
    text = text.replace("[tool.hotswap]\n", f"[tool.hotswap]\nworkers = {workers}\n", 1)
    pyproject.write_text(text)
    init = dest / "src" / "fastapi_app" / "__init__.py"
    init.write_text(re.sub(r'VERSION = ".*"', f'VERSION = "{version}"', init.read_text()))
    main = dest / "src" / "fastapi_app" / "main.py"
    if held:
        _replace_once(main, STATE_LINE, STATE_LINE + HELD_LINE, "STATE_LINE")
    if variant:
        _replace_once(main, ROUTE_OLD, ROUTE_NEW, "ROUTE_OLD")
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = SOURCE_DATE_EPOCH
    started = time.monotonic()
    try:
        result = build(dest, work / "dist")
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old
    log(f"built {result.tarball.name} (workers = {workers}) in {time.monotonic() - started:.1f}s")
    return Rel(version, result.tarball, result.manifest.release_id, workers)


def _replace_once(path: Path, old: str, new: str, constant: str) -> None:
    source = path.read_text()
    if old not in source:
        raise RuntimeError(f"{path}: no {old!r}; the fixture changed: update {constant} here")
    path.write_text(source.replace(old, new, 1))


# -- one supervisor ----------------------------------------------------------------------------


@dataclass
class Sample:
    whole_ms: float
    supervisor_ms: float
    workers: list[dict[str, Any]]  # each worker's stats
    supervisor_cpu_ms: float
    workers_cpu_ms: float
    replaced: list[int] = field(default_factory=list)

    def per_worker(self, key: str) -> list[float]:
        return [float(w[key]) for w in self.workers]


class HotSupervisor:
    """A supervisor of ``workers`` workers, hot-upgraded back and forth between two releases."""

    def __init__(self, reaper: Reaper, work: Path, name: str, releases: list[Rel]) -> None:
        self.name = name
        self.releases = releases
        self.reaper = reaper
        self.port = free_port()
        self.sup = SupervisorProc(
            reaper, releases[0].tarball, self.port, work / f"state-{name}", work / f"{name}.log"
        )
        self.current = 0
        self.pids: list[int] = []

    def start(self, timeout: float = 60.0) -> None:
        workers = self.releases[0].workers
        self.sup.start(timeout)
        deadline = time.monotonic() + timeout
        while True:
            status = self.sup.status()
            self.sup.note_generations(status)
            active = status.get("active") or {}
            pids = [int(w["pid"]) for w in active.get("workers", []) if w.get("pid")]
            live = all(w.get("state") == "live" for w in active.get("workers", []))
            if not status.get("upgrading") and len(pids) == workers and live:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {workers} live workers not up: {active}")
            time.sleep(0.05)
        for pid in pids:
            self.reaper.add_pid(pid, str(self.sup.state_dir))
        self.pids = pids

    def _cpu(self) -> tuple[float, float]:
        workers = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                workers += cpu_seconds(pid)
        return cpu_seconds(self.sup.pid), workers

    def hot_upgrade(self) -> Sample:
        import hotswap

        target = self.releases[1 - self.current]
        sup0, work0 = self._cpu()
        started = time.perf_counter()
        record: dict[str, Any] = hotswap.hot_upgrade_generation(
            target.tarball, state_dir=self.sup.state_dir, timeout=CALL_TIMEOUT
        )
        whole = (time.perf_counter() - started) * 1000
        sup1, work1 = self._cpu()
        self.current = 1 - self.current
        stats = record.get("stats") or {}
        workers = stats.get("workers") or [stats]  # one worker: its stats are the record's
        return Sample(
            whole_ms=whole,
            supervisor_ms=float(record["total_ms"]),
            workers=[dict(w) for w in workers],
            supervisor_cpu_ms=(sup1 - sup0) * 1000,
            workers_cpu_ms=(work1 - work0) * 1000,
            replaced=list(stats.get("replaced") or []),
        )

    def check(self) -> list[str]:
        """What is wrong: a worker on another release, a worker pid that changed."""
        status = self.sup.status()
        self.sup.note_generations(status)
        want = self.releases[self.current].release_id
        problems = []
        workers = (status.get("active") or {}).get("workers", [])
        for w in workers:
            if w.get("release") != want:
                problems.append(f"{self.name} worker {w.get('worker')}: {w.get('release')}")
        pids = [int(w["pid"]) for w in workers if w.get("pid")]
        if pids != self.pids:
            problems.append(f"{self.name}: worker pids {self.pids} became {pids}")
        if status.get("current") != want:
            problems.append(f"{self.name}: current is {status.get('current')}, not {want}")
        return problems

    def stop(self) -> None:
        self.sup.stop()


# -- the runs ----------------------------------------------------------------------------------


def run_phase(sups: dict[str, HotSupervisor], upgrades: int, label: str) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in sups}
    names = list(sups)
    for i in range(upgrades):
        for name in names if i % 2 == 0 else names[::-1]:
            samples[name].append(sups[name].hot_upgrade())
            time.sleep(SETTLE)
        done = ", ".join(f"{n} {samples[n][-1].whole_ms:.0f} ms" for n in names)
        log(f"{label}: round {i + 1}/{upgrades}: {done}")
    return samples


def summarize(samples: list[Sample]) -> dict[str, list[float]]:
    """Each measure as one list over the upgrades (or over every worker of every upgrade)."""

    def each(key: str, how: Any) -> list[float]:
        return [how(s.per_worker(key)) for s in samples]

    def pooled(key: str) -> list[float]:
        return [v for s in samples for v in s.per_worker(key)]

    span = each("total_ms", max)
    return {
        "whole": [s.whole_ms for s in samples],
        "supervisor": [s.supervisor_ms for s in samples],
        "prepare max": each("prepare_ms", max),
        "prepare all": pooled("prepare_ms"),
        "quiesce max": each("quiesce_ms", max),
        "window max": each("window_ms", max),
        "window all": pooled("window_ms"),
        "window median": each("window_ms", median),
        "hold max": each("hold_ms", max),
        "shared": each("analysis_shared", sum),
        "early": each("heap_walked_early", sum),
        "walks": each("heap_walks", sum),
        "apply max": [
            max(
                w - h
                for w, h in zip(s.per_worker("window_ms"), s.per_worker("hold_ms"), strict=True)
            )
            for s in samples
        ],
        "span": span,
        "supervisor own": [s.supervisor_ms - w for s, w in zip(samples, span, strict=True)],
        "supervisor cpu": [s.supervisor_cpu_ms for s in samples],
        "workers cpu": [s.workers_cpu_ms for s in samples],
        "cpu floor": [s.workers_cpu_ms / min(len(s.workers), CORES) for s in samples],
    }


MEASURES = [
    ("whole", "whole hot upgrade, control call"),
    ("supervisor", "supervisor total"),
    ("span", "span in the workers (slowest)"),
    ("supervisor own", "supervisor's own (total - span)"),
    ("prepare max", "prepare, slowest worker"),
    ("prepare all", "prepare, every worker"),
    ("quiesce max", "quiesce, slowest worker"),
    ("window max", "window, slowest worker"),
    ("window median", "window, median worker"),
    ("window all", "window, every worker"),
    ("apply max", "of it applying, slowest worker"),
    ("hold max", "of it holding for the others, slowest"),
    ("shared", "workers that read the first one's analysis"),
    ("early", "of them, heap walked while it analysed"),
    ("walks", "whole-heap walks, all workers"),
    ("supervisor cpu", "supervisor CPU"),
    ("workers cpu", "CPU of all workers"),
    ("cpu floor", "CPU of all workers / min(workers, cores)"),
]


COUNTS = ("shared", "early", "walks")  # not times


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def rows_for(
    label: str, n: int, one: dict[str, list[float]], many: dict[str, list[float]]
) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for key, title in MEASURES:
        target = result = ""
        if key == "window max":
            target = f"<= {TARGET_WINDOW_MS:g}"
            result = verdict(median(many[key]) <= TARGET_WINDOW_MS)
        rows.append(
            [label, title + ("" if key in COUNTS else " ms"), median(one[key]), pct(one[key], 0.9),
             median(many[key]), pct(many[key], 0.9), target, result]
        )  # fmt: skip
    ratio = median(many["whole"]) / median(one["whole"])
    ratio90 = pct(many["whole"], 0.9) / pct(one["whole"], 0.9)
    rows.append(
        [label, f"whole, {n} workers / 1", "", "", ratio, ratio90, f"<= {TARGET_RATIO:g}",
         verdict(ratio <= TARGET_RATIO)]
    )  # fmt: skip
    return rows


def build_pairs(work: Path, n: int, held: bool = False) -> dict[str, list[Rel]]:
    """A and B with ``workers = 1``, and with ``workers = n``; B is the variant."""
    return {
        name: [build_release(work, va, w, False, held), build_release(work, vb, w, True, held)]
        for name, w, va, vb in (
            ("workers=1", 1, "1.1.0", "2.1.0"),
            (f"workers={n}", n, "1.4.0", "2.4.0"),
        )
    }


def loaded_phase(
    sups: dict[str, HotSupervisor], upgrades: int
) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    """The rounds again, each supervisor under its own light load; the samples and what the
    loads saw (and what they cost this process)."""
    budget = upgrades * 2 * CALL_TIMEOUT / 4 + 60
    loads = {
        name: Load(
            HOST, sup.port, keepalive=2, fresh=1, pause=0.02, timeout=5.0, max_seconds=budget
        )
        for name, sup in sups.items()
    }
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for load in loads.values():
        load.start()
    try:
        for load in loads.values():
            if not load.wait_requests(20, timeout=15):
                raise RuntimeError("the load got no answers")
        samples = run_phase(sups, upgrades, "light load")
    finally:
        for load in loads.values():
            load.stop()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    seconds = time.monotonic() - t0
    used = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    share = 100 * used / seconds / (os.cpu_count() or 1)
    info: dict[str, Any] = {"seconds": round(seconds, 1), "bench_cpu_pct": round(share, 1)}
    info.update({name: load.report.summary() for name, load in loads.items()})
    return samples, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upgrades", type=int, default=15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--no-load", action="store_true", help="idle only")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep")
    parser.add_argument(
        "--held",
        action="store_true",
        help="releases where a dict holds VERSION too: every reader walks its heap twice",
    )
    args = parser.parse_args()
    n = args.workers
    info = machine_info()
    info.pop("wrk", None)
    print_machine(info)
    summary: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    reaper = Reaper()
    problems: list[str] = []
    phases: dict[str, dict[str, list[Sample]]] = {}
    load_info: dict[str, Any] = {}
    try:
        with workdir(args.keep) as work:
            pairs = build_pairs(work, n, args.held)
            sups = {
                name: HotSupervisor(reaper, work, f"hot-w{rels[0].workers}", rels)
                for name, rels in pairs.items()
            }
            try:
                for sup in sups.values():
                    sup.start()
                for sup in sups.values():  # warm-up
                    sup.hot_upgrade()
                    time.sleep(SETTLE)
                phases["idle"] = run_phase(sups, args.upgrades, "idle")
                for sup in sups.values():
                    problems += sup.check()
                if not args.no_load:
                    phases["light load"], load_info = loaded_phase(sups, args.upgrades)
                    for sup in sups.values():
                        problems += sup.check()
            finally:
                for sup in sups.values():
                    with contextlib.suppress(Exception):
                        sup.stop()
    finally:
        reaper.reap()
    print(report(phases, load_info, n, args.upgrades, problems, summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 1 if problems else 0


def report(
    phases: dict[str, dict[str, list[Sample]]],
    load_info: dict[str, Any],
    n: int,
    upgrades: int,
    problems: list[str],
    summary: dict[str, Any],
) -> str:
    """The table (and ``summary`` filled for --json)."""
    one_name, many_name = "workers=1", f"workers={n}"
    rows: list[list[Any]] = []
    for label, samples in phases.items():
        one, many = summarize(samples[one_name]), summarize(samples[many_name])
        rows += rows_for(label, n, one, many)
        summary[label] = {
            name: {"summary": summarize(s), "samples": [vars(x) for x in s]}
            for name, s in samples.items()
        }
        replaced = [r for s in samples.values() for x in s for r in x.replaced]
        if replaced:
            problems.append(f"{label}: workers replaced after a kept upgrade: {replaced}")
    if load_info:
        summary["load"] = load_info
        for name in (one_name, many_name):
            rep = load_info[name]
            rows.append(
                ["light load", f"failed requests, {name} (of {rep['total']:,})", "", "",
                 rep["failed"], "", "0", verdict(rep["failed"] == 0)]
            )  # fmt: skip
    headers = ["load", "measure", "1 worker median", "p90", f"{n} workers median", "p90"]
    out = [
        f"\nHot upgrade through the supervisor, FastAPI fixture, {upgrades} upgrades per "
        "supervisor and phase (after 1 warm-up), alternating A <-> B; medians and p90",
        table([*headers, "target", "result"], rows, digits=2),
    ]
    if load_info:
        out.append(
            f"light load: {load_info['seconds']} s; the load generator (threads of this "
            f"process) took {load_info['bench_cpu_pct']}% of all cores"
        )
    for label, samples in phases.items():
        out.append(timeline(label, samples))
    out += [f"PROBLEM: {problem}" for problem in problems]
    summary["problems"] = problems
    return "\n".join(out)


# the marks of HotUpgradeStats, in the order a worker passes them
MARKS = ("called", "turn", "taken", "proceed", "start", "analysed", "prepared", "commit",
         "in", "hold", "held", "out", "end")  # fmt: skip


def timeline(label: str, samples: dict[str, list[Sample]]) -> str:
    """When each worker passed each step (HotUpgradeStats.marks: time.perf_counter, one clock
    for every process on Linux), in ms after the first worker was asked to prepare; medians
    over the upgrades, per worker (worker 0 analyses, the others read its analysis)."""
    rows = []
    for name, runs in samples.items():
        per: dict[tuple[int, str], list[float]] = {}
        for x in runs:
            marks = [dict(w.get("marks") or ()) for w in x.workers]
            t0 = min((t for m in marks for t in m.values()), default=None)
            if t0 is None:
                continue
            for i, m in enumerate(marks):
                for step, t in m.items():
                    per.setdefault((i, step), []).append((t - t0) * 1000)
        for i in sorted({i for i, _ in per}):
            cells = [median(per[(i, s)]) if (i, s) in per else "" for s in MARKS]
            rows.append([name, "first" if i == 0 else f"reader {i}", *cells])
    return (
        f"\n{label}: timeline, ms after the first worker was asked (medians; turn/taken: a "
        "reader's snapshot and heap walk on an idle core; proceed: it may read the analysis)\n"
        + table(["", "worker", *MARKS], rows, digits=0)
    )


if __name__ == "__main__":
    sys.exit(main())
