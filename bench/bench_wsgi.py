"""WSGI bridges on uvicorn, side by side: which one serves a WSGI app in a hotswap generation.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_wsgi.py [--runs 7] [--seconds 3] [--connections 16]
        [--threads 8] [--json PATH]

About 3 minutes with the defaults. Needs flask, a2wsgi and asgiref (the dev extra) and wrk
(installed with apt when missing).

The same Flask app (``/`` answers a small JSON; ``/io`` sleeps 10 ms first, like a view
waiting on a database) is served by one uvicorn process per bridge, all alive at once, each on
its own 127.0.0.1 port, same ``uvicorn.Config`` (the loop and HTTP protocol uvicorn picks by
default, no access log, no lifespan):

- ``a2wsgi``: ``a2wsgi.WSGIMiddleware(app, workers=T)``, a pool of T threads;
- ``asgiref``: ``asgiref.wsgi.WsgiToAsgi(app)`` (what Django's and Flask's docs suggest; it
  runs every request through ``sync_to_async(thread_sensitive=True)``, i.e. one thread);
- ``uvicorn``: uvicorn's own ``WSGIMiddleware(app, workers=T)`` (deprecated by uvicorn in favour
  of a2wsgi).

Each round runs ``wrk -t1 -cN`` for ``--seconds`` against each server in turn, the order
rotating every round; figures are medians over ``--runs`` rounds, and the ratio is to the best
bridge of that workload. The load generator's CPU: wrk has one thread, so it takes at most one
of the two cores, and only one server is loaded at a time; the servers' own CPU time per
request (user + system, from /proc/<pid>/stat, over the run) is printed beside req/s and does
not depend on how much CPU wrk took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from _common import (
    PY,
    Reaper,
    Wrk,
    cpu_seconds,
    ensure_wrk,
    free_port,
    log,
    machine_info,
    median,
    print_machine,
    table,
    terminate,
    wait_http,
    workdir,
)

BRIDGES = ("a2wsgi", "asgiref", "uvicorn")
WORKLOADS = {"hello": "/", "io-10ms": "/io"}

SERVER = textwrap.dedent(
    """
    import sys, time, warnings
    import uvicorn
    from flask import Flask, jsonify

    bridge, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    flask_app = Flask("bench")

    @flask_app.get("/")
    def index():
        return jsonify(hello="world", n=42)

    @flask_app.get("/io")
    def io():
        time.sleep(0.01)
        return jsonify(hello="world", n=42)

    if bridge == "a2wsgi":
        from a2wsgi import WSGIMiddleware
        app = WSGIMiddleware(flask_app, workers=threads)
    elif bridge == "asgiref":
        from asgiref.wsgi import WsgiToAsgi
        app = WsgiToAsgi(flask_app)
    else:
        warnings.simplefilter("ignore", DeprecationWarning)
        from uvicorn.middleware.wsgi import WSGIMiddleware
        app = WSGIMiddleware(flask_app, workers=threads)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off", interface="asgi3", backlog=4096)
    """
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep")
    args = parser.parse_args()
    wrk = ensure_wrk()
    if wrk is None:
        log("wrk is needed")
        return 1
    info = machine_info()
    print_machine(info)
    reaper = Reaper()
    results: dict[str, dict[str, list[float]]] = {
        f"{w}/{b}": {"rps": [], "cpu_us": [], "errors": []} for w in WORKLOADS for b in BRIDGES
    }
    try:
        with workdir(args.keep) as work:
            script = work / "server.py"
            script.write_text(SERVER)
            servers: dict[str, tuple[subprocess.Popen[Any], int]] = {}
            for bridge in BRIDGES:
                port = free_port()
                proc = reaper.add(
                    subprocess.Popen([PY, str(script), bridge, str(port), str(args.threads)])
                )
                servers[bridge] = (proc, port)
            for _proc, port in servers.values():
                wait_http(port)
            for r in range(args.runs):
                order = BRIDGES[r % len(BRIDGES) :] + BRIDGES[: r % len(BRIDGES)]
                for workload, path in WORKLOADS.items():
                    for bridge in order:
                        proc, port = servers[bridge]
                        before = cpu_seconds(proc.pid)
                        out = Wrk(
                            reaper, wrk, port, connections=args.connections,
                            seconds=args.seconds, path=path,
                        ).run()  # fmt: skip
                        used = cpu_seconds(proc.pid) - before
                        cell = results[f"{workload}/{bridge}"]
                        cell["rps"].append(out.rps)
                        cell["cpu_us"].append(used / max(1, out.requests) * 1e6)
                        cell["errors"].append(float(out.errors))
                log(f"round {r + 1}/{args.runs} done")
            for proc, _port in servers.values():
                terminate(proc)
    finally:
        reaper.reap()
    rows = []
    summary: dict[str, Any] = {"machine": info, "args": vars(args) | {"json": str(args.json)}}
    for workload in WORKLOADS:
        best = max(median(results[f"{workload}/{b}"]["rps"]) for b in BRIDGES)
        for bridge in BRIDGES:
            cell = results[f"{workload}/{bridge}"]
            rps = median(cell["rps"])
            rows.append(
                [workload, bridge, rps, rps / best, median(cell["cpu_us"]), sum(cell["errors"])]
            )
            summary[f"{workload}/{bridge}"] = {
                "rps_median": rps,
                "ratio_to_best": rps / best,
                "cpu_us_per_request_median": median(cell["cpu_us"]),
                "rps_runs": cell["rps"],
            }
    print(
        f"\nFlask behind each bridge on uvicorn, wrk -t1 -c{args.connections}, "
        f"{args.seconds:g} s x {args.runs} rounds, {args.threads} threads\n"
    )
    print(
        table(
            ["workload", "bridge", "req/s (median)", "ratio to best", "server CPU us/req",
             "errors"],
            rows,
            digits=2,
        )
    )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
