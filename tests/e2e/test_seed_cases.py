"""BeamDeploy's own scenarios, on real processes: status, handoff, hooks, concurrency, rollback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import hotswap
from hotswap.release.build import BuildResult
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor, wait_for


def test_status_active_generation_and_handoff_round_trip(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        state = sup.state_dir
        status = hotswap.status(state_dir=state)
        assert status["upgrading"] is False
        assert status["active"]["generation"] == 1
        assert status["active"]["release"] == release_v1.manifest.release_id
        assert hotswap.active_generation(state_dir=state)["pid"] == sup.get_json()["pid"]
        assert hotswap.upgrading(state_dir=state) is False
        hotswap.put_handoff("counter", {"n": 41, "tags": ["a", "b"]}, state_dir=state)
        hotswap.put_handoff("blob", b"\x00\xffbinary", state_dir=state)
        assert hotswap.get_handoff("counter", state_dir=state) == {"n": 41, "tags": ["a", "b"]}
        assert hotswap.get_handoff("blob", state_dir=state) == b"\x00\xffbinary"
        assert hotswap.get_handoff("missing", state_dir=state) is None
        assert set(hotswap.get_all_handoff(state_dir=state)) == {"counter", "blob"}
        assert hotswap.delete_handoff("blob", state_dir=state) is True
        with pytest.raises(hotswap.UsageError) as too_big:
            hotswap.put_handoff("big", "x" * (2 * 1024 * 1024), state_dir=state)
        assert too_big.value.code == "handoff_too_large"
        # the CLI speaks the same store
        listed = sup.cli("handoff", "list", "--json")
        assert listed.returncode == 0 and '"counter"' in listed.stdout


def test_handoff_survives_cutover_and_supervisor_restart(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        hotswap.put_handoff("session", {"users": 3}, state_dir=sup.state_dir)
        sup.upgrade(release_v2.tarball)
        assert hotswap.get_handoff("session", state_dir=sup.state_dir) == {"users": 3}
    with supervisor(release_v2.tarball, tmp_path) as sup:
        assert hotswap.get_handoff("session", state_dir=sup.state_dir) == {"users": 3}


@pytest.mark.slow
def test_concurrent_upgrade_is_refused_at_once_and_status_never_waits(
    tmp_path: Path, release_v1: BuildResult, build_release: BuildRelease
) -> None:
    slow_v2 = build_release("2.0.0")
    with supervisor(release_v1.tarball, tmp_path, env={"FIXTURE_SLOW_STARTUP": "2.0.0:2"}) as sup:
        outcome: dict[str, Any] = {}

        def first() -> None:
            outcome["result"] = sup.upgrade(slow_v2.tarball)

        thread = threading.Thread(target=first)
        thread.start()
        wait_for(lambda: sup.status()["upgrading"], what="the first upgrade to start")
        started = time.monotonic()
        with pytest.raises(hotswap.UsageError) as refused:
            hotswap.upgrade(slow_v2.tarball, state_dir=sup.state_dir)
        assert refused.value.code == "upgrade_in_progress"
        status = sup.status()
        hotswap.put_handoff("during", 1, state_dir=sup.state_dir)
        # refused, status and handoff: none queued behind the first upgrade, which holds its
        # boot for 2 s and is still running (tolerance: 1.5 s, for a loaded 2-core machine)
        assert time.monotonic() - started < 1.5
        assert status["upgrading"] is True
        assert sup.status()["upgrading"] is True
        assert status["upgrade"]["phase"] in ("unpack", "spawn", "boot")
        thread.join(60)
        assert outcome["result"]["ok"]
        assert sup.get_json()["version"] == "2.0.0"


def test_cutover_hooks_and_peers_reach_the_new_generation(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        old_pid = sup.get_json()["pid"]
        result = sup.upgrade(release_v2.tarball)

        def hooks_seen() -> dict[str, Any] | None:
            hooks = sup.get_json("/hooks")
            return hooks if hooks["received"] else None

        hooks = wait_for(hooks_seen, what="after_cutover to run in the new generation")
        assert hooks["received"]["handoff"] == {"from_version": "1.0.0", "pid": old_pid}
        assert hooks["outgoing"]["pid"] == old_pid
        assert hooks["outgoing"]["generation"] == 1
        assert hooks["generation"] == result["generation"] == 2
        stored = hotswap.get_handoff("__before_cutover_result__", state_dir=sup.state_dir)
        assert stored == {"from_version": "1.0.0", "pid": old_pid}


def test_failing_before_cutover_still_completes_the_swap_with_an_empty_result(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    env = {"FIXTURE_FAIL_BEFORE_CUTOVER": "1.0.0"}
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        assert sup.upgrade(release_v2.tarball)["ok"]
        hooks = wait_for(
            lambda: (h := sup.get_json("/hooks"))["received"] and h, what="after_cutover"
        )
        assert hooks["received"] == {"handoff": None}
        assert "before_cutover fails, as asked" in sup.log()


def test_before_cutover_returning_a_bytes_look_alike_neither_wedges_nor_corrupts(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult, release_v3: BuildResult
) -> None:
    look_alike = {"$bytes": "not base64!"}
    env = {"FIXTURE_BEFORE_CUTOVER_RETURNS": "1.0.0:" + json.dumps(look_alike)}
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        assert sup.upgrade(release_v2.tarball, timeout=60)["ok"]
        hooks = wait_for(
            lambda: (h := sup.get_json("/hooks"))["received"] and h, what="after_cutover"
        )
        assert hooks["received"] == {"handoff": look_alike}  # the dict itself, not bytes
        status = sup.status()
        assert status["upgrading"] is False and len(status["generations"]) == 1
        assert sup.upgrade(release_v3.tarball, timeout=60)["ok"]  # a later upgrade is accepted
        started = time.monotonic()
        assert sup.stop(timeout=30) == 0
        # SIGTERM ends it within shutdown_timeout (the fixture's is 10 s) plus a small bound
        assert time.monotonic() - started < 15


def test_a_failing_generation_with_a_huge_output_line_is_still_boot_failed(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    env = {"FIXTURE_HUGE_LINE_AT_IMPORT": "2.0.0"}
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        with pytest.raises(hotswap.ChildError) as failed:
            sup.upgrade(release_v2.tarball, timeout=60)
        # not bad_request (the error, with that line in its output, was too large to send)
        assert failed.value.code == "boot_failed"
        output = failed.value.details["output"]
        assert any("prints a 5 MB line and crashes" in line for line in output)
        assert all(len(line) <= 8192 + 3 for line in output)
        assert sup.get_json()["version"] == "1.0.0"


def test_v1_v2_v3_then_rollback(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult, release_v3: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        for release in (release_v2, release_v3):
            result = sup.upgrade(release.tarball)
            assert sup.get_json()["version"] == release.manifest.version
            assert set(result["timings_ms"]) == {
                "unpack",
                "spawn",
                "boot",
                "health",
                "cutover",
                "commit",
                "drain",
            }
        rolled = hotswap.rollback(state_dir=sup.state_dir)
        assert rolled["release"] == release_v2.manifest.release_id
        assert sup.get_json()["version"] == "2.0.0"
        status = sup.status()
        assert status["current"] == release_v2.manifest.release_id
        assert status["previous"] == release_v3.manifest.release_id
        assert [r["how"] for r in status["recent"][:3]] == ["rollback", "blue-green", "blue-green"]
        # upgrade by release id (already in the store) works too
        assert sup.upgrade(release_v3.manifest.release_id)["ok"]
        assert sup.get_json()["version"] == "3.0.0"


def test_cli_upgrade_streams_phases_and_json(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        done = sup.cli("upgrade", str(release_v2.tarball))
        assert done.returncode == 0, done.stderr
        for phase in ("unpack", "spawn", "boot", "health", "cutover", "commit", "drain"):
            assert f"{phase}: done in" in done.stderr
        assert "now serving 2.0.0-" in done.stdout
        failed = sup.cli("upgrade", str(tmp_path / "nope.tar.gz"), "--json")
        assert failed.returncode == 2
        assert '"code": "release_not_found"' in failed.stdout
        status = sup.cli("status")
        assert status.returncode == 0 and "generation 2" in status.stdout
        none = sup.cli("rollback", "--json")
        assert none.returncode == 0, none.stdout + none.stderr


def test_failed_phase_is_streamed_as_failed(
    tmp_path: Path, release_v1: BuildResult, build_release: BuildRelease
) -> None:
    v2 = build_release("2.0.0", tool={"boot_timeout": 3})
    env = {"FIXTURE_CRASH_AT_IMPORT": "2.0.0"}
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        events: list[dict[str, Any]] = []
        with pytest.raises(hotswap.ChildError):
            hotswap.upgrade(v2.tarball, state_dir=sup.state_dir, on_phase=events.append)
        ends = [(e["phase"], e["state"]) for e in events if e["state"] != "started"]
        assert ends == [("unpack", "done"), ("spawn", "done"), ("boot", "failed")]
        done = sup.cli("upgrade", str(v2.tarball))
        assert done.returncode == 4 and "boot: FAILED after" in done.stderr
