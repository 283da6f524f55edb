"""A hot upgrade of a generation of several workers: two-phase, all or nothing, for real.

Every worker prepares, then every worker commits and holds until all have applied it; one
worker failing its ``__code_change__`` rolls every worker back and the release does not become
current. A worker restarted after a hot upgrade boots the hot-upgraded release.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from hotswap.errors import ChildError
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import pid_alive, supervisor, wait_for
from tests.e2e.test_workers import _workers_seen

INIT = '''"""hotswap's test fixture app."""

VERSION = "2.0.0"


def __code_change__(old_vsn, extra):
    import os

    import hotswap

    if os.environ.get("FIXTURE_FAIL_CODE_CHANGE_IN_WORKER") == str(hotswap.worker_index()):
        raise RuntimeError("__code_change__ fails in this worker, as asked")
'''


@pytest.fixture(scope="module")
def v2_hook(build_release: BuildRelease) -> BuildResult:
    return build_release("2.0.0", extra_files={"src/fixture_app/__init__.py": INIT})


def _versions(sup: object, port: int) -> set[str]:
    import http.client
    import json

    seen: dict[int, str] = {}

    def both() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            body = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        seen[int(body["worker"])] = body["version"]
        return len(seen) == 2

    wait_for(both, what="answers from both workers")
    return set(seen.values())


def test_two_workers_hot_upgrade_together_under_load(
    tmp_path: Path, release_v1: BuildResult, v2_hook: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path, args=["--workers", "2"]) as sup:
        before = sup.status()["active"]["pids"]
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            assert load.wait_requests(30)
            done = sup.cli("hot-upgrade", str(v2_hook.tarball), "--json")
            assert done.returncode == 0, done.stdout + done.stderr
            assert load.wait_requests(30)
        assert load.report.failed == 0, load.report.summary()
        assert _versions(sup, sup.port) == {"2.0.0"}
        status = sup.status()
        active = status["active"]
        assert active["pids"] == before  # the same processes
        assert [w["release"] for w in active["workers"]] == [v2_hook.manifest.release_id] * 2
        assert status["current"] == v2_hook.manifest.release_id
        record = status["recent"][0]
        assert record["how"] == "hot" and record["ok"] and len(record["stats"]["workers"]) == 2
        # the second worker read the first one's analysis instead of making it again
        assert [w["analysis_shared"] for w in record["stats"]["workers"]] == [False, True]
        if len(os.sched_getaffinity(0)) > 1:  # a core to spare: it walked its heap meanwhile
            assert [w["heap_walked_early"] for w in record["stats"]["workers"]] == [False, True]
        assert not list(tmp_path.glob("**/run/*hot-analysis-*"))  # and it is gone
        # a worker restarted later boots the current (hot-upgraded) release
        victim = before[1]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not pid_alive(victim), what="the killed worker to be gone")
        wait_for(
            lambda: (
                (w := sup.status()["active"]["workers"][1])["pid"] != victim
                and w["state"] == "live"
            ),
            timeout=30,
            what="worker 1 restarted",
        )
        assert _versions(sup, sup.port) == {"2.0.0"}


def test_one_worker_failing_to_commit_rolls_every_worker_back(
    tmp_path: Path, release_v1: BuildResult, v2_hook: BuildResult
) -> None:
    env = {"FIXTURE_FAIL_CODE_CHANGE_IN_WORKER": "1"}
    with supervisor(release_v1.tarball, tmp_path, args=["--workers", "2"], env=env) as sup:
        assert _workers_seen(sup.port, 2) == {0, 1}
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            assert load.wait_requests(30)
            with pytest.raises(ChildError) as caught:
                sup.upgrade_hot(v2_hook.tarball)
            assert load.wait_requests(30)
        error = caught.value
        assert error.code == "hot_upgrade_failed" and error.details["worker"] == 1
        assert "generation 1 worker 1" in error.message
        assert load.report.failed == 0, load.report.summary()
        assert set(load.report.versions) == {"1.0.0"}  # worker 0 never served v2
        assert _versions(sup, sup.port) == {"1.0.0"}  # worker 0 rolled back too
        status = sup.status()
        assert status["current"] == release_v1.manifest.release_id
        rid = release_v1.manifest.release_id
        assert [w["release"] for w in status["active"]["workers"]] == [rid, rid]


MAIN = Path(__file__).parents[1] / "fixtures" / "app" / "src" / "fixture_app" / "main.py"


def test_a_change_to_what_ran_at_start_up_is_refused_and_check_agrees(
    tmp_path: Path, release_v1: BuildResult, build_release: BuildRelease
) -> None:
    # the lifespan's start-up ran before the workers were ready; a fresh start of v2 would
    # run the new one, a hot upgrade cannot
    main = MAIN.read_text().replace('STATE["started"] = True', 'STATE["started"] = "v2"')
    v2 = build_release("2.0.0", extra_files={"src/fixture_app/main.py": main})
    with supervisor(release_v1.tarball, tmp_path, args=["--workers", "2"]) as sup:
        status = sup.status()
        ran = status["active"]["startup_code"]
        assert "_lifespan" in ran["fixture_app.main"], ran
        assert "fixture_app.main" in ran and not any(m.startswith("hotswap") for m in ran)
        refused = sup.cli("hot-upgrade", str(v2.tarball), "--json")
        assert refused.returncode != 0, refused.stdout
        error = json.loads(refused.stdout)["error"]
        codes = {r["code"] for r in error["details"]["reasons"]}
        assert codes == {"startup_code"}, error
        assert "fixture_app.main._lifespan" in error["message"]
        assert _versions(sup, sup.port) == {"1.0.0"}
        assert sup.status()["current"] == release_v1.manifest.release_id
        verdict = sup.cli("check", str(release_v1.tarball), str(v2.tarball), "--json")
        assert verdict.returncode == 4, verdict.stdout + verdict.stderr
        assert [r["code"] for r in json.loads(verdict.stdout)["reasons"]] == ["startup_code"]
    # with no service running the old release to ask, check says what it could not know
    blind = sup.cli("check", str(release_v1.tarball), str(v2.tarball), "--json")
    assert blind.returncode == 0, blind.stdout + blind.stderr
    assert any("startup_code" in w for w in json.loads(blind.stdout)["warnings"])
