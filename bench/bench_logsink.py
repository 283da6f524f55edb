"""What the supervisor's log costs per line: ``LogSink.write`` of a plain supervisor line and of a
generation's output line (an ``Entry``), in the human and the JSON format, and a read of the
whole ring (what one ``hotswap logs`` costs the supervisor).

Each round writes ``--lines`` lines to /dev/null through a fresh sink (its writer thread
running, as in the supervisor) and takes the time per line on the calling thread, which is
the supervisor's event loop; the modes are interleaved round by round and the table gives the
median and the spread (min-max) of the rounds. The writer thread's own CPU is counted in the
process CPU column (process CPU time per line, both threads), not in the loop column.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable

from hotswap.supervisor.logsink import LogSink, child_line

LINE = 'INFO:     127.0.0.1:50412 - "GET /orders/17 HTTP/1.1" 200 OK'
MODES: dict[str, tuple[str, Callable[[], str]]] = {
    "supervisor line, human": ("human", lambda: "generation 7 started (pid 4242) from 1.2.0-ab"),
    "child line, human": ("human", lambda: child_line(LINE, tag="gen 7", source="gen 7", worker=0)),
    "child line, json": ("json", lambda: child_line(LINE, tag="gen 7", source="gen 7", worker=0)),
}


def one_round(fmt: str, make: Callable[[], str], lines: int, fd: int) -> tuple[float, float]:
    sink = LogSink(prefix="hotswap[1]: ", fd=fd, format=fmt)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(lines):
        sink.write(make())
    loop_us = (time.perf_counter() - wall) / lines * 1e6
    asyncio.run(sink.close())
    return loop_us, (time.process_time() - cpu) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--lines", type=int, default=50_000)
    args = parser.parse_args()
    fd = os.open(os.devnull, os.O_WRONLY)
    loop: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode, (fmt, make) in MODES.items():
            a, b = one_round(fmt, make, args.lines, fd)
            loop[mode].append(a)
            cpu[mode].append(b)
    print(f"{args.rounds} rounds x {args.lines} lines, interleaved; microseconds per line")
    print(f"{'mode':<24} {'loop median':>12} {'loop min-max':>14} {'process CPU':>12}")
    for mode in MODES:
        spread = f"{min(loop[mode]):.1f}-{max(loop[mode]):.1f}"
        print(
            f"{mode:<24} {statistics.median(loop[mode]):>12.1f} {spread:>14}"
            f" {statistics.median(cpu[mode]):>12.1f}"
        )
    sink = LogSink(fd=fd)
    for _ in range(2_000):
        sink.write(child_line(LINE, tag="gen 7", source="gen 7", worker=0))
    reads = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        sink.read()
        reads.append((time.perf_counter() - started) * 1000)
    print(f"read of the full ring (2,000 lines): median {statistics.median(reads):.2f} ms")
    asyncio.run(sink.close())
    os.close(fd)


if __name__ == "__main__":
    main()
