"""The soak: many blue-green swaps, alternating two releases, under light load, with the
supervisor's resources sampled as it goes. Shared by ``test_soak.py`` (a short run in CI) and
``bench/bench_soak.py`` (1,000 swaps, the curve). Not a test by itself.

A sample is read from /proc: the supervisor's RSS, open descriptors and threads; the processes
it has (every generation and service process, found by the state dir in their environment),
how many of them are zombies, and the releases kept in the store.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import hotswap
from hotswap.testing.load import Load


@dataclass(frozen=True)
class Sample:
    swaps: int
    seconds: float
    rss_kb: int
    fds: int
    threads: int
    processes: int  # generations and services of this state dir, alive
    zombies: int
    releases: int  # unpacked releases in the store
    requests: int
    failed: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    raise KeyError(name)


def hotswap_processes(state_dir: Path) -> dict[int, str]:
    """Every process (pid -> state letter) that a supervisor of ``state_dir`` started: its
    environment carries ``HOTSWAP_CHILD=1`` and ``HOTSWAP_STATE_DIR=<state_dir>``."""
    marker = f"HOTSWAP_STATE_DIR={state_dir}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            if b"HOTSWAP_CHILD=1" in environ and marker in environ:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                found[int(entry.name)] = state
    return found


def sample(sup_pid: int, state_dir: Path, swaps: int, started: float, load: Load) -> Sample:
    procs = hotswap_processes(state_dir)
    releases = state_dir / "releases"
    report = load.report
    return Sample(
        swaps=swaps,
        seconds=round(time.monotonic() - started, 1),
        rss_kb=_status_field(sup_pid, "VmRSS"),
        fds=len(os.listdir(f"/proc/{sup_pid}/fd")),
        threads=_status_field(sup_pid, "Threads"),
        processes=sum(1 for s in procs.values() if s != "Z"),
        zombies=sum(1 for s in procs.values() if s == "Z"),
        releases=sum(1 for p in releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
        requests=report.total,
        failed=report.failed,
    )


def soak(
    *,
    sup_pid: int,
    state_dir: Path,
    port: int,
    releases: Sequence[str],
    swaps: int,
    every: int,
    on_sample: Callable[[Sample], None] = lambda s: None,
    max_seconds: float = 3600.0,
) -> tuple[list[Sample], Load]:
    """Swap ``swaps`` times through ``releases`` in turn (ids or tarballs; the first one is
    assumed to be serving), sampling before the first swap and every ``every`` swaps."""
    samples: list[Sample] = []
    started = time.monotonic()
    with Load("127.0.0.1", port, keepalive=1, fresh=1, pause=0.02, max_seconds=max_seconds) as load:
        load.wait_requests(5)
        samples.append(sample(sup_pid, state_dir, 0, started, load))
        on_sample(samples[-1])
        for i in range(1, swaps + 1):
            hotswap.upgrade(releases[i % len(releases)], state_dir=state_dir)
            if i % every == 0 or i == swaps:
                load.wait_requests(2)
                samples.append(sample(sup_pid, state_dir, i, started, load))
                on_sample(samples[-1])
    return samples, load


def table(samples: Sequence[Sample]) -> str:
    head = [
        "swaps",
        "s",
        "RSS MiB",
        "fds",
        "threads",
        "procs",
        "zombies",
        "releases",
        "req",
        "failed",
    ]
    rows = [
        [s.swaps, s.seconds, f"{s.rss_kb / 1024:.1f}", s.fds, s.threads, s.processes, s.zombies,
         s.releases, s.requests, s.failed]
        for s in samples
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    return "\n".join(
        "  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True))
        for row in [head, *rows]
    )
