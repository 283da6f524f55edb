"""WSGI apps first class: Flask and Django (which list no server) and FastAPI, each built for
real, swapped under load with new-connection, keep-alive and slow clients: 0 failed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import ChildError
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor
from tests.servers.conftest import DJANGOAPP, FASTAPIAPP

pytestmark = pytest.mark.slow  # real builds and swaps under load


def _slow(port: int, out: dict[str, Any]) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/slow?s=1.5")
        response = conn.getresponse()
        out["status"], out["version"] = response.status, response.getheader("x-version")
        response.read()
    except OSError as e:
        out["error"] = repr(e)
    finally:
        conn.close()


def _swaps_under_load(tmp_path: Path, releases: list[BuildResult], swaps: int) -> dict[str, Any]:
    with supervisor(releases[0].tarball, tmp_path) as sup:
        first = sup.get_json()
        slow: dict[str, Any] = {}
        with Load("127.0.0.1", sup.port, keepalive=3, fresh=2, pause=0.01) as load:
            assert load.wait_requests(30)
            slower = threading.Thread(target=_slow, args=(sup.port, slow))
            slower.start()
            for i in range(swaps):
                target = releases[(i + 1) % len(releases)]
                result = sup.upgrade(target.tarball)
                assert result["ok"] and result["release"] == target.manifest.release_id
                assert load.wait_requests(20)
            slower.join(30)
        report = load.report
        assert report.failed == 0, report.summary()
        assert set(report.versions) == {r.manifest.version for r in releases}
        # the slow request started on the first generation and finished during its drain
        assert slow.get("status") == 200 and slow.get("version") == "1.0.0", slow
        return first


@pytest.fixture(scope="session")
def django_releases(build_release: BuildRelease) -> list[BuildResult]:
    return [build_release(v, source=DJANGOAPP) for v in ("1.0.0", "2.0.0")]


def test_flask_swaps_under_load_fail_no_request(
    tmp_path: Path, flask_releases: list[BuildResult]
) -> None:
    # ten swaps of each stack, with two workers: test_workers_stacks.py
    first = _swaps_under_load(tmp_path, flask_releases, swaps=3)
    assert first["thread"].startswith("WSGI"), first  # a2wsgi's thread pool
    dists = {d["name"].lower() for d in flask_releases[0].manifest.distributions}
    assert {"uvicorn", "a2wsgi"} <= dists  # added by build: the project lists neither


def test_django_swaps_under_load_fail_no_request(
    tmp_path: Path, django_releases: list[BuildResult]
) -> None:
    _swaps_under_load(tmp_path, django_releases, swaps=2)  # there and back


def test_fastapi_swaps_under_load_fail_no_request(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = [build_release(v, source=FASTAPIAPP) for v in ("1.0.0", "2.0.0")]
    first = _swaps_under_load(tmp_path, releases, swaps=2)  # there and back
    assert first["started"] is True


def test_health_answered_400_hints_at_allowed_hosts_and_the_old_release_serves(
    tmp_path: Path, build_release: BuildRelease, django_releases: list[BuildResult]
) -> None:
    """Django with DEBUG off refuses a Host it does not know with 400."""
    wrong = build_release("3.0.0", source=DJANGOAPP, tool={"health_host": "localhost"})
    with supervisor(django_releases[0].tarball, tmp_path) as sup:
        with pytest.raises(ChildError) as caught:
            sup.upgrade(wrong.tarball)
        assert caught.value.code == "health_failed"
        assert "answered 400" in caught.value.message
        assert "Host: localhost" in caught.value.message
        assert "ALLOWED_HOSTS" in caught.value.message
        assert sup.get_json()["version"] == "1.0.0"
