"""Multi-worker generations against the servers people run: throughput, failed requests per
reload, swap time with 4 workers vs 1, and memory.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_workers.py [--parts throughput,reload,swap] [--runs 7]
        [--seconds 3] [--connections 32] [--wsgi-connections 16] [--threads 8]
        [--reloads 30] [--swaps 7] [--json PATH] [--keep DIR]

About 12 minutes with the defaults. Needs wrk (installed with apt when missing) and gunicorn,
which is installed with pip into a private directory of the work dir (``pip install
--target``) so that nothing else of the bench's venv (uvloop, httptools) leaks into the
servers: every server here runs ``python -I -S`` with the release's ``lib/`` first on
``sys.path``, the same interpreter and the same packages as a hotswap generation.

The apps are the fixture apps, built with the real ``hotswap build``: FastAPI
(tests/fixtures/fastapiapp, ASGI, served by uvicorn with the loop and HTTP protocol it picks
by default: asyncio and h11, since the release lists neither uvloop nor httptools) and Flask
(tests/fixtures/flaskapp, WSGI). For hotswap the releases carry ``workers = N`` in
``[tool.hotswap]``; with a hotswap that does not know the key yet, the releases leave it out
and the tables say "workers unsupported" (every hotswap figure is then one process).

(1) Throughput. All servers of a workload alive at once, each on its own 127.0.0.1 port, with
    two worker processes each: ASGI: hotswap (``workers = 2``), ``gunicorn -w 2 -k
    uvicorn.workers.UvicornWorker``, ``uvicorn --workers 2``; WSGI: hotswap (``workers = 2``,
    a2wsgi on uvicorn, ``threads = T``), ``gunicorn -w 2 --threads T`` (gthread). Like with
    like: no access log anywhere, and no ``date``/``server`` headers (hotswap's adapter sends
    neither; uvicorn gets ``--no-date-header --no-server-header``, gunicorn's UvicornWorker a
    subclass with the same ``CONFIG_KWARGS``; gthread sends its own ``Date``/``Server``).
    Each round runs ``wrk -t1 -cN`` for ``--seconds`` against each server in turn, the order
    rotating every round; figures are medians over ``--runs`` rounds.

    The load generator's CPU: on 2 cores wrk cannot be kept off the servers' cores (pinning
    wrk to one core would leave two workers one core), so it is not pinned; instead the
    server side's CPU time is measured: user + system time of every process of the server's
    tree (supervisor or master and all workers, from /proc/<pid>/stat, before and after each
    run), and "req per server CPU-s" = requests / that time. That rate does not depend on how
    much CPU wrk took; req/s does, and both are printed with their ratio to the best server.
    wrk's own CPU (from ``getrusage(RUSAGE_CHILDREN)`` around each run; it is the only child
    reaped in that window) is printed too, as the share of the two cores it took.

(2) Failed requests per reload, ``--reloads`` reloads under load, the FastAPI app with two
    workers, one method after the other: hotswap ``upgrade`` alternating two releases; gunicorn
    + UvicornWorker with SIGHUP (new workers forked, old ones stopped gracefully); ``uvicorn
    --workers 2`` with SIGHUP (uvicorn's multiprocess supervisor replaces the workers one by
    one, each after its replacement is ready; ``--timeout-worker-healthcheck 30``, since with
    the default 5 s a new worker under this load is not ready in time and uvicorn aborts the
    restart, keeping the old worker: "not completed" counts such reloads). Also the Flask app:
    hotswap vs gunicorn gthread HUP. For gunicorn and uvicorn the release's ``lib/`` is reached
    through a symlink flipped between v1 and v2 before each signal, so new workers import the
    other version just as hotswap's do; a reload counts as done when every worker pid is new and
    each new worker has answered. During the reloads wrk (``-t1 -c32``) saturates the server and
    ``hotswap.testing.load.Load`` (keep-alive and fresh-connection clients) records every
    request's outcome: a request fails if it gets no complete response (refused, reset, closed
    without ``Connection: close``, timed out) or a 5xx; wrk's socket errors and non-2xx are a
    second, separate count.

(3) Swap time, 4 workers vs 1: two supervisors (FastAPI releases with ``workers = 4`` and
    ``workers = 1``) alive at once, ``--swaps`` idle blue-green swaps each, alternating between
    them (one warm-up swap each first, so both releases are unpacked); median total and boot.
    Then memory: VmRSS of the supervisor process itself with 4 workers (target <= 30 MB) and 1,
    each worker's RSS and PSS (``/proc/<pid>/smaps_rollup``: PSS splits shared pages among the
    processes sharing them), and for comparison ``gunicorn -w 4 -k UvicornWorker`` with and
    without ``--preload`` (fork after importing the app: what a preload design would save).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    HOST,
    PY,
    ROOT,
    SOURCE_DATE_EPOCH,
    Reaper,
    SupervisorProc,
    Wrk,
    cpu_seconds,
    ensure_wrk,
    free_port,
    http_get,
    log,
    machine_info,
    median,
    print_machine,
    rss_kb,
    table,
    terminate,
    wait_http,
    workdir,
)
from hotswap.testing.load import Load

FIXTURES = ROOT / "tests" / "fixtures"
FASTAPI = FIXTURES / "fastapiapp"
FLASK = FIXTURES / "flaskapp"
TARGET_RATIO = 0.97
TARGET_SUPERVISOR_RSS_MB = 30.0

# Runs gunicorn or uvicorn's CLI with the release's lib/ first on sys.path, as a hotswap
# generation does (python -I -S, site.addsitedir), then the extra paths (gunicorn's private
# install, the glue module's dir, hotswap's src for the Flask fixture's ``import hotswap``).
RUNNER = r"""
import os, site, sys
lib, extra, prog = sys.argv[1:4]
site.addsitedir(lib)
sys.path.extend(p for p in extra.split(os.pathsep) if p)
sys.argv = [prog] + sys.argv[4:]
if prog == "gunicorn":
    from gunicorn.app.wsgiapp import run
