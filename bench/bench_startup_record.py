"""What recording start-up code costs a worker: the start-up of a real app with and without
the record a hot upgrade refuses changes to (``startup_code``). Run it on demand (not a test)::

    .venv/bin/python bench/bench_startup_record.py [--rounds 15] [--keep DIR]

About 30 s, most of it the build. The app is the FastAPI fixture (tests/fixtures/fastapiapp),
built with the real ``hotswap build``. Each sample is a fresh interpreter (``python -I``, the
release's ``lib/`` first on ``sys.path``, as a worker) that imports ``app.entry`` untimed and
then times what a worker runs between that import and ready: uvicorn's ``Config.load()``
(it wraps the app in its middleware) and the ASGI lifespan's start-up, driven through the
lifespan protocol until ``lifespan.startup.complete``, and the call of
``startup.of_files`` that builds the record sent with ready. "recorded" runs all of it inside
``hotswap.child.startup.begin()`` / ``end()``, as the bootstrap does; "plain" without. The two
kinds alternate sample by sample, so both see the same machine; medians, and their ratio.
Nothing else runs in the child, so its CPU is all the start-up's: the figures are the child's
own process CPU time (``time.process_time``) and wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import ROOT, log, machine_info, median, print_machine, table, workdir
from bench_hot_workers import build_release

CHILD = r"""
import asyncio, json, os, sys, time
lib, src, record = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
sys.path[:0] = [lib, src]
from hotswap.child import startup
from hotswap.child.runtime import import_target
app = import_target("fastapi_app.main:app")
import uvicorn

async def lifespan_start(asgi):
    inbox = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    started = asyncio.Event()
    async def send(message):
        if message["type"] == "lifespan.startup.complete":
            started.set()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.ensure_future(asgi(scope, inbox.get, send))
    await started.wait()
    return task

loop = asyncio.new_event_loop()
wall, cpu = time.perf_counter(), time.process_time()
if record:
    startup.begin()
config = uvicorn.Config(app, lifespan="on", log_config=None)
config.load()
task = loop.run_until_complete(lifespan_start(config.loaded_app))
if record:
    startup.end()
sent = startup.of_files(lib + os.sep)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
ours = sent.get("fastapi_app.main", [])
print(json.dumps({"wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3,
                  "modules": len(sent), "functions": sum(map(len, sent.values())),
                  "bytes": len(json.dumps(sent)), "lifespan": "lifespan" in ours}))
"""


def sample(lib: Path, record: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(lib), str(ROOT / "src"), "1" if record else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="samples of each kind")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    args = ap.parse_args()
    info = machine_info()
    print_machine(info)
    with workdir(args.keep) as work:
        from hotswap.release.store import ReleaseStore

        rel = build_release(work, "1.0.0", 1, variant=False)
        lib = ReleaseStore(work / "store").unpack(rel.tarball).root / "lib"
        sample(lib, True)  # warm the page cache and the .pyc files
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for i in range(args.rounds):
            for record in (False, True) if i % 2 == 0 else (True, False):
                runs[record].append(sample(lib, record))
        log(f"{args.rounds} samples of each kind")
    rows = []
    for record in (False, True):
        r = runs[record]
        rows.append(
            [
                "recorded" if record else "plain",
                median(x["wall_ms"] for x in r),
                median(x["cpu_ms"] for x in r),
                median(x["functions"] for x in r) if record else "-",
                median(x["bytes"] / 1024 for x in r) if record else "-",
            ]
        )
    plain, rec = rows
    print(
        table(
            ["start-up", "wall ms (median)", "cpu ms (median)", "functions recorded", "record KiB"],
            rows,
        )
    )
    print(
        f"\nrecorded / plain: wall {rec[1] / plain[1]:.2f}x (+{rec[1] - plain[1]:.1f} ms), "
        f"cpu {rec[2] / plain[2]:.2f}x (+{rec[2] - plain[2]:.1f} ms); the lifespan recorded: "
        f"{all(x['lifespan'] for x in runs[True])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
