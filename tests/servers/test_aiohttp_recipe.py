"""The aiohttp recipe of docs/stacks/aiohttp.md (tests/fixtures/aiohttpapp), swapped under
load: 0 failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor
from tests.servers.conftest import FIXTURES

pytestmark = pytest.mark.slow  # real builds and swaps under load


def test_aiohttp_through_callable_swaps_under_load_fail_no_request(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = [build_release(v, source=FIXTURES / "aiohttpapp") for v in ("1.0.0", "2.0.0")]
    with supervisor(releases[0].tarball, tmp_path) as sup:
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2, pause=0.01) as load:
            assert load.wait_requests(30)
            for i in range(2):  # there and back
                assert sup.upgrade(releases[(i + 1) % 2].tarball)["ok"]
                assert load.wait_requests(20)
        assert load.report.failed == 0, load.report.summary()
        assert set(load.report.versions) == {"1.0.0", "2.0.0"}


SERVE = FIXTURES / "aiohttpapp" / "src" / "aiohttp_app" / "serve.py"


def test_aiohttp_a_route_added_in_the_factory_is_refused_and_a_handler_change_applied(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    source = SERVE.read_text()
    route = 'web.get("/slow", slow)]'
    assert route in source
    added = source.replace(route, 'web.get("/slow", slow), web.get("/extra", health)]')
    handler = source.replace('{"version": VERSION, "pid"', '{"version": VERSION, "v2": 1, "pid"')
    v1 = build_release("1.0.0", source=FIXTURES / "aiohttpapp")
    v2 = build_release(
        "1.0.0", source=FIXTURES / "aiohttpapp", extra_files={"src/aiohttp_app/serve.py": added}
    )
    v3 = build_release(
        "1.0.0", source=FIXTURES / "aiohttpapp", extra_files={"src/aiohttp_app/serve.py": handler}
    )
    with supervisor(v1.tarball, tmp_path) as sup:
        pid = sup.get_json()["pid"]
        refused = sup.cli("hot-upgrade", str(v2.tarball), "--json")
        assert refused.returncode != 0, refused.stdout
        error = json.loads(refused.stdout)["error"]
        assert {r["code"] for r in error["details"]["reasons"]} == {"startup_code"}, error
        assert "aiohttp_app.serve.make_app" in error["message"]
        assert sup.get_json().get("v2") is None
        done = sup.cli("hot-upgrade", str(v3.tarball), "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        answer = sup.get_json()
        assert answer["v2"] == 1 and answer["pid"] == pid
