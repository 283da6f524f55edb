"""Hot upgrades of a serving process while clients hammer it: zero failed requests, and the
responses switch to the new version. Real sockets, real HTTP, the lead's load generator."""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hotswap.hot import UpgradeGate, hot_upgrade
from hotswap.hot.testing import running_release
from hotswap.release.store import ReleaseStore
from hotswap.testing.load import Load, wait_http
from tests.hot.conftest import Hot

APP_V1 = """
    REQUESTS = {"count": 0}

    def version():
        return "v1"

    def handle(path):
        REQUESTS["count"] += 1
        return f"{version()} {path} #{REQUESTS['count']}"
"""


def _serve(handle: Callable[[str], str], version: Callable[[], str], gate: UpgradeGate):  # type: ignore[no-untyped-def]
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with gate:
                body, ver = handle(self.path).encode(), version()
            self.send_response(200)
            self.send_header("x-version", ver)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http")
    thread.start()
    return server, thread


def test_threaded_server_hot_upgrade_under_load(hot: Hot) -> None:
    v2 = {"app.py": APP_V1.replace('"v1"', '"v2"')}
    _, r2, (app,) = hot.v1_v2({"app.py": APP_V1}, v2, "app")
    from_import = app.handle  # what a framework would hold on to
    gate = UpgradeGate()
    server, thread = _serve(from_import, app.version, gate)
    port = server.server_address[1]
    try:
        with Load("127.0.0.1", port, keepalive=2, fresh=2) as load:
            assert load.wait_requests(40)
            stats = hot.upgrade(r2, gate=gate)
            upgraded = time.monotonic()
            assert load.wait_requests(40)
        report = load.report
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert report.failed == 0, report.errors[:3]
    assert set(report.versions) == {"v1", "v2"}
    after = [o.version for o in report.outcomes if o.started >= upgraded]
    assert after and set(after) == {"v2"}
    assert app.REQUESTS["count"] == report.total  # module state carried across the upgrade
    assert stats.window_ms < 1000


@pytest.mark.slow
def test_fixture_app_tarball_hot_upgrade_under_load(build_release, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The real thing: tarballs built by ``hotswap build``, unpacked by the release store,
    served by uvicorn on its event loop; the commit runs as one step on that loop."""
    uvicorn = pytest.importorskip("uvicorn")
    v1, v2 = build_release("1.0.0"), build_release("2.0.0")
    state = tmp_path / "state"
    rel1 = ReleaseStore(state).unpack(v1.tarball)
    with running_release(rel1.root):
        main = importlib.import_module("fixture_app.main")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(main.app, log_level="warning", lifespan="on"))
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), name="uvicorn"
        )
        thread.start()
        try:
            wait_http("127.0.0.1", port)
            with Load("127.0.0.1", port, keepalive=2, fresh=2) as load:
                assert load.wait_requests(40)
                stats = hot_upgrade(v2.tarball, app="fixture-app", loop=loop)
                upgraded = time.monotonic()
                assert load.wait_requests(40)
            report = load.report
        finally:
            server.should_exit = True
            thread.join(15)
            loop.close()
            sock.close()
    assert report.failed == 0, report.errors[:3]
    assert set(report.versions) == {"1.0.0", "2.0.0"}
    after = [o.version for o in report.outcomes if o.started >= upgraded]
    assert after and set(after) == {"2.0.0"}
    assert stats.modules_changed == ("fixture_app",) and stats.importers_rebound >= 1
    assert stats.new_release == v2.manifest.release_id
    assert (state / "releases" / v2.manifest.release_id / "RELEASE.json").is_file()
