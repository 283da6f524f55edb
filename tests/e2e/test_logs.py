"""What an operator sees, on a real supervisor: ``--log-format json`` lines (each with its
source and, during a swap, the swap's id, also in the swap's result and in status), ``hotswap
logs`` (a failed boot's output, from the supervisor's ring), ``logs -f`` (a new line as it
comes; the end when the supervisor stops) and ``status --watch`` (one JSON line per change
during a swap, its phases in order)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pty
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hotswap.cli import EXIT_INTERRUPTED, EXIT_USAGE
from hotswap.cli.render import CLEAR, SWAP_PHASES, steady_status
from hotswap.errors import HotswapError
from hotswap.release.build import BuildResult
from tests.e2e.harness import Running, supervisor, wait_for


def _spawn(sup: Running, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "hotswap.cli", *args, "--state-dir", str(sup.state_dir)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_lines(
    proc: subprocess.Popen[str], until: Any, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """JSON lines from ``proc``'s stdout until ``until(lines)`` holds (or the deadline)."""
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not until(lines):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"timed out; got {len(lines)} lines: {lines[-3:]}")
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"ended early ({proc.wait(5)}): {proc.stderr.read()}")  # type: ignore[union-attr]
            lines.append(json.loads(line))
    return lines


def test_json_log_lines_carry_their_source_and_the_swap_id(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    args = ["--log-format", "json", "--workers", "2"]
    with supervisor(release_v1.tarball, tmp_path, args=args) as sup:
        result = sup.upgrade(release_v2.tarball)
        recent = sup.status()["recent"]
    swap = result["id"]
    assert len(swap) == 8 and recent[0]["id"] == swap and recent[1]["id"] != swap
    records = [json.loads(line) for line in sup.log().splitlines()]  # every line parses
    for r in records:
        assert set(r) >= {"time", "level", "source", "worker", "event", "message", "fields"}
    ours = [r for r in records if r["swap"] == swap]
    events = [r["event"] for r in ours]
    assert events[0] == "swap_started" and events[-1] == "swap_finished", events
    assert "generation_started" in events
    # the new generation's own output, wrapped: its source, the swap's id
    boot = [r for r in ours if r["event"] == "log"]
    assert boot and {r["source"] for r in boot} == {"gen 2"}
    assert {r["worker"] for r in boot} == {0, 1}  # each worker's output, as a field
    assert any("Application startup complete" in r["message"] for r in boot)
    exits = [
        (r["fields"]["generation"], r["worker"])
        for r in records
        if r["event"] == "generation_exited"
    ]
    assert sorted(exits) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert {r["source"] for r in records} == {"supervisor", "gen 1", "gen 2"}


def test_logs_shows_the_output_of_a_failed_boot(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path, env={"FIXTURE_CRASH_AT_IMPORT": "2.0.0"}) as sup:
        with pytest.raises(HotswapError) as caught:
            sup.upgrade(release_v2.tarball)
        assert caught.value.code == "boot_failed"
        failed = sup.status()["recent"][0]
        assert caught.value.details["swap"] == failed["id"]  # in the error too
        human = sup.cli("logs", "-n", "40")
        data = json.loads(sup.cli("logs", "--json").stdout)
    assert human.returncode == 0, human.stderr
    assert "[gen 2] RuntimeError: fixture_app 2.0.0 crashes at import, as asked" in human.stdout
    assert f"swap {failed['id']}: blue-green to" in human.stdout
    crash = [x for x in data["lines"] if "crashes at import" in x["message"]]
    assert crash and crash[-1]["source"] == "gen 2" and crash[-1]["swap"] == failed["id"]
    assert data["lines"][-1]["seq"] == data["next"] and "text" not in data["lines"][0]


def test_logs_follow_sees_a_new_line_and_ends_when_the_supervisor_stops(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path, env={"HOTSWAP_ACCESS_LOG": "1"}) as sup:
        follower = _spawn(sup, "logs", "-f", "-n", "1", "--json")
        try:
            _read_lines(follower, lambda lines: len(lines) >= 1)  # the last line before
            sup.get("/?marker=f0ll0w")  # uvicorn's access log line of this request
            seen = _read_lines(follower, lambda ls: any("f0ll0w" in x["message"] for x in ls))
            assert seen[-1]["source"] == "gen 1" and seen[-1]["event"] == "log"
            assert sup.stop() == 0  # (its connection open: the harness' fd check would wait)
            assert follower.wait(30) == EXIT_USAGE  # the supervisor stopped: not_running
            rest = follower.stdout.read()  # type: ignore[union-attr]
            assert '"the supervisor stopped"' in rest and '"not_running"' in rest
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait(5)


def test_status_watch_streams_one_json_line_per_change_during_a_swap(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    env = {"FIXTURE_SLOW_STARTUP": "2.0.0:1"}  # a boot phase long enough to be seen
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        watcher = _spawn(sup, "status", "--watch", "--interval", "0.05")
        screen = _Screen(sup)  # the same, on a terminal
        try:
            first = _read_lines(watcher, lambda lines: len(lines) >= 1)
            assert first[0]["upgrading"] is False
            result = sup.upgrade(release_v2.tarball)
            lines = first + _read_lines(
                watcher,
                lambda ls: (
                    ls and ls[-1]["recent"][0].get("id") == result["id"] and not ls[-1]["upgrading"]
                ),
            )
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(10) == EXIT_INTERRUPTED
            # its own looks, every 0.1 s: until it drew the swap's end
            wait_for(lambda: "upgrading   no" in screen.text().split(CLEAR)[-1], what="a redraw")
            drawn = screen.stop()
        finally:
            for proc in (watcher, screen.proc):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
    phases = [x["upgrade"]["phase"] for x in lines if x["upgrade"]]
    assert "boot" in phases
    assert phases == sorted(phases, key=SWAP_PHASES.index)  # in the order they run
    steady = [json.dumps(steady_status(x), sort_keys=True) for x in lines]
    assert all(a != b for a, b in itertools.pairwise(steady))  # each line a change
    assert lines[-1]["active"]["generation"] == 2 and not lines[-1]["upgrading"]
    frames = drawn.split(CLEAR)  # redrawn, not streamed: the status as people read it
    assert any("phase boot" in f and "progress    [" in f for f in frames), frames[-3:]
    assert "active      generation 2" in frames[-1] and "upgrading   no" in frames[-1]


class _Screen:
    """``hotswap status --watch`` with a terminal (a pty) as its stdout, read by a thread."""

    def __init__(self, sup: Running) -> None:
        master, slave = pty.openpty()
        argv = [sys.executable, "-m", "hotswap.cli", "status", "--watch", "--interval", "0.1"]
        self.proc = subprocess.Popen(
            [*argv, "--state-dir", str(sup.state_dir)], stdout=slave, stderr=subprocess.DEVNULL
        )
        os.close(slave)
        self.master = master
        self.data = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):  # EIO once the watcher has exited
            while chunk := os.read(self.master, 65536):
                self.data += chunk

    def text(self) -> str:
        return bytes(self.data).decode(errors="replace")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(10) == EXIT_INTERRUPTED
        self.reader.join(10)
        os.close(self.master)
        return self.text()
