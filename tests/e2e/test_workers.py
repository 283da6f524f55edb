"""Generations of several worker processes, for real: uvicorn workers sharing the listener.

Every worker of a new generation must be ready and healthy before any of them accepts; one
worker failing at import refuses the release while the old generation serves every request;
a worker killed after cutover is restarted alone while the others serve.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import ChildError
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import pid_alive, supervisor, wait_for

TWO = ["--workers", "2"]


def _workers_seen(port: int, want: int, timeout: float = 20.0) -> set[int]:
    """Fresh connections until responses came from ``want`` different workers."""
    seen: set[int] = set()

    def more() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            body: dict[str, Any] = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        seen.add(int(body["worker"]))
        return len(seen) >= want

    wait_for(more, timeout=timeout, what=f"answers from {want} workers")
    return seen


def test_a_generation_of_two_workers_swaps_under_load_with_no_failed_request(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path, args=TWO) as sup:
        active = sup.status()["active"]
        assert [w["worker"] for w in active["workers"]] == [0, 1]
        assert len({w["pid"] for w in active["workers"]}) == 2
        assert all(w["state"] == "live" for w in active["workers"])
        assert _workers_seen(sup.port, 2) == {0, 1}  # both accept on the one listener
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            assert load.wait_requests(30)
            for i in range(4):
                target = release_v2 if i % 2 == 0 else release_v1
                result = sup.upgrade(target.tarball)
                assert result["ok"] and len(result["pids"]) == 2
                assert load.wait_requests(20)
        report = load.report
        assert report.failed == 0, report.summary()
        assert set(report.versions) == {"1.0.0", "2.0.0"}
        old_pids = set(active["pids"])
        assert not any(pid_alive(p) for p in old_pids)  # every worker of gen 1 drained


def test_one_worker_failing_at_import_refuses_the_release_and_the_old_serves(
    tmp_path: Path, release_v1: BuildResult, build_release: BuildRelease
) -> None:
    v2 = build_release("2.0.0", tool={"workers": 3, "boot_timeout": 20})
    env = {"FIXTURE_CRASH_AT_IMPORT_IN_WORKER": "2.0.0:1"}
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        assert len(sup.status()["active"]["workers"]) == 1  # v1 says nothing: one worker
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            assert load.wait_requests(20)
            with pytest.raises(ChildError) as caught:
                sup.upgrade(v2.tarball)
            assert load.wait_requests(20)
        error = caught.value
        assert error.code == "boot_failed" and error.details["worker"] == 1
        assert "generation 2 worker 1 exited before it was ready" in error.message
        assert any("crashes at import in this worker" in line for line in error.details["output"])
        assert load.report.failed == 0, load.report.summary()
        assert set(load.report.versions) == {"1.0.0"}  # no worker of v2 ever served
        status = sup.status()
        assert status["active"]["generation"] == 1 and len(status["generations"]) == 1
        assert "generation 2 started (3 workers, pids" in sup.log()  # all three were spawned


def test_a_worker_killed_after_cutover_is_restarted_alone(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path, args=TWO) as sup:
        before = sup.status()["active"]
        keep, victim = (w["pid"] for w in before["workers"])
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not pid_alive(victim), what="the killed worker to be gone")
        with Load("127.0.0.1", sup.port, keepalive=1, fresh=2) as load:

            def restarted() -> dict[str, Any] | None:
                active = sup.status()["active"]
                w1 = active["workers"][1]
                done = w1["pid"] != victim and w1["state"] == "live" and w1["restarts"] == 1
                return active if done else None

            after = wait_for(restarted, timeout=30, what="worker 1 restarted")
            assert load.wait_requests(10)
        assert load.report.failed == 0, load.report.summary()  # worker 0 served meanwhile
        assert after["generation"] == before["generation"]  # no swap: the same generation
        assert after["workers"][0]["pid"] == keep and after["workers"][0]["restarts"] == 0
        assert [r["how"] for r in sup.status()["recent"]] == ["initial"]
        assert "generation 1 worker 1 died: restarting it in" in sup.log()