else:
    from uvicorn.main import main as run
sys.exit(run())
"""

GLUE = '''
"""gunicorn's UvicornWorker configured like hotswap's adapter: no access log, no date or
server header (hotswap's uvicorn adapter sends neither)."""
import warnings
warnings.simplefilter("ignore", DeprecationWarning)
from uvicorn.workers import UvicornWorker

class Worker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "auto", "http": "auto", "access_log": False,
                     "server_header": False, "date_header": False}
'''


# -- builds ----------------------------------------------------------------------------------


def workers_supported() -> bool:
    import dataclasses

    from hotswap.release.config import AppConfig

    return any(f.name == "workers" for f in dataclasses.fields(AppConfig))


@dataclass
class Rel:
    version: str
    tarball: Path
    lib: Path
    workers: int  # as configured in the release (1 when unsupported)


def build_release(
    work: Path, source: Path, version: str, tool: dict[str, Any], deps: tuple[str, ...] = ()
) -> Rel:
    """``source`` copied with ``version`` stamped in, ``tool`` keys added to
    ``[tool.hotswap]`` and ``deps`` to its dependencies, built with the real ``hotswap
    build`` and unpacked (for ``lib/``)."""
    from hotswap.release.build import build
    from hotswap.release.store import ReleaseStore

    dest = work / f"project-{source.name}-{version}{'-' + '-'.join(deps) if deps else ''}"
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    pyproject = dest / "pyproject.toml"
    text = re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), flags=re.M)
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in tool.items())
    text = text.replace("[tool.hotswap]\n", "[tool.hotswap]\n" + lines, 1)
    if deps:
        more = "".join(f", {json.dumps(d)}" for d in deps)
        text = re.sub(r"^(dependencies = \[.*)\]$", rf"\1{more}]", text, count=1, flags=re.M)
    pyproject.write_text(text)
    for init in dest.glob("src/*/__init__.py"):
        init.write_text(re.sub(r'VERSION = ".*"', f'VERSION = "{version}"', init.read_text()))
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
    release = ReleaseStore(work / "plain-store").unpack(result.tarball)
    took = time.monotonic() - started
    log(f"built {result.tarball.name} {tool or ''} {deps or ''} in {took:.1f}s")
    return Rel(version, result.tarball, release.root / "lib", int(tool.get("workers", 1)))


def ensure_gunicorn(work: Path) -> Path:
    """gunicorn installed into ``work/gunicorn-site`` (pip --target), alone."""
    site = work / "gunicorn-site"
    if not (site / "gunicorn").is_dir():
        log("installing gunicorn into " + str(site))
        subprocess.run(
            [PY, "-m", "pip", "install", "-q", "--target", str(site), "gunicorn>=22"],
            check=True,
            timeout=300,
        )
    return site


# -- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = _stat(int(entry.name))
                if int(fields[1]) == pid and fields[0] != "Z":
                    out.append(int(entry.name))
    return sorted(out)


def tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


THROUGHPUT_COLUMNS = [
    "workload",
    "server",
    "req/s",
    "ratio",
    "req per server CPU-s",
    "ratio",
    "busiest process % of server CPU",
    "wrk CPU % of 2 cores",
    "errors",
]


def answered_by_all(port: int, pids: set[int], timeout: float = 15.0) -> bool:
    """Fresh connections until every pid in ``pids`` has answered one."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pids <= seen:
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, body = http_get(port, timeout=5.0)
            if status == 200 and "pid" in body:
                seen.add(int(body["pid"]))
    return pids <= seen


class Server:
    """One server on its own port; :attr:`root` is the pid whose tree does the serving."""

    name = ""
    workers = 2

    def __init__(self, reaper: Reaper, work: Path, port: int) -> None:
        self.reaper = reaper
        self.work = work
        self.port = port

    @property
    def root(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def reload(self, i: int) -> dict[str, Any]:
        raise NotImplementedError

    def worker_pids(self) -> list[int]:
        return [p for p in children(self.root) if "resource_tracker" not in _cmdline(p)]


class Hotswap(Server):
    def __init__(
        self, reaper: Reaper, work: Path, port: int, name: str, releases: list[Rel]
    ) -> None:
        super().__init__(reaper, work, port)
        self.name = name
        self.releases = releases
        self.workers = releases[0].workers
        self.sup = SupervisorProc(
            reaper, releases[0].tarball, port, work / f"state-{name}-{port}", work / f"{name}.log"
        )

    @property
    def root(self) -> int:
        return self.sup.pid

    def start(self, timeout: float = 30.0) -> None:
        self.sup.start()
        deadline = time.monotonic() + timeout  # serving starts at cutover; the initial
        while self.sup.status().get("upgrading"):  # swap still commits after it
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: the initial boot did not finish")
            time.sleep(0.05)
        self.wait_workers()

    def wait_workers(self, timeout: float = 30.0) -> list[int]:
        """The active generation's worker pids, once as many as configured are up (from
        ``status`` when it lists workers, else the supervisor's child processes)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            if len(pids) >= self.workers or time.monotonic() > deadline:
                return pids
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        status = self.sup.status()
        self.sup.note_generations(status)
        active = status.get("active") or {}
        if "workers" in active:
            pids = [int(w["pid"]) for w in active["workers"] if w.get("pid")]
            for pid in pids:
                self.reaper.add_pid(pid, str(self.sup.state_dir))
            return pids
        return [int(active["pid"])] if active.get("pid") else []

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.worker_pids()
        self.sup.stop()

    def reload(self, i: int) -> dict[str, Any]:
        started = time.monotonic()
        record = self.sup.upgrade(self.releases[(i + 1) % len(self.releases)].tarball)
        return {"total_ms": (time.monotonic() - started) * 1000, "timings": record["timings_ms"]}


class Plain(Server):
    """gunicorn or uvicorn's CLI on the release's lib/ (through a symlink, for reloads)."""

    def __init__(
        self,
        reaper: Reaper,
        work: Path,
        port: int,
        name: str,
        releases: list[Rel],
        argv: list[str],
        extra: list[Path],
        workers: int = 2,
    ) -> None:
        super().__init__(reaper, work, port)
        self.name = name
        self.releases = releases
        self.argv = argv
        self.extra = extra
        self.workers = workers
        self.link = work / f"lib-{name}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _point(self, rel: Rel) -> None:
        tmp = self.link.with_name(self.link.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(rel.lib)
        tmp.replace(self.link)

    def start(self, timeout: float = 60.0) -> None:
        self._point(self.releases[0])
        extra = os.pathsep.join(str(p) for p in self.extra)
        argv = [PY, "-I", "-S", "-B", "-c", RUNNER, str(self.link), extra, *self.argv]
        with open(self.work / f"{self.name}.log", "ab") as out:
            self.proc = self.reaper.add(
                subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=self.work,
                )
            )
        wait_http(self.port, timeout)
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < self.workers and time.monotonic() < deadline:
            time.sleep(0.05)
        if not answered_by_all(self.port, set(self.worker_pids())):
            raise RuntimeError(f"{self.name}: not every worker answered")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=40.0)

    def reload(self, i: int, timeout: float = 90.0) -> dict[str, Any]:
        started = time.monotonic()
        old = set(self.worker_pids())
        self._point(self.releases[(i + 1) % len(self.releases)])
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = started + timeout
        while time.monotonic() < deadline:
            now = set(self.worker_pids())
            if len(now) == self.workers and not now & old:
                break
            time.sleep(0.01)
        else:  # uvicorn aborts a restart whose new worker is not ready in time
            log(f"{self.name}: reload {i + 1}: workers not all replaced within {timeout}s")
            return {"total_ms": (time.monotonic() - started) * 1000, "done": False}
        ok = answered_by_all(self.port, now)
        return {"total_ms": (time.monotonic() - started) * 1000, "done": True, "answered": ok}


def gunicorn_argv(port: int, app: str, workers: int, *more: str) -> list[str]:
    return [
        "gunicorn",
        app,
        "-w",
        str(workers),
        "--bind",
        f"{HOST}:{port}",
        "--backlog",
        "4096",
        "--graceful-timeout",
        "10",
        "--log-level",
        "warning",
        *more,
    ]


def uvicorn_argv(port: int, app: str, workers: int) -> list[str]:
    return [
        "uvicorn",
        app,
        "--workers",
        str(workers),
        "--host",
        HOST,
        "--port",
        str(port),
        "--backlog",
        "4096",
        "--no-access-log",
        "--no-date-header",
        "--no-server-header",
        "--timeout-graceful-shutdown",
        "10",
        "--timeout-worker-healthcheck",  # default 5 s: under load a new worker misses it
        "30",
        "--log-level",
        "warning",
    ]


# -- (1) throughput --------------------------------------------------------------------------


def run_throughput(
    reaper: Reaper,
    wrk: str,
    servers: dict[str, Server],
    connections: int,
    args: argparse.Namespace,
    close: bool,
) -> dict[str, dict[str, list[float]]]:
    """Rounds of one wrk run per server, rotating order. ``close``: every request on a new
    connection (``Connection: close``), else wrk's keep-alive connections."""
    names = list(servers)
    cells: dict[str, dict[str, list[float]]] = {
        n: {"rps": [], "per_cpu": [], "wrk_share": [], "busiest": [], "errors": []} for n in names
    }
    for r in range(args.runs):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            server = servers[name]
            pids = tree(server.root)
            cpu0 = {pid: tree_cpu([pid]) for pid in pids}
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            run = Wrk(reaper, wrk, server.port, connections=connections, seconds=args.seconds)
            if close:
                run.argv[-1:-1] = ["-H", "Connection: close"]
            out = run.run()
            wall = time.monotonic() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            per = {pid: tree_cpu([pid]) - c for pid, c in cpu0.items()}
            used = sum(per.values())
            wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            cell = cells[name]
            cell["rps"].append(out.rps)
            cell["per_cpu"].append(out.requests / used if used > 0 else float("nan"))
            cell["wrk_share"].append(wrk_cpu / wall / 2 * 100)
            cell["busiest"].append(max(per.values()) / used * 100 if used > 0 else float("nan"))
            cell["errors"].append(float(out.errors))
        log(f"throughput round {r + 1}/{args.runs} done")
    return cells


def throughput_rows(workload: str, cells: dict[str, dict[str, list[float]]]) -> list[list[Any]]:
    best_rps = max(median(c["rps"]) for c in cells.values())
    best_cpu = max(median(c["per_cpu"]) for c in cells.values())
    rows = []
    for name, c in cells.items():
        rps, per_cpu = median(c["rps"]), median(c["per_cpu"])
        rows.append(
            [
                workload,
                name,
                rps,
                rps / best_rps,
                per_cpu,
                per_cpu / best_cpu,
                median(c["busiest"]),
                median(c["wrk_share"]),
                int(sum(c["errors"])),
            ]
        )
    return rows


# -- (2) failed requests per reload ----------------------------------------------------------


def run_reloads(
    reaper: Reaper, wrk: str | None, server: Server, args: argparse.Namespace
) -> dict[str, Any]:
    log(f"reloads: {server.name} on port {server.port}")
    server.start()
    records: list[dict[str, Any]] = []
    aborted = None
    load = Load(
        HOST, server.port, keepalive=4, fresh=2, timeout=10.0, max_seconds=args.reloads * 20 + 60
    )
    wrk_run = None
    try:
        if wrk is not None:
            wrk_run = Wrk(
                reaper, wrk, server.port, connections=32, seconds=args.reloads * 20 + 30
            ).start()
        load.start()
        load.wait_requests(100, timeout=10)
        for i in range(args.reloads):
            try:
                records.append(server.reload(i))
            except Exception as e:  # keep what was measured
                aborted = f"reload {i + 1}: {type(e).__name__}: {e}"
                log(f"{server.name}: {aborted}")
                break
            load.wait_requests(50, timeout=5)
            if (i + 1) % 10 == 0:
                log(f"{server.name}: {i + 1} reloads, {load.report.failed} failed so far")
    finally:
        report = load.stop()
        wrk_result = wrk_run.stop() if wrk_run is not None else None
        server.stop()
    failed = report.errors
    kinds = Counter(f"{o.kind}: {(o.error or '').split(':', 1)[0]}" for o in failed)
    n = len(records)
    return {
        "server": server.name,
        "workers": server.workers,
        "reloads": n,
        "aborted": aborted,
        "requests": report.total,
        "failed": len(failed),
        "failed_per_reload": len(failed) / n if n else float("nan"),
        "error_kinds": dict(kinds.most_common()),
        "error_examples": sorted({o.error or "" for o in failed})[:5],
        "versions": dict(report.versions),
        "reload_ms_median": median(float(r["total_ms"]) for r in records),
        "not_done": sum(1 for r in records if r.get("done") is False),
        "wrk_requests": wrk_result.requests if wrk_result else 0,
        "wrk_errors": wrk_result.errors if wrk_result else 0,
        "wrk_socket_errors": wrk_result.socket_errors if wrk_result else {},
    }


# -- (3) swap time and memory ----------------------------------------------------------------


def process_memory(pids: list[int]) -> list[dict[str, Any]]:
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            out.append({"pid": pid, "rss_kb": rss_kb(pid)["VmRSS"], "pss_kb": pss_kb(pid)})
    return out


def run_swaps(sups: dict[str, Hotswap], swaps: int) -> dict[str, Any]:
    results: dict[str, Any] = {name: {"total": [], "boot": [], "records": []} for name in sups}
    for sup in sups.values():  # warm-up: both releases unpacked, caches warm
        sup.reload(0)
        sup.reload(1)
    for i in range(swaps):
        for name, sup in sups.items():
            rec = sup.reload(i)
            t = rec["timings"]
            results[name]["total"].append(rec["total_ms"])
            results[name]["boot"].append(float(t.get("boot", float("nan"))))
            results[name]["records"].append(t)
        log(f"swap {i + 1}/{swaps} done")
    for name, sup in sups.items():
        pids = sup.wait_workers()
        results[name]["supervisor_rss_kb"] = rss_kb(sup.root)["VmRSS"]
        results[name]["supervisor_hwm_kb"] = rss_kb(sup.root)["VmHWM"]
        results[name]["supervisor_pss_kb"] = pss_kb(sup.root)
        results[name]["workers"] = process_memory(pids)
    return results


def gunicorn_memory(
    reaper: Reaper, work: Path, rel: Rel, extra: list[Path], workers: int, preload: bool
) -> dict[str, Any]:
    name = f"gunicorn-w{workers}{'-preload' if preload else ''}"
    more = ["-k", "bench_workers_glue.Worker"] + (["--preload"] if preload else [])
    server = Plain(
        reaper,
        work,
        free_port(),
        name,
        [rel],
        gunicorn_argv(0, "fastapi_app.main:app", workers, *more),
        extra,
        workers,
    )
    server.argv = gunicorn_argv(server.port, "fastapi_app.main:app", workers, *more)
    server.start()
    try:
        return {
            "master": process_memory([server.root])[0],
            "workers": process_memory(server.worker_pids()),
        }
    finally:
        server.stop()


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="throughput,reload,swap")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wsgi-connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--reloads", type=int, default=30)
    parser.add_argument(
        "--reload-servers",
        default="hotswap,gunicorn-uvicorn,uvicorn-workers,hotswap-wsgi,gunicorn-gthread",
    )
    parser.add_argument("--swaps", type=int, default=7)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    wrk = ensure_wrk()
    if wrk is None and parts & {"throughput"}:
        log("wrk is needed for the throughput part")
        return 1
    info = machine_info()
    supported = workers_supported()
    info["workers"] = "supported" if supported else "unsupported by this hotswap (1 process)"
    print_machine(info)
    summary: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    reaper = Reaper()
    out: list[str] = []

    def wkey(n: int) -> dict[str, Any]:
        return {"workers": n} if supported else {}

    try:
        with workdir(args.keep) as work:
            gsite = ensure_gunicorn(work)
            (work / "bench_workers_glue.py").write_text(GLUE)
            extra = [gsite, work, ROOT / "src"]
            fa2 = [build_release(work, FASTAPI, v, wkey(2)) for v in ("1.0.0", "2.0.0")]
            fl2 = [
                build_release(work, FLASK, v, wkey(2) | {"threads": args.threads})
                for v in ("1.0.0", "2.0.0")
            ]

            def asgi_servers() -> dict[str, Server]:
                p1, p2, p3 = free_port(), free_port(), free_port()
                return {
                    "hotswap": Hotswap(reaper, work, p1, "hotswap", fa2),
                    "gunicorn-uvicorn": Plain(
                        reaper,
                        work,
                        p2,
                        "gunicorn-uvicorn",
                        fa2,
                        gunicorn_argv(
                            p2, "fastapi_app.main:app", 2, "-k", "bench_workers_glue.Worker"
                        ),
                        extra,
                    ),
                    "uvicorn-workers": Plain(
                        reaper,
                        work,
                        p3,
                        "uvicorn-workers",
                        fa2,
                        uvicorn_argv(p3, "fastapi_app.main:app", 2),
                        extra,
                    ),
                }

            def wsgi_servers(httptools: list[Rel] | None = None) -> dict[str, Server]:
                p1, p2 = free_port(), free_port()
                more: dict[str, Server] = {}
                if httptools:
                    name = "hotswap-wsgi+httptools"
                    more[name] = Hotswap(reaper, work, free_port(), name, httptools)
                return more | {
                    "hotswap-wsgi": Hotswap(reaper, work, p1, "hotswap-wsgi", fl2),
                    "gunicorn-gthread": Plain(
                        reaper,
                        work,
                        p2,
                        "gunicorn-gthread",
                        fl2,
                        gunicorn_argv(p2, "flask_app.app:app", 2, "--threads", str(args.threads)),
                        extra,
                    ),
                }

            if "throughput" in parts and wrk is not None:
                rows: list[list[Any]] = []
                # the Flask release as built, plus one that also lists httptools (uvicorn
                # then parses HTTP with it instead of h11; gunicorn has its own parser)
                fl_ht = [
                    build_release(
                        work, FLASK, "1.0.1", wkey(2) | {"threads": args.threads}, ("httptools",)
                    )
                ]
                for workload, make, conns in (
                    ("ASGI (FastAPI)", asgi_servers, args.connections),
                    ("WSGI (Flask)", lambda: wsgi_servers(fl_ht), args.wsgi_connections),
                ):
                    servers = make()
                    try:
                        for server in servers.values():
                            server.start()
                        for close in (False, True):
                            label = f"{workload}, {'new connection' if close else 'keep-alive'}"
                            cells = run_throughput(reaper, wrk, servers, conns, args, close)
                            rows += throughput_rows(label, cells)
                            summary[f"throughput/{label}"] = cells
                    finally:
                        for server in servers.values():
                            with contextlib.suppress(Exception):
                                server.stop()
                out.append(
                    f"\n(1) Throughput, 2 workers each, wrk -t1 -c{args.connections} (ASGI) / "
                    f"-c{args.wsgi_connections} (WSGI), {args.seconds:g} s x {args.runs} "
                    f"rounds, medians; threads {args.threads} (WSGI)\n"
                )
                out.append(
                    table(
                        THROUGHPUT_COLUMNS,
                        rows,
                        digits=2,
                    )
                )

            if "reload" in parts:
                results = []
                wanted = args.reload_servers.split(",")
                pool = {**asgi_servers(), **wsgi_servers()}
                for name in wanted:
                    results.append(run_reloads(reaper, wrk, pool[name], args))
                summary["reload"] = results
                out.append(
                    f"\n(2) Failed requests per reload, {args.reloads} reloads under load "
                    f"(wrk -t1 -c32 + Load 4 keep-alive, 2 fresh), 2 workers\n"
                )
                out.append(
                    table(
                        [
                            "server",
                            "reloads",
                            "not completed",
                            "Load requests",
                            "failed",
                            "failed/reload",
                            "reload ms (median)",
                            "wrk requests",
                            "wrk errors",
                            "versions seen",
                        ],
                        [
                            [
                                r["server"],
                                r["reloads"],
                                r["not_done"],
                                r["requests"],
                                r["failed"],
                                r["failed_per_reload"],
                                r["reload_ms_median"],
                                r["wrk_requests"],
                                r["wrk_errors"],
                                len(r["versions"]),
                            ]
                            for r in results
                        ],
                        digits=1,
                    )
                )
                for r in results:
                    if r["failed"] or r["aborted"]:
                        out.append(f"  {r['server']}: {r['error_kinds']} {r['aborted'] or ''}")
                        for e in r["error_examples"][:3]:
                            out.append(f"    e.g. {e}")

            if "swap" in parts:
                fa1 = [build_release(work, FASTAPI, v, wkey(1)) for v in ("1.1.0", "2.1.0")]
                fa4 = [build_release(work, FASTAPI, v, wkey(4)) for v in ("1.4.0", "2.4.0")]
                sups = {
                    "workers=4": Hotswap(reaper, work, free_port(), "hotswap-w4", fa4),
                    "workers=1": Hotswap(reaper, work, free_port(), "hotswap-w1", fa1),
                }
                try:
                    for sup in sups.values():
                        sup.start()
                    swaps = run_swaps(sups, args.swaps)
                finally:
                    for sup in sups.values():
                        with contextlib.suppress(Exception):
                            sup.stop()
                mem = {
                    "no preload": gunicorn_memory(reaper, work, fa2[0], extra, 4, False),
                    "--preload": gunicorn_memory(reaper, work, fa2[0], extra, 4, True),
                }
                summary["swap"] = swaps
                summary["gunicorn_memory"] = mem
                out.append(
                    f"\n(3) Swap time, idle, median of {args.swaps} swaps each "
                    f"(FastAPI app; workers {'as configured' if supported else 'unsupported: 1'})\n"
                )
                out.append(
                    table(
                        ["release", "swap total ms", "boot ms", "min total", "max total"],
                        [
                            [
                                k,
                                median(v["total"]),
                                median(v["boot"]),
                                min(v["total"]),
                                max(v["total"]),
                            ]
                            for k, v in swaps.items()
                        ],
                        digits=0,
                    )
                )
                mrows = []
                for k, v in swaps.items():
                    ws = v["workers"]
                    mrows.append(
                        [
                            f"hotswap {k}",
                            v["supervisor_rss_kb"] / 1024,
                            len(ws),
                            median(w["rss_kb"] / 1024 for w in ws),
                            median(w["pss_kb"] / 1024 for w in ws),
                            (sum(w["pss_kb"] for w in ws) + v["supervisor_pss_kb"]) / 1024,
                        ]
                    )
                for k, g in mem.items():
                    ws = g["workers"]
                    mrows.append(
                        [
                            f"gunicorn -w 4 UvicornWorker, {k}",
                            g["master"]["rss_kb"] / 1024,
                            len(ws),
                            median(w["rss_kb"] / 1024 for w in ws),
                            median(w["pss_kb"] / 1024 for w in ws),
                            (sum(w["pss_kb"] for w in ws) + g["master"]["pss_kb"]) / 1024,
                        ]
                    )
                out.append(
                    "\nMemory (MiB): the supervisor / master process itself, and per worker\n"
                )
                out.append(
                    table(
                        [
                            "server",
                            "supervisor/master RSS",
                            "workers",
                            "worker RSS (median)",
                            "worker PSS (median)",
                            "total PSS (all processes)",
                        ],
                        mrows,
                        digits=1,
                    )
                )
                sup_mb = swaps["workers=4"]["supervisor_rss_kb"] / 1024
                out.append(
                    f"supervisor RSS with 4 workers {sup_mb:.1f} MiB "
                    f"(target <= {TARGET_SUPERVISOR_RSS_MB:g})"
                )
    finally:
        reaper.reap()
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
