"""WSGI-native servers inside a worker vs hotswap's uvicorn + a2wsgi vs gunicorn gthread.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_wsgi_servers.py [--runs 5] [--seconds 3] [--connections 16]
        [--threads 8] [--servers ...] [--json PATH]

About 6 minutes with the defaults. Needs wrk (installed with apt when missing); gunicorn,
waitress and cheroot are installed into the work dir with pip (--target), each alone.

The question: which server should a hotswap worker run for a WSGI app. Every candidate must
serve a listening socket that is ALREADY BOUND by someone else (the supervisor owns the
listeners), so each candidate here runs the way a hotswap generation would: a parent process
binds 127.0.0.1:PORT and listens (backlog 4096), then spawns two worker processes that inherit
the fd (``pass_fds``) and serve on it with ``threads`` threads each:

- ``waitress``: ``waitress.create_server(app, sockets=[sock], threads=T)``, ``.run()``;
- ``cheroot``: ``cheroot.wsgi.Server`` with ``prepare`` given the inherited socket instead of
  binding one (cheroot's own ``prepare`` binds, or takes fd 3 under systemd activation);
- ``gthread-direct``: gunicorn's ``ThreadWorker`` (the gthread worker) constructed and run in
  the worker process itself on the inherited fd, without gunicorn's arbiter;

beside, in the same rounds: ``hotswap-wsgi`` (``hotswap run``, the Flask fixture release with
``workers = 2``, ``threads = T``: uvicorn + a2wsgi), ``hotswap-waitress`` (the same with
``server = "waitress"``: hotswap's waitress adapter) and ``gunicorn-gthread`` (``gunicorn -w 2
--threads T``, its own arbiter binding the port). All run ``python -I -S`` with the same
release's ``lib/`` first on ``sys.path`` (tests/fixtures/flaskapp built by ``hotswap build``).

Load and accounting are bench_workers.py's: ``wrk -t1 -cN``, keep-alive and ``Connection:
close`` (new connection per request), the order rotating every round, medians; **req per
server CPU-s** = requests / (user + system CPU of every process of the server's tree, from
/proc/<pid>/stat), which does not depend on wrk's CPU (wrk is not pinned on 2 cores; its own
CPU is printed as a share of the two cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import (
    PY,
    Reaper,
    ensure_wrk,
    free_port,
    log,
    machine_info,
    print_machine,
    table,
    workdir,
)
from bench_workers import (
    FLASK,
    ROOT,
    THROUGHPUT_COLUMNS,
    Hotswap,
    Plain,
    Rel,
    Server,
    build_release,
    gunicorn_argv,
    run_throughput,
    throughput_rows,
)

CANDIDATES = ("waitress", "cheroot", "gthread-direct")
PACKAGES = {"waitress": "waitress>=3", "cheroot": "cheroot>=10", "gthread-direct": "gunicorn>=22"}

# The parent: binds and listens like the supervisor, spawns two workers inheriting the fd,
# forwards SIGTERM to them and exits when they do.
PARENT = r"""
import os, signal, socket, subprocess, sys
lib, extra, kind, port, threads, workers, worker_src = sys.argv[1:8]
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(port)))
sock.listen(4096)
fd = sock.fileno()
kids = [subprocess.Popen([sys.executable, "-I", "-S", "-B", "-c", worker_src, lib, extra, kind,
                          str(fd), threads], pass_fds=[fd]) for _ in range(int(workers))]
def stop(*_):
    for k in kids:
        k.terminate()
signal.signal(signal.SIGTERM, stop)
for k in kids:
    k.wait()
"""

WORKER = r"""
import os, site, socket, sys
lib, extra, kind, fd, threads = sys.argv[1:6]
site.addsitedir(lib)
sys.path.extend(p for p in extra.split(os.pathsep) if p)
fd, threads = int(fd), int(threads)
from flask_app.app import app
if kind == "waitress":
    import waitress
    sock = socket.socket(fileno=fd)
    server = waitress.create_server(app, sockets=[sock], threads=threads, ident="")
    server.run()
elif kind == "cheroot":
    from cheroot import connections, wsgi
    class Server(wsgi.Server):
        def prepare(self):
            self._interrupt = None
            self.socket = socket.socket(fileno=fd)
            self._connections = connections.ConnectionManager(self)
            self.requests.start()
            self.ready = True
            import time; self._start_time = time.time()
    server = Server(("127.0.0.1", 0), app, numthreads=threads, server_name="")
    server.start()
