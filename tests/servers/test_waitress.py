"""``server = "waitress"``: the Flask fixture (which lists no server: ``hotswap build`` adds
waitress) served by waitress in each of two workers, through swaps under new-connection,
keep-alive and slow clients with 0 failed; a release whose health probe fails is refused and
the old one keeps serving; the drain says ``Connection: close`` on a kept-alive connection and
ends in bounded time; a hot upgrade under load keeps the workers and fails no request."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import ChildError
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import pid_alive, supervisor, wait_for
from tests.servers.conftest import FLASKAPP
from tests.servers.test_wsgi_stacks import _slow

TOOL = {"server": "waitress", "workers": 2}


def _releases(build_release: BuildRelease) -> list[BuildResult]:
    return [build_release(v, source=FLASKAPP, tool=TOOL) for v in ("1.0.0", "2.0.0")]


def _get(conn: http.client.HTTPConnection, path: str = "/") -> tuple[int, Any, dict[str, Any]]:
    conn.request("GET", path)
    response = conn.getresponse()
    body: dict[str, Any] = json.loads(response.read())
    return response.status, response, body


@pytest.mark.slow
def test_waitress_two_workers_swap_under_load_and_fail_no_request(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = _releases(build_release)
    with supervisor(releases[0].tarball, tmp_path) as sup:
        workers = sup.status()["active"]["workers"]
        assert len(workers) == 2
        first = sup.get_json()
        assert first["version"] == "1.0.0" and first["thread"].startswith("waitress")
        retired: set[int] = set()
        slow: dict[str, Any] = {}
        with Load("127.0.0.1", sup.port, keepalive=3, fresh=2, pause=0.01) as load:
            assert load.wait_requests(30)
            slower = threading.Thread(target=_slow, args=(sup.port, slow))
            slower.start()
            for i in range(4):
                retired |= {int(w["pid"]) for w in workers}
                target = releases[(i + 1) % 2]
                result = sup.upgrade(target.tarball)
                assert result["ok"] and result["release"] == target.manifest.release_id
                workers = sup.status()["active"]["workers"]
                sup.seen_pids.update(int(w["pid"]) for w in workers)
                assert not {int(w["pid"]) for w in workers} & retired
                assert load.wait_requests(20)
            slower.join(30)
        report = load.report
        assert report.failed == 0, report.summary()
        assert set(report.versions) == {"1.0.0", "2.0.0"}
        assert slow.get("status") == 200 and slow.get("version") == "1.0.0", slow
        wait_for(lambda: not any(pid_alive(p) for p in retired), 20, "retired workers exit")


def test_waitress_failed_probe_is_refused_and_the_old_release_serves(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    good = _releases(build_release)[0]
    bad = build_release("3.0.0", source=FLASKAPP, tool={**TOOL, "health_path": "/missing"})
    with supervisor(good.tarball, tmp_path) as sup:
        with pytest.raises(ChildError) as caught:
            sup.upgrade(bad.tarball)
        assert caught.value.code == "health_failed", caught.value.message
        assert "404" in caught.value.message
        assert sup.get_json()["version"] == "1.0.0"
        assert sup.status()["active"]["release"] == good.manifest.release_id


def test_waitress_drain_closes_keepalive_and_is_bounded(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = _releases(build_release)
    with supervisor(releases[0].tarball, tmp_path) as sup:
        # one kept-alive connection per worker (fresh connections until both pids are held)
        held: dict[int, http.client.HTTPConnection] = {}
        deadline = time.monotonic() + 20
        while len(held) < 2:
            assert time.monotonic() < deadline
            conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=10)
            status, response, body = _get(conn)
            assert status == 200 and response.getheader("connection") != "close"
            if body["pid"] in held:
                conn.close()
            else:
                held[body["pid"]] = conn
        # each keeps sending on its connection (every 50 ms) until an answer says close
        seen: dict[int, list[Any]] = {}

        def client(pid: int, conn: http.client.HTTPConnection) -> None:
            try:
                while True:
                    status, response, body = _get(conn)
                    seen.setdefault(pid, []).append((status, body["pid"], body["draining"]))
                    if response.getheader("connection") == "close":
                        return
                    time.sleep(0.05)
            except OSError as e:
                seen.setdefault(pid, []).append(repr(e))
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=item) for item in held.items()]
        for thread in threads:
            thread.start()
        result = sup.upgrade(releases[1].tarball)
        assert result["ok"]
        started = time.monotonic()
        for thread in threads:
            thread.join(15)
        for pid, answers in seen.items():
            # every request answered, by its own worker; the last one during its drain
            assert all(isinstance(a, tuple) and a[:2] == (200, pid) for a in answers), answers
            assert answers[-1][2] is True, answers[-1]
        wait_for(lambda: not any(pid_alive(p) for p in held), 15, "old workers exit")
        assert time.monotonic() - started < 10  # bounded: well within shutdown_timeout
        assert sup.get_json()["version"] == "2.0.0"


def test_waitress_with_an_asgi_entry_is_refused_at_build(build_release: BuildRelease) -> None:
    from hotswap.errors import UsageError
    from tests.servers.conftest import FASTAPIAPP

    with pytest.raises(UsageError) as caught:
        build_release("1.0.0", source=FASTAPIAPP, tool={"server": "waitress"})
    assert caught.value.code == "bad_config" and "serves WSGI apps" in caught.value.message


@pytest.mark.slow
def test_waitress_hot_upgrade_under_load_keeps_the_workers_and_fails_no_request(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = _releases(build_release)
    with supervisor(releases[0].tarball, tmp_path) as sup:
        before = {int(w["pid"]) for w in sup.status()["active"]["workers"]}
        with Load("127.0.0.1", sup.port, keepalive=3, fresh=2, pause=0.01) as load:
            assert load.wait_requests(30)
            result = sup.upgrade_hot(releases[1].tarball)
            assert result["ok"], result
            assert load.wait_requests(30)
        assert load.report.failed == 0, load.report.summary()
        status = sup.status()
        assert status["active"]["release"] == releases[1].manifest.release_id
        assert {int(w["pid"]) for w in status["active"]["workers"]} == before  # same processes
        assert "2.0.0" in load.report.versions
