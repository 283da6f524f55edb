"""A commit (the state.json write) that fails after cutover: a full disk, for real.

The state dir lives on a small tmpfs, filled while the new generation boots, so the commit at
cutover gets ENOSPC. What the supervisor reports must be what serves (promise 13): the new
release serves, the caller gets ``commit_failed`` naming it, the old generation is drained and
gone within ``shutdown_timeout``, and the swap is in ``recent``. Needs root (to mount a tmpfs);
skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

import hotswap
from tests.conftest import BuildRelease
from tests.diskfull import fill, small_tmpfs
from tests.e2e.harness import pid_alive, start_supervisor, stop_and_check, wait_for

FAST = {"boot_timeout": 20, "health_timeout": 5, "shutdown_timeout": 2}


@pytest.mark.slow
def test_commit_failing_on_a_full_disk_reports_what_serves_and_finishes_the_drain(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", tool=FAST)
    v2 = build_release("2.0.0", tool=FAST)
    with small_tmpfs(tmp_path / "state", "96m") as state:
        sup = start_supervisor(v1.tarball, state, env={"FIXTURE_SLOW_STARTUP": "2.0.0:2"})
        try:
            old_pid = sup.get_json()["pid"]
            outcome: dict[str, Any] = {}

            def upgrade() -> None:
                try:
                    outcome["result"] = hotswap.upgrade(v2.tarball, state_dir=state)
                except hotswap.HotswapError as e:
                    outcome["error"] = e

            worker = threading.Thread(target=upgrade)
            worker.start()
            wait_for(
                lambda: (s := sup.status()["upgrade"]) and s["phase"] == "boot",
                what="the new generation to boot",
            )
            filler = fill(state)
            worker.join(60)
            assert not worker.is_alive()
            error = outcome.get("error")
            assert isinstance(error, hotswap.ResourceError), outcome
            assert error.code == "commit_failed", error
            assert error.details["serving"] == v2.manifest.release_id
            assert error.details["phase"] == "commit"
            assert "No space left on device" in error.message
            # what it says serves, serves; the old generation was drained, not left behind
            assert sup.get_json()["version"] == "2.0.0"
            wait_for(lambda: not pid_alive(old_pid), timeout=10, what="the old generation")
            status = sup.status()
            assert status["active"]["release"] == v2.manifest.release_id
            assert [g["release"] for g in status["generations"]] == [v2.manifest.release_id]
            assert status["upgrading"] is False
            assert status["current"] == v1.manifest.release_id  # state.json could not change
            assert status["recent"][0]["error"]["code"] == "commit_failed"
            # with room again, the next swap records itself
            filler.unlink()
            (state / "filler-tail").unlink()
            assert sup.upgrade(v1.tarball)["ok"]
            assert sup.status()["current"] == v1.manifest.release_id
        finally:
            with contextlib.suppress(Exception):
                sup.status()
            stop_and_check(sup, sup.seen_pids)
