"""Promises 2, 3 and 5: every way a swap can fail leaves the old generation serving, with zero
failed requests, a specific error code, the failing phase and the child's output; a generation
that failed readiness never served a public request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hotswap
from hotswap.errors import ChildError
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import pid_alive, supervisor, wait_for

FAST = {"boot_timeout": 3, "health_timeout": 2, "shutdown_timeout": 2}


def _v2(build_release: BuildRelease) -> BuildResult:
    return build_release("2.0.0", tool=FAST)


CASES: list[tuple[str, dict[str, str], str, str, Callable[[str], bool]]] = [
    (
        "crash_at_import",
        {"FIXTURE_CRASH_AT_IMPORT": "2.0.0"},
        "boot_failed",
        "boot",
        lambda out: "crashes at import, as asked" in out,
    ),
    (
        "never_ready",
        {"FIXTURE_HANG_STARTUP": "2.0.0"},
        "not_ready",
        "boot",
        lambda out: "Waiting for application startup" in out,
    ),
    (
        "health_probe_failing",
        {"FIXTURE_FAIL_HEALTH": "2.0.0"},
        "health_failed",
        "health",
        lambda out: "Application startup complete" in out,
    ),
    (
        "crash_after_ready_before_cutover",
        {"FIXTURE_EXIT_ON_HEALTH": "2.0.0"},
        "boot_failed",
        "health",
        lambda out: "Application startup complete" in out,
    ),
]


@pytest.mark.parametrize(
    "env,code,phase,output_check",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_failed_upgrade_keeps_old_generation_serving(
    tmp_path: Path,
    release_v1: BuildResult,
    build_release: BuildRelease,
    env: dict[str, str],
    code: str,
    phase: str,
    output_check: Callable[[str], bool],
) -> None:
    v2 = _v2(build_release)
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        old_pid = sup.get_json()["pid"]
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            assert load.wait_requests(20)
            with pytest.raises(ChildError) as caught:
                sup.upgrade(v2.tarball)
            assert load.wait_requests(20)
        error = caught.value
        assert error.code == code
        assert error.details["phase"] == phase
        output = "\n".join(error.details["output"])
        assert output_check(output), output
        assert len(error.details["output"]) <= 50
        report = load.report
        assert report.failed == 0, report.summary()
        # promise 2: the failed generation never answered a public request
        assert set(report.versions) == {"1.0.0"}
        assert sup.get_json()["pid"] == old_pid
        status = sup.status()
        assert status["active"]["pid"] == old_pid
        assert status["upgrading"] is False
        assert [g["generation"] for g in status["generations"]] == [1]
        assert status["current"] == release_v1.manifest.release_id
        assert status["recent"][0]["ok"] is False
        assert status["recent"][0]["error"]["code"] == code
        # and the next upgrade goes through: nothing was left stuck
        assert sup.upgrade(release_v1.tarball)["ok"]


def test_bad_tarball_changes_nothing(tmp_path: Path, release_v1: BuildResult) -> None:
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"not a tarball at all")
    (tmp_path / "broken.tar.gz.sha256").write_text(
        __import__("hashlib").sha256(b"not a tarball at all").hexdigest() + "  broken.tar.gz\n"
    )
    with supervisor(release_v1.tarball, tmp_path) as sup:
        old_pid = sup.get_json()["pid"]
        with pytest.raises(hotswap.ReleaseError) as caught:
            sup.upgrade(bad)
        assert caught.value.code == "corrupt_archive"
        assert caught.value.details["phase"] == "unpack"
        with pytest.raises(hotswap.UsageError) as missing:
            sup.upgrade(tmp_path / "missing.tar.gz")
        assert missing.value.code == "release_not_found"
        assert sup.get_json()["pid"] == old_pid
        assert sup.status()["upgrading"] is False


@pytest.mark.slow
def test_old_generation_ignoring_drain_is_killed_at_shutdown_timeout(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", tool=FAST)
    v2 = _v2(build_release)
    with supervisor(v1.tarball, tmp_path, env={"FIXTURE_IGNORE_DRAIN": "1.0.0"}) as sup:
        old_pid = sup.get_json()["pid"]
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            result: dict[str, Any] = sup.upgrade(v2.tarball)
            assert load.wait_requests(20)
        assert result["ok"] and result["drain_killed"] is True
        # killed at shutdown_timeout (2 s), not waited on forever (the child ignores drain).
        # The deadline is armed at cutover, so it runs through the commit and the drain.
        # Tolerance: 0.2 s early, 8 s late (a loaded 2-core machine)
        timings = result["timings_ms"]
        assert 1800 <= timings["commit"] + timings["drain"] <= 10_000, timings
        wait_for(lambda: not pid_alive(old_pid), what="the old generation to be gone")
        assert load.report.failed == 0, load.report.summary()
        assert sup.get_json()["version"] == "2.0.0"


def test_new_generation_dying_during_the_drain_still_completes_the_swap(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    """After cutover the new generation is the supervisor's: if it dies while the old one
    drains, the swap still reports success and the supervisor restarts it (no stability
    window here: with one, it would be rolled back, see test_stability_window.py)."""
    v1 = build_release("1.0.0", tool=FAST)
    v2 = _v2(build_release)
    env = {"FIXTURE_IGNORE_DRAIN": "1.0.0", "FIXTURE_EXIT_ONCE_AFTER_READY": "2.0.0:0.3"}
    with supervisor(v1.tarball, tmp_path, env=env, args=["--stability-window", "0"]) as sup:
        result = sup.upgrade(v2.tarball)
        assert result["ok"] and result["drain_killed"] is True
        first = result["pid"]
        restarted = wait_for(
            lambda: (s := sup.status())["active"] and s["active"]["pid"] != first and s,
            what="the restart of the generation that died during the drain",
        )
        assert restarted["active"]["release"] == v2.manifest.release_id
        assert sup.get_json()["version"] == "2.0.0"
