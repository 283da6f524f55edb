"""Hot upgrade: suspension window and total time vs IPython's ``superreload`` and
``importlib.reload``, on the same changes, in the same process. Run on demand (not a test)::

    .venv/bin/python bench/bench_hot.py            # needs ipython in the venv
    .venv/bin/python bench/bench_hot.py --quick    # 10^4 objects, one sample per cell

For each heap size (10^4 and 10^6 extra live objects, each in a fresh worker process) it builds
three identical copies of a 100-module package (about 130 lines each: 12 functions, 3 classes
of 6 methods), one per tool, plus "B" versions in which the first k modules (k = 1, 10, 100)
change a function body and a method body. Then, alternating A → B → A so every sample changes
k modules, it times

- **hotswap**: ``HotUpgrade(old, new)`` prepare + commit; *window* is the suspension window
  from its stats (what a request would wait), *total* everything from reading the releases;
- **superreload**: IPython autoreload's ``superreload(module, old_objects=...)`` on the k
  changed modules, with a fresh ``old_objects`` per sample: its best case (``%autoreload``
  keeps them across reloads and records each object twice per reload, so it slows down with
  every reload of a long session);
- **importlib.reload** on the k changed modules.

The reloaders mutate live modules from their first to their last step, so for them window =
total. Medians of the samples; the machine is shared and noisy, so compare ratios. The last
column says whether a reference taken before the upgrade (a ``from`` import of a function, a
bound method of an existing instance) runs the new code afterwards.
"""

from __future__ import annotations

import argparse
import compileall
import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = 100
CHANGED = (1, 10, 100)
HEAPS = (10_000, 1_000_000)
TOOLS = ("hotswap", "superreload", "importlib.reload")
PKG = {"hotswap": "bench_hs", "superreload": "bench_ip", "importlib.reload": "bench_il"}


def module_source(i: int, variant: str) -> str:
    """One generated module; variant "b" changes one function and one method (and the probes)."""
    lines = [f'"""Generated benchmark module {i}."""', "import functools", f"CONST = {i}"]
    lines.append("CACHE = {}")
    for f in range(12):
        body = f"return y + {f} + CONST"
        if f == 0:
            body = f"return {variant!r}"  # the probe
        elif f == 1 and variant == "b":
            body = f"return y * {f} - CONST"
        lines += [
            f"def func_{f}(x=1):",
            "    y = x * 2",
            "    for _ in range(2):",
            f"        y += {f}",
            f"    {body}",
            "",
        ]
    for c in range(3):
        lines += [f"class Class{c}:", f"    attr = {c}", "    def __init__(self):"]
        lines.append(f"        self.v = {c}")
        for m in range(6):
            body = f"return z + {m}"
            if c == 0 and m == 0:
                body = f"return {variant!r}"
            elif c == 1 and m == 1 and variant == "b":
                body = f"return z * {m}"
            lines += [f"    def method_{m}(self, x=0):", "        z = x + self.attr + self.v"]
            lines.append(f"        {body}")
        lines.append("")
    return "\n".join(lines) + "\n"


def package_files(pkg: str, changed: int) -> dict[str, str]:
    files = {f"{pkg}/__init__.py": ""}
    for i in range(MODULES):
        files[f"{pkg}/mod{i:03d}.py"] = module_source(i, "b" if i < changed else "a")
    return files


