"""The callable adapter: any TCP server, handed the inherited listeners systemd-style."""

from __future__ import annotations

import os
from pathlib import Path

from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor

TCP_APP = Path(__file__).parents[1] / "fixtures" / "tcpapp"


def test_plain_tcp_server_gets_systemd_listeners_and_swaps_without_failures(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", source=TCP_APP)
    v2 = build_release("2.0.0", source=TCP_APP)
    with supervisor(v1.tarball, tmp_path) as sup:
        info = sup.get_json()
        assert info["listen_pid"] == str(info["pid"])  # LISTEN_PID is the serving process
        assert info["listen_fds"] == "1" and info["listen_fdnames"] == "http"
        assert info["fds"] == [3] and info["families"] == ["AF_INET"]
        with Load("127.0.0.1", sup.port, keepalive=0, fresh=4) as load:
            for target in (v2, v1, v2, v1, v2):
                assert sup.upgrade(target.tarball)["ok"]
                assert load.wait_requests(20)
        assert load.report.failed == 0, load.report.summary()
        assert set(load.report.versions) == {"1.0.0", "2.0.0"}
        assert sup.get_json()["version"] == "2.0.0"
        assert not os.path.exists(f"/proc/{info['pid']}")
