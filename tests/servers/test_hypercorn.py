"""hypercorn as the server (the project does not list it: build adds it): HTTP/1.1 under load,
HTTP/2 over cleartext (h2c, prior knowledge) and a WebSocket, through real swaps."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor
from tests.servers.conftest import WSAPP
from tests.servers.test_uvicorn_matrix import _close_code, _greeting

pytestmark = pytest.mark.slow  # real builds and swaps under load

SHUTDOWN_TIMEOUT = 20


@pytest.fixture(scope="session")
def hypercorn_releases(build_release: BuildRelease) -> list[BuildResult]:
    tool = {"server": "hypercorn", "shutdown_timeout": SHUTDOWN_TIMEOUT}
    return [build_release(v, source=WSAPP, tool=tool) for v in ("5.0.0", "6.0.0")]


def _h2_client(port: int, stop: threading.Event, out: dict[str, Any]) -> None:
    """Sequential HTTP/2 requests with a short think time, as a browser tab would make."""
    versions: set[str] = set()
    errors: list[str] = []
    protocols: set[str] = set()
    count = 0
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        while not stop.is_set():
            try:
                response = client.get(f"http://127.0.0.1:{port}/")
                protocols.add(response.http_version)
                if response.status_code != 200:
                    errors.append(f"status {response.status_code}")
                versions.add(response.headers["x-version"])
            except httpx.HTTPError as e:
                errors.append(repr(e))
            count += 1
            time.sleep(0.02)
    out.update(versions=versions, errors=errors, protocols=protocols, count=count)


def test_hypercorn_http1_through_swaps_fails_nothing_and_websockets_get_1012(
    tmp_path: Path, hypercorn_releases: list[BuildResult]
) -> None:
    dists = {d["name"].lower() for d in hypercorn_releases[0].manifest.distributions}
    assert "hypercorn" in dists  # added by build: the project does not list it
    with supervisor(hypercorn_releases[0].tarball, tmp_path) as sup:
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2, pause=0.01) as load:
            assert load.wait_requests(30)
            for i in range(2):  # there and back: each swap direction once
                target = hypercorn_releases[(i + 1) % 2]
                with connect(f"ws://127.0.0.1:{sup.port}/ws", open_timeout=10) as ws:
                    assert _greeting(ws)[0] != target.manifest.version
                    started = time.monotonic()
                    assert sup.upgrade(target.tarball)["ok"]
                    assert time.monotonic() - started < SHUTDOWN_TIMEOUT / 2
                    assert _close_code(ws, 5) == 1012
                assert sup.get_json()["version"] == target.manifest.version
                assert load.wait_requests(20)
        assert load.report.failed == 0, load.report.summary()
        assert set(load.report.versions) == {"5.0.0", "6.0.0"}
        assert "ASGI app on hypercorn" in sup.log()


def test_hypercorn_h2c_is_served_through_swaps(
    tmp_path: Path, hypercorn_releases: list[BuildResult]
) -> None:
    with supervisor(hypercorn_releases[0].tarball, tmp_path) as sup:
        h2: dict[str, Any] = {}
        stop = threading.Event()
        h2_thread = threading.Thread(target=_h2_client, args=(sup.port, stop, h2))
        h2_thread.start()
        for i in range(3):
            assert sup.upgrade(hypercorn_releases[(i + 1) % 2].tarball)["ok"]
        stop.set()
        h2_thread.join(30)
        assert h2["protocols"] == {"HTTP/2"}, h2
        assert h2["versions"] == {"5.0.0", "6.0.0"} and h2["count"] > 20, h2
    # the same run, for the promise of 0 failed (once its own test, with the same swaps)
    if h2["errors"]:
        pytest.xfail(
            "known gap: hypercorn offers no public graceful GOAWAY, so an HTTP/2 connection "
            "is closed at the end of the drain and a request sent on it just then fails "
            f"(about one per swap under continuous HTTP/2 load; here {h2['errors']}); see "
            "docs/stacks/hypercorn.md"
        )
