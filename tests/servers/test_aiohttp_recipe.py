"""The aiohttp recipe of docs/stacks/aiohttp.md (tests/fixtures/aiohttpapp), swapped under
load: 0 failed."""

from __future__ import annotations

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
