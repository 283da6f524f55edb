"""Flask and Django (WSGI) and FastAPI, each built for real with ``workers = 2`` in its
``[tool.hotswap]`` table: every generation is two worker processes on the one listener, both
serving, through ten swaps under new-connection, keep-alive and slow clients with 0 failed;
and an ``env set`` value reaches every worker of the next generation, none of the running one.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import Running, pid_alive, supervisor, wait_for
from tests.servers.conftest import DJANGOAPP, FASTAPIAPP, FLASKAPP
from tests.servers.test_wsgi_stacks import _slow

STACKS = {"flask": FLASKAPP, "django": DJANGOAPP, "fastapi": FASTAPIAPP}
WORKERS = 2


def _releases(build_release: BuildRelease, stack: str) -> list[BuildResult]:
    """v1 and v2 of a stack with ``workers = 2`` (built once per session, cached)."""
    return [
        build_release(v, source=STACKS[stack], tool={"workers": WORKERS})
        for v in ("1.0.0", "2.0.0")
    ]


def _workers(sup: Running) -> list[dict[str, Any]]:
    """The active generation's workers as ``status`` lists them."""
    workers: list[dict[str, Any]] = sup.status()["active"]["workers"]
    sup.seen_pids.update(int(w["pid"]) for w in workers)
    return workers


def _answers_by_pid(port: int, want: int, timeout: float = 20.0) -> dict[int, dict[str, Any]]:
    """Fresh connections until ``want`` different worker pids have answered; pid -> body."""
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < want:
        assert time.monotonic() < deadline, f"only {sorted(seen)} answered within {timeout}s"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            body: dict[str, Any] = json.loads(response.read())
            assert response.status == 200, body
        finally:
            conn.close()
        seen[int(body["pid"])] = body
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("stack", list(STACKS))
def test_two_worker_generations_swap_ten_times_under_load_and_fail_no_request(
    tmp_path: Path, build_release: BuildRelease, stack: str
) -> None:
    releases = _releases(build_release, stack)
    with supervisor(releases[0].tarball, tmp_path) as sup:
        workers = _workers(sup)
        assert len(workers) == WORKERS and len({w["pid"] for w in workers}) == WORKERS
        answers = _answers_by_pid(sup.port, WORKERS)  # both accept on the one listener
        assert set(answers) == {w["pid"] for w in workers}
        assert sorted(b["worker"] for b in answers.values()) == [0, 1]  # worker_index()
        retired: set[int] = set()
        slow: dict[str, Any] = {}
        with Load("127.0.0.1", sup.port, keepalive=3, fresh=2, pause=0.01) as load:
            assert load.wait_requests(30)
            slower = threading.Thread(target=_slow, args=(sup.port, slow))
            slower.start()
            for i in range(10):
                target = releases[(i + 1) % len(releases)]
                retired |= {int(w["pid"]) for w in workers}
                result = sup.upgrade(target.tarball)
                assert result["ok"] and result["release"] == target.manifest.release_id
                workers = _workers(sup)
                pids = {int(w["pid"]) for w in workers}
                assert len(pids) == WORKERS and not pids & retired  # a whole new set
                assert load.wait_requests(20)
            slower.join(30)
        report = load.report
        assert report.failed == 0, report.summary()
        assert set(report.versions) == {"1.0.0", "2.0.0"}
        # the 1.5 s request started on the first generation and finished during its drain
        assert slow.get("status") == 200 and slow.get("version") == "1.0.0", slow
        answers = _answers_by_pid(sup.port, WORKERS)  # both serve after 10 swaps
        assert set(answers) == pids and sorted(b["worker"] for b in answers.values()) == [0, 1]
        assert not any(pid_alive(p) for p in retired)  # every retired worker exited


def test_env_set_reaches_every_worker_of_the_next_generation_and_none_running(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = _releases(build_release, "flask")
    with supervisor(releases[0].tarball, tmp_path) as sup:
        running = _answers_by_pid(sup.port, WORKERS)
        assert [b["env"] for b in running.values()] == [None, None]
        done = sup.cli("env", "set", "FIXTURE_ENV=postgres://db/app")
        assert done.returncode == 0, done.stderr
        again = _answers_by_pid(sup.port, WORKERS)
        assert set(again) == set(running)  # the same two workers, not restarted ...
        assert [b["env"] for b in again.values()] == [None, None]  # ... and unchanged
        sup.upgrade(releases[1].tarball)
        after = _answers_by_pid(sup.port, WORKERS)
        assert not set(after) & set(running)
        assert [(b["version"], b["env"]) for b in after.values()] == [
            ("2.0.0", "postgres://db/app")
        ] * WORKERS


@pytest.mark.slow
def test_sighup_restarts_every_worker_under_load_and_fails_no_request(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    """``kill -HUP <supervisor>`` (what ``systemctl reload`` sends) replaces the whole
    generation blue-green: two new workers, the same release, nothing failed."""
    releases = _releases(build_release, "fastapi")
    with supervisor(releases[0].tarball, tmp_path) as sup:
        before = {int(w["pid"]) for w in _workers(sup)}
        with Load("127.0.0.1", sup.port, keepalive=3, fresh=2, pause=0.01) as load:
            assert load.wait_requests(30)
            for _ in range(2):
                generation = sup.status()["active"]["generation"]
                sup.proc.send_signal(signal.SIGHUP)
                wait_for(
                    lambda g=generation: (
                        (s := sup.status())["active"]["generation"] > g and not s["upgrading"]
                    ),
                    timeout=60,
                    what="the restart's new generation",
                )
                assert load.wait_requests(20)
        report = load.report
        assert report.failed == 0, report.summary()
        after = _workers(sup)
        assert len(after) == WORKERS and not {int(w["pid"]) for w in after} & before
        assert {w["release"] for w in after} == {releases[0].manifest.release_id}
