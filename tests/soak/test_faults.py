"""Faults in the middle of a swap, for real: a full disk at each phase, and the supervisor
SIGKILLed at random points. What must hold (promises 3, 6, 7 and 13):

- a full disk: every outcome is one of "the old release serves and nothing changed" (the swap
  was refused with a code), "the new release serves and is current", or ``commit_failed``: the
  cutover happened, state.json could not record it, and the error names the release that
  serves. Never a half-done swap, never a supervisor that stops answering.
- SIGKILL of the supervisor: its generations stop accepting and exit (no orphan accepts), and a
  restarted supervisor serves the release state.json names and leaves no staging dir.
"""

from __future__ import annotations

import contextlib
import errno
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import hotswap
from tests.conftest import BuildRelease, BuildResult
from tests.diskfull import fill, small_tmpfs
from tests.e2e.harness import start_supervisor, stop_and_check, wait_for
from tests.soak.soak import hotswap_processes

FAST = {"boot_timeout": 20, "health_timeout": 5, "shutdown_timeout": 3}


def _outcome_is_allowed(
    outcome: dict[str, Any], serving: str, current: str, old: BuildResult, new: BuildResult
) -> str:
    """Which of the allowed outcomes this is; fails the test if none."""
    error = outcome.get("error")
    old_id, new_id = old.manifest.release_id, new.manifest.release_id
    if error is None:
        assert serving == new.manifest.version and current == new_id, (outcome, serving, current)
        return "new serves and is current"
    if error.code == "commit_failed":
        assert serving == new.manifest.version and error.details["serving"] == new_id, error
        return "commit_failed, naming what serves"
    assert serving == old.manifest.version and current == old_id, (error, serving, current)
    return f"old serves, nothing changed ({error.code})"


def _free(state: Path) -> None:
    for name in ("filler", "filler-tail"):
        with contextlib.suppress(FileNotFoundError):
            (state / name).unlink()


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["unpack", "boot", "health", "drain"])
def test_a_full_disk_at_any_phase_leaves_old_serving_or_new_current_never_half_done(
    tmp_path: Path, build_release: BuildRelease, phase: str
) -> None:
    v1 = build_release("1.0.0", tool=FAST)
    v2 = build_release("2.0.0", tool=FAST)
    env = {"FIXTURE_SLOW_STARTUP": "2.0.0:1.5"}
    with small_tmpfs(tmp_path / "state", "96m") as state:
        sup = start_supervisor(v1.tarball, state, env=env)
        slow: list[int] = []
        try:
            outcome: dict[str, Any] = {}
            if phase == "unpack":
                fill(state)  # no room for the new release at all

            def upgrade() -> None:
                try:
                    outcome["result"] = hotswap.upgrade(v2.tarball, state_dir=state)
                except hotswap.HotswapError as e:
                    outcome["error"] = e

            slow_thread = None
            if phase == "drain":
                # a request in flight keeps the old generation draining; the new one takes 1.5 s
                # to boot, so the old one has it long before the cutover
                slow_thread = threading.Thread(
                    target=lambda: slow.append(sup.get("/slow?s=3", timeout=20)[0])
                )
                slow_thread.start()
            worker = threading.Thread(target=upgrade)
            worker.start()
            if phase != "unpack":
                wait_for(
                    lambda: (s := sup.status()["upgrade"]) is None or s["phase"] == phase,
                    what=f"the {phase} phase",
                )
                fill(state)
            worker.join(60)
            assert not worker.is_alive(), "the upgrade never ended"
            status = sup.status()  # the supervisor still answers
            assert status["upgrading"] is False
            serving = sup.get_json()["version"]
            kind = _outcome_is_allowed(outcome, serving, status["current"], v1, v2)
            print(f"full disk at {phase}: {kind}")
            # one generation serves; any other is gone within shutdown_timeout
            wait_for(lambda: len(sup.status()["generations"]) == 1, timeout=15, what="one gen")
            # with room again, the next swap works and records itself
            _free(state)
            target = v1 if serving == "2.0.0" else v2
            assert sup.upgrade(target.tarball)["ok"]
            assert sup.status()["current"] == target.manifest.release_id
            if slow_thread is not None:
                slow_thread.join(20)
                assert slow == [200]  # the request in flight finished on the old generation
        finally:
            _free(state)
            with contextlib.suppress(Exception):
                sup.status()
            stop_and_check(sup, sup.seen_pids)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) != errno.ECONNREFUSED


RUNS = 20


@pytest.mark.slow
def test_supervisor_sigkilled_at_random_points_of_a_swap_restarts_clean(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", tool=FAST)
    v2 = build_release("2.0.0", tool=FAST)
    releases = {"1.0.0": v1, "2.0.0": v2}
    seed = int(time.time())
    rng = random.Random(seed)
    state = tmp_path / "state"
    sup = start_supervisor(v1.tarball, state)
    sup.upgrade(v2.tarball)  # both unpacked: later swaps by id are fast, the kill lands anywhere
    seen: list[tuple[float, str]] = []
    try:
        for run in range(RUNS):
            serving = sup.get_json()["version"]
            target = v1 if serving == "2.0.0" else v2
            ref = target.manifest.release_id if run % 2 else str(target.tarball)
            client = subprocess.Popen(
                [sys.executable, "-m", "hotswap.cli", "upgrade", ref, "--state-dir", str(state),
                 "--json", "-q"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for(lambda sup=sup: sup.status()["upgrading"], what="the swap to start")
            delay = rng.uniform(0.0, 0.7)
            time.sleep(delay)  # not a wait: the random point of the swap where the kill lands
            phase = (sup.status().get("upgrade") or {}).get("phase", "none")
            sup.proc.send_signal(signal.SIGKILL)
            sup.proc.wait(10)
            client.wait(30)
            seen.append((round(delay, 2), phase))
            # promise 6: every process it started stops accepting and exits
            wait_for(
                lambda: not hotswap_processes(state),
                timeout=FAST["shutdown_timeout"] + 15,
                what=f"run {run}: the generations of a killed supervisor to exit (seed {seed})",
            )
            assert not _accepts(sup.port), f"run {run}: an orphan still accepts (seed {seed})"
            # promise 7: a restart serves what state.json names; no staging dir is left
            sup = start_supervisor(None, state, port=sup.port)
            current = sup.status()["current"]
            version = sup.get_json()["version"]
            assert current == releases[version].manifest.release_id, (run, seed, current)
            leftovers = [p.name for p in (state / "releases").iterdir() if p.name.startswith(".")]
            assert not [n for n in leftovers if "staging" in n], (run, seed, leftovers)
    finally:
        print(f"seed {seed}: kills at (delay s, phase) {seen}")
        with contextlib.suppress(Exception):
            sup.status()
        stop_and_check(sup, sup.seen_pids)