elif kind == "gthread-direct":
    from gunicorn.app.base import BaseApplication
    from gunicorn import sock as gsock
    from gunicorn.glogging import Logger
    from gunicorn.workers.gthread import ThreadWorker
    class App(BaseApplication):
        def load_config(self):
            self.cfg.set("threads", threads)
            self.cfg.set("loglevel", "warning")
        def load(self):
            return app
    wapp = App()
    log = Logger(wapp.cfg)
    listeners = gsock.create_sockets(wapp.cfg, log, fds=[fd])
    worker = ThreadWorker(0, os.getppid(), listeners, wapp, 30, wapp.cfg, log)
    worker.init_process()
"""


class Candidate(Plain):
    """A parent binding the port and two workers serving the inherited fd with ``kind``."""

    def __init__(
        self,
        reaper: Reaper,
        work: Path,
        port: int,
        kind: str,
        rels: list[Rel],
        extra: list[Path],
        threads: int,
    ) -> None:
        super().__init__(reaper, work, port, kind, rels, [], extra)
        self.kind = kind
        self.threads = threads

    def start(self, timeout: float = 60.0) -> None:
        from _common import wait_http
        from bench_workers import answered_by_all

        self._point(self.releases[0])
        extra = os.pathsep.join(str(p) for p in self.extra)
        argv = [
            PY,
            "-I",
            "-S",
            "-B",
            "-c",
            PARENT,
            str(self.link),
            extra,
            self.kind,
            str(self.port),
            str(self.threads),
            str(self.workers),
            WORKER,
        ]
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
        if not answered_by_all(self.port, set(self.worker_pids())):
            raise RuntimeError(f"{self.name}: not every worker answered")


def ensure(work: Path, kind: str) -> Path:
    site = work / f"{kind}-site"
    if not site.is_dir():
        log(f"installing {PACKAGES[kind]} into {site}")
        subprocess.run(
            [PY, "-m", "pip", "install", "-q", "--target", str(site), PACKAGES[kind]],
            check=True,
            timeout=300,
        )
    return site


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8)
    default = ",".join(("hotswap-wsgi", "hotswap-waitress", "gunicorn-gthread", *CANDIDATES))
    parser.add_argument("--servers", default=default)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep")
    args = parser.parse_args()
    wanted = args.servers.split(",")
    wrk = ensure_wrk()
    if wrk is None:
        log("wrk is needed")
        return 1
    info = machine_info()
    print_machine(info)
    summary: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    reaper = Reaper()
    rows: list[list[Any]] = []
    try:
        with workdir(args.keep) as work:
            fl2 = [build_release(work, FLASK, "1.0.0", {"workers": 2, "threads": args.threads})]
            flw = [
                build_release(
                    work,
                    FLASK,
                    "1.0.1",
                    {"workers": 2, "threads": args.threads, "server": "waitress"},
                )
            ]
            base = [work, ROOT / "src"]
            servers: dict[str, Server] = {}
            for name in wanted:
                port = free_port()
                if name == "hotswap-wsgi":
                    servers[name] = Hotswap(reaper, work, port, name, fl2)
                elif name == "hotswap-waitress":
                    servers[name] = Hotswap(reaper, work, port, name, flw)
                elif name == "gunicorn-gthread":
                    servers[name] = Plain(
                        reaper,
                        work,
                        port,
                        name,
                        fl2,
                        gunicorn_argv(port, "flask_app.app:app", 2, "--threads", str(args.threads)),
                        [ensure(work, "gthread-direct"), *base],
                    )
                else:
                    servers[name] = Candidate(
                        reaper, work, port, name, fl2, [ensure(work, name), *base], args.threads
                    )
            try:
                for server in servers.values():
                    server.start()
                    log(f"{server.name} up on {server.port}")
                for close in (False, True):
                    label = f"WSGI (Flask), {'new connection' if close else 'keep-alive'}"
                    cells = run_throughput(reaper, wrk, servers, args.connections, args, close)
                    rows += throughput_rows(label, cells)
                    summary[label] = cells
            finally:
                for server in servers.values():
                    with contextlib.suppress(Exception):
                        server.stop()
    finally:
        reaper.reap()
    print(
        f"\nWSGI servers, 2 workers each, wrk -t1 -c{args.connections}, {args.seconds:g} s x "
        f"{args.runs} rounds, medians; threads {args.threads}\n"
    )
    print(
        table(
            THROUGHPUT_COLUMNS,
            rows,
            digits=2,
        )
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
