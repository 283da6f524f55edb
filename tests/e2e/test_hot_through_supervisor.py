"""Hot upgrades through the supervisor: same process, new code, zero failed requests; the hot
release becomes current so a restarted generation boots it (fly_deploy's startup reapply)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import hotswap
from hotswap.control import client
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor, wait_for


@pytest.mark.slow
def test_hot_upgrade_under_load_keeps_the_process_and_switches_versions(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        pid = sup.get_json()["pid"]
        with Load("127.0.0.1", sup.port, keepalive=3, fresh=2) as load:
            assert load.wait_requests(50)
            done = sup.cli("hot-upgrade", str(release_v2.tarball), "--json")
            assert done.returncode == 0, done.stdout + done.stderr
            assert load.wait_requests(50)
        report = load.report
        assert report.failed == 0, report.summary()
        assert set(report.versions) == {"1.0.0", "2.0.0"}
        after = [o.version for o in report.outcomes[-20:]]
        assert after == ["2.0.0"] * 20
        assert sup.get_json()["pid"] == pid  # the same process
        status = sup.status()
        assert status["current"] == release_v2.manifest.release_id
        assert status["active"]["release"] == release_v2.manifest.release_id
        assert status["recent"][0]["how"] == "hot"
        # about 1 ms measured (docs/hot-upgrade.md); tolerance: a loaded 2-core machine
        assert status["recent"][0]["stats"]["window_ms"] < 500
        swap = json.loads(done.stdout)["id"]  # the hot upgrade's id, in its result and its log
        assert status["recent"][0]["id"] == swap and f"swap {swap}: hot to " in sup.log()
        # a generation restarted after a crash boots the hot-upgraded release
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: (s := sup.status())["active"] and s["active"]["pid"] != pid,
            what="the restart",
        )
        fresh = sup.get_json()
        assert fresh["version"] == "2.0.0" and fresh["pid"] != pid


def test_hot_upgrade_refused_changes_nothing(
    tmp_path: Path, release_v1: BuildResult, build_release: BuildRelease
) -> None:
    other_server = build_release("2.0.0", tool={"server": "callable"})
    with supervisor(release_v1.tarball, tmp_path) as sup:
        pid = sup.get_json()["pid"]
        with pytest.raises(hotswap.ChildError) as caught:
            client.call(
                "hot_upgrade",
                state_dir=sup.state_dir,
                timeout=60,
                release=str(other_server.tarball),
            )
        assert caught.value.code == "hot_upgrade_refused"
        assert "blue-green" in caught.value.message
        assert sup.get_json() == {"version": "1.0.0", "pid": pid, "path": "/", "worker": 0}
        assert sup.status()["current"] == release_v1.manifest.release_id
        verdict = sup.cli("check", str(release_v1.tarball), str(other_server.tarball))
        assert verdict.returncode == 4 and "blue-green" in verdict.stdout


TCP_APP = Path(__file__).parents[1] / "fixtures" / "tcpapp"


def test_a_callable_server_without_quiescence_is_refused_unless_no_quiesce(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", source=TCP_APP)
    v2 = build_release("2.0.0", source=TCP_APP)
    with supervisor(v1.tarball, tmp_path) as sup:
        pid = sup.get_json()["pid"]
        refused = sup.cli("hot-upgrade", str(v2.tarball), "--json")
        assert refused.returncode != 0 and "no_quiescence" in refused.stdout, refused.stdout
        assert sup.get_json()["version"] == "1.0.0"
        done = sup.cli("hot-upgrade", str(v2.tarball), "--no-quiesce", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        info = sup.get_json()
        assert info["version"] == "2.0.0" and info["pid"] == pid