def write_plain(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    compileall.compile_dir(str(root), quiet=2)
    return root


# -- the worker: one heap size, every tool and every k -------------------------------------------


class Ballast:
    __slots__ = ("a",)

    def __init__(self, a: int) -> None:
        self.a = a


def worker(
    heap: int,
    reps: int,
    budget: float,
    max_cell: float,
    tools: tuple[str, ...],
    ks: tuple[int, ...],
) -> dict[str, Any]:
    if "superreload" in tools:
        from IPython.extensions.autoreload import superreload

    from hotswap.hot import HotUpgrade
    from hotswap.hot.testing import write_release

    tmp = Path(tempfile.mkdtemp(prefix="bench-hot-"))
    rel: dict[int, Path] = {}
    plain: dict[int, Path] = {}
    for k in (0, *ks):
        rel[k] = write_release(tmp / f"rel{k}", package_files(PKG["hotswap"], k), version=str(k))
        compileall.compile_dir(str(rel[k] / "lib"), quiet=2)
        files = {
            **package_files(PKG["superreload"], k),
            **package_files(PKG["importlib.reload"], k),
        }
        plain[k] = write_plain(tmp / f"plain{k}", files)
    sys.path[:0] = [str(rel[0] / "lib"), str(plain[0])]
    mods: dict[str, list[Any]] = {}
    for tool, pkg in PKG.items():
        if tool not in tools:
            continue
        mods[tool] = [importlib.import_module(f"{pkg}.mod{i:03d}") for i in range(MODULES)]
    ballast = [Ballast(i) if i % 2 else [i] for i in range(heap)]
    gc.collect()
    tracked = len(gc.get_objects())
    cur = dict.fromkeys(TOOLS, 0)  # the tree each package runs: 0 = A, k = B_k
    ran: list[int] = []  # top-level statements the hotswap commits ran in their window

    def switch(tool: str, target: int, changed: list[Any]) -> tuple[float, float]:
        """Move ``tool``'s package to tree ``target``; returns (window ms, total ms)."""
        t0 = time.perf_counter()
        if tool == "hotswap":
            up = HotUpgrade(rel[cur[tool]], rel[target])
            up.prepare()
            stats = up.commit()
            cur[tool] = target
            ran.append(stats.statements_run)
            return stats.window_ms, stats.total_ms
        pkg = sys.modules[PKG[tool]]
        pkg.__path__[:] = [str(plain[target] / PKG[tool])]
        importlib.invalidate_caches()
        old_objects: dict[Any, Any] = {}
        t0 = time.perf_counter()
        for m in changed:
            if tool == "superreload":
                superreload(m, old_objects=old_objects)
            else:
                importlib.reload(m)
        cur[tool] = target
        ms = (time.perf_counter() - t0) * 1000
        return ms, ms

    results: list[dict[str, Any]] = []
    per_module: dict[str, float] = {}  # ms per changed module in the last cell, for estimates
    for k in ks:
        for tool in tools:
            row: dict[str, Any] = {"heap": heap, "tracked": tracked, "changed": k, "tool": tool}
            estimate = per_module.get(tool, 0.0) * k
            if estimate / 1000 > max_cell:
                results.append(
                    {
                        **row,
                        "window_ms": estimate,
                        "total_ms": estimate,
                        "n": 0,
                        "old_refs_updated": None,
                    }
                )
                continue
            changed = mods[tool][:k]
            samples: list[tuple[float, float]] = []
            spent = 0.0
            fresh = False
            for _ in range(reps * 2):
                if samples and spent > budget:
                    break
                target = k if cur[tool] == 0 else 0
                probe, bound = changed[0].func_0, changed[0].Class0().method_0
                gc.collect()  # every sample starts from a heap without garbage cycles
                t0 = time.perf_counter()
                samples.append(switch(tool, target, changed))
                spent += time.perf_counter() - t0
                fresh = probe() == bound() == ("b" if target else "a")
            if cur[tool] != 0:  # back to A before the next cell
                switch(tool, 0, changed)
            ws, ts = [w for w, _ in samples], [t for _, t in samples]
            per_module[tool] = statistics.median(ts) / k
            results.append(
                {
                    **row,
                    "window_ms": statistics.median(ws),
                    "total_ms": statistics.median(ts),
                    "n": len(ws),
                    "old_refs_updated": fresh,
                    "statements_run": max(ran) if tool == "hotswap" and ran else None,
                }
            )
            ran.clear()
    del ballast
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return {"results": results}


# -- the driver ----------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return f"{cpu}, {os.cpu_count()} cpus, load {load}, Python {platform.python_version()}"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| live objects (gc-tracked) | changed modules | tool | window ms | total ms | n "
        "| old refs run new code | statements run in the window |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        heap = f"10^{len(str(r['heap'])) - 1} ({r['tracked']:,})"
        if r["n"] == 0:
            est = f"~{r['window_ms'] / 1000:.0f} s (est.)"
            out.append(f"| {heap} | {r['changed']} | {r['tool']} | {est} | {est} | skipped | | |")
            continue
        refs = "yes" if r["old_refs_updated"] else "no"
        out.append(
            f"| {heap} | {r['changed']} | {r['tool']} "
            f"| {r['window_ms']:.2f} | {r['total_ms']:.1f} | {r['n']} | {refs} "
            f"| {'' if r.get('statements_run') is None else r['statements_run']} |"
        )
    return "\n".join(out)


def ratios(rows: list[dict[str, Any]], ks: tuple[int, ...]) -> str:
    by = {(r["heap"], r["changed"], r["tool"]): r for r in rows}
    out = [
        "| live objects | changed | superreload / hotswap window | reload / hotswap window |",
        "|---|---|---|---|",
    ]
    for heap in sorted({r["heap"] for r in rows}):
        for k in ks:
            hs = by.get((heap, k, "hotswap"))
            if not hs:
                continue
            ip, il = by[(heap, k, "superreload")], by[(heap, k, "importlib.reload")]
            out.append(
                f"| 10^{len(str(heap)) - 1} | {k} | {ip['window_ms'] / hs['window_ms']:.0f}x "
                f"| {il['window_ms'] / hs['window_ms']:.1f}x |"
            )
    heaps = sorted({r["heap"] for r in rows})
    if len(heaps) > 1:
        out += ["", "| changed | hotswap window at 10^6 / at 10^4 | superreload at 10^6 / 10^4 |"]
        out.append("|---|---|---|")
        for k in ks:
            small, big = by[(heaps[0], k, "hotswap")], by[(heaps[-1], k, "hotswap")]
            ips, ipb = by[(heaps[0], k, "superreload")], by[(heaps[-1], k, "superreload")]
            out.append(
                f"| {k} | {big['window_ms'] / small['window_ms']:.2f} "
                f"| {ipb['window_ms'] / ips['window_ms']:.1f} |"
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^4 objects, one sample per cell")
    ap.add_argument("--reps", type=int, default=3, help="A->B->A round trips per cell")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per cell before stopping")
    ap.add_argument(
        "--max-cell",
        type=float,
        default=120.0,
        help="skip a cell whose first sample is estimated to take longer (seconds)",
    )
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument(
        "--changed", default=",".join(map(str, CHANGED)), help="changed-module counts (1,10,100)"
    )
    ap.add_argument("--tools", default=",".join(TOOLS), help="which tools to time")
    ap.add_argument("--heaps", default=",".join(map(str, HEAPS)), help="live objects per worker")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    tools = tuple(t for t in TOOLS if t in args.tools.split(","))
    ks = tuple(int(k) for k in args.changed.split(","))
    if args.worker is not None:
        result = worker(args.worker, args.reps, args.budget, args.max_cell, tools, ks)
        print(json.dumps(result))
        return
    heaps = HEAPS[:1] if args.quick else tuple(int(h) for h in args.heaps.split(","))
    reps = 1 if args.quick else args.reps
    rows: list[dict[str, Any]] = []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    for heap in heaps:
        print(f"[bench_hot] heap 10^{len(str(heap)) - 1} ...", file=sys.stderr, flush=True)
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            str(heap),
            "--reps",
            str(reps),
            "--budget",
            str(args.budget),
            "--max-cell",
            str(args.max_cell),
            "--changed",
            args.changed,
            "--tools",
            args.tools,
        ]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        rows += json.loads(out.stdout.strip().splitlines()[-1])["results"]
    if args.json:
        print(json.dumps(rows, indent=2))
    print(f"machine: {machine()}")
    print(table(rows))
    if len(tools) == len(TOOLS):
        print()
        print(ratios(rows, ks))


if __name__ == "__main__":
    main()
