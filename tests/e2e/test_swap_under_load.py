"""Promises 1 and 5 end to end: swaps under load drop nothing, listeners are never re-bound."""

from __future__ import annotations

import http.client
import os
import threading
from pathlib import Path

import pytest

from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.e2e.harness import fd_count, supervisor


def _slow_request(port: int, path: str, out: dict[str, object]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        out["status"] = response.status
        out["body"] = response.read()
        out["version"] = response.getheader("x-version")
    except OSError as e:
        out["error"] = repr(e)
    finally:
        conn.close()


@pytest.mark.slow
def test_twenty_swaps_under_load_fail_no_request(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        supervisor_pid = sup.proc.pid
        fds_before = fd_count(supervisor_pid)
        long_request: dict[str, object] = {}
        stream: dict[str, object] = {}
        with Load("127.0.0.1", sup.port, keepalive=3, fresh=3) as load:
            assert load.wait_requests(50)
            slow = threading.Thread(
                target=_slow_request, args=(sup.port, "/slow?s=2", long_request)
            )
            streamer = threading.Thread(
                target=_slow_request, args=(sup.port, "/stream?n=20", stream)
            )
            slow.start()
            streamer.start()
            for i in range(20):
                target = release_v2 if i % 2 == 0 else release_v1
                result = sup.upgrade(target.tarball)
                assert result["ok"] and result["release"] == target.manifest.release_id
                assert load.wait_requests(30)
            slow.join(30)
            streamer.join(30)
        report = load.report
        assert report.failed == 0, report.summary()
        assert set(report.versions) == {"1.0.0", "2.0.0"}
        assert report.total > 600
        # the 2 s request and the 2 s stream started on generation 1 and finished across
        # several cutovers
        assert long_request.get("status") == 200, long_request
        assert long_request.get("version") == "1.0.0"
        assert stream.get("status") == 200 and stream.get("body") == b"".join(
            f"{i}\n".encode() for i in range(20)
        ), stream
        # no descriptor leaked in the supervisor over 20 swaps
        assert fd_count(supervisor_pid) <= fds_before


def test_one_listening_socket_for_life(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    """Every generation holds the supervisor's own listening socket (same kernel inode)."""
    with supervisor(release_v1.tarball, tmp_path) as sup:

        def listener_inode(pid: int) -> str:
            return os.readlink(f"/proc/{pid}/fd/3")

        first = sup.get_json()["pid"]
        inode = listener_inode(first)
        assert inode.startswith("socket:[")
        supervisor_fds = {
            os.readlink(f"/proc/{sup.proc.pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{sup.proc.pid}/fd")
        }
        assert inode in supervisor_fds
        for target in (release_v2, release_v1, release_v2):
            pid = sup.upgrade(target.tarball)["pid"]
            assert listener_inode(pid) == inode
        raw = Path(f"/proc/{pid}/environ").read_text()
        environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
        assert environ["LISTEN_FDS"] == "1"
        assert environ["LISTEN_FDNAMES"] == "http"


@pytest.mark.slow
def test_keepalive_clients_that_pause_between_requests_fail_nothing(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    """An idle keep-alive connection is not cut at drain: the client's next request on it is
    answered (with Connection: close) as long as it comes within the keep-alive timeout."""
    with supervisor(release_v1.tarball, tmp_path) as sup:
        with Load("127.0.0.1", sup.port, keepalive=8, fresh=0, pause=1.5) as load:
            assert load.wait_requests(8)
            for target in (release_v2, release_v1):
                sup.upgrade(target.tarball)
                assert load.wait_requests(16)
        assert load.report.failed == 0, load.report.summary()
        assert set(load.report.versions) == {"1.0.0", "2.0.0"}


def test_responses_carry_date_and_server_headers(tmp_path: Path, release_v1: BuildResult) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        _status, headers, _body = sup.get("/")
        assert headers["server"] == "uvicorn"
        assert headers["date"].endswith(" GMT")
