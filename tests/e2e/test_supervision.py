"""Promises 6, 7 and 10, and supervision: no orphans, restarts, signals, the owner check."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hotswap.control.client import Client
from hotswap.errors import HotswapError
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.e2e.harness import pid_alive, start_supervisor, supervisor, wait_for


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_supervisor_killed_leaves_no_orphan_and_restart_serves_current_release(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    state = tmp_path / "state"
    sup = start_supervisor(release_v1.tarball, state)
    try:
        sup.upgrade(release_v2.tarball)
        child = sup.get_json()["pid"]
        sup.proc.kill()  # SIGKILL: no chance to clean up
        sup.proc.wait(10)
        # promise 6: the generation stops accepting at once and exits
        wait_for(lambda: _refused(sup.port), timeout=10, what="the port to refuse connections")
        wait_for(lambda: not pid_alive(child), timeout=15, what="the orphan to exit")
    finally:
        if sup.proc.poll() is None:
            sup.proc.kill()
    # promise 7: a new supervisor without a release argument boots the last deployed one
    with supervisor("", tmp_path) as again:
        assert again.get_json()["version"] == "2.0.0"
        assert again.status()["active"]["release"] == release_v2.manifest.release_id


def test_dead_generation_is_restarted_and_queued_requests_are_served(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        first = sup.get_json()["pid"]
        with Load("127.0.0.1", sup.port, keepalive=0, fresh=2) as load:
            assert load.wait_requests(10)
            killed_at = time.monotonic()
            os.kill(first, signal.SIGKILL)
            wait_for(
                lambda: (s := sup.status())["active"] and s["active"]["pid"] != first,
                what="a restarted generation",
            )
            assert load.wait_requests(20)
        # only requests already in the killed process failed (at most one per client); those
        # that arrived while no generation ran waited in the listen queue and were served
        assert load.report.failed <= 2, load.report.summary()
        assert all(o.started < killed_at for o in load.report.errors), load.report.errors
        assert any(o.started > killed_at and o.error is None for o in load.report.outcomes)
        status = sup.status()
        assert status["recent"][0]["how"] == "restart"
        assert status["current"] == release_v1.manifest.release_id


def test_crash_loop_gives_up_with_exit_status_1(tmp_path: Path, release_v1: BuildResult) -> None:
    state = tmp_path / "state"
    argv = [
        sys.executable,
        "-m",
        "hotswap.cli",
        "run",
        str(release_v1.tarball),
        "--state-dir",
        str(state),
        "--bind",
        "127.0.0.1:0",
        "--restart-backoff",
        "0.05",
        "--max-restarts",
        "3",
        "--restart-window",
        "60",
    ]
    env = {**os.environ, "FIXTURE_EXIT_AFTER_READY": "1.0.0:0.2"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "too many restarts, giving up" in done.stderr
    assert done.stderr.count("restarting the current release") == 3


def test_sighup_restarts_the_current_release_blue_green(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        first = sup.get_json()["pid"]
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            sup.proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda: sup.get_json()["pid"] != first and not sup.status()["upgrading"],
                what="the SIGHUP restart",
            )
            assert load.wait_requests(20)
        assert load.report.failed == 0, load.report.summary()
        assert sup.status()["recent"][0]["how"] == "restart"


def test_sigterm_drains_in_flight_requests_and_exits(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    sup = start_supervisor(release_v1.tarball, tmp_path / "state")
    conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=30)
    conn.request("GET", "/")  # the generation now owns this keep-alive connection
    assert conn.getresponse().read()
    conn.request("GET", "/slow?s=1")
    sup.proc.send_signal(signal.SIGTERM)
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["path"] == "/slow"
    assert sup.proc.wait(30) == 0
    assert _refused(sup.port)
    assert not (tmp_path / "state" / "control.sock").exists()


def test_control_socket_refuses_another_uid(release_v1: BuildResult) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to act as another uid")
    # pytest's tmp dirs are private to root; the other user must at least reach the socket
    base = Path(tempfile.mkdtemp(prefix="hotswap-uid-"))
    os.chmod(base, 0o711)
    try:
        _refuses_another_uid(base, release_v1)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _refuses_another_uid(base: Path, release_v1: BuildResult) -> None:
    with supervisor(release_v1.tarball, base) as sup:
        control = sup.state_dir / "control.sock"
        assert (control.stat().st_mode & 0o777) == 0o600
        assert (sup.state_dir.stat().st_mode & 0o777) == 0o700
        # open the file-system gates so only the peer-credential check stands in the way
        os.chmod(sup.state_dir, 0o711)
        os.chmod(control, 0o666)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become another user, then try to steer
            code = b"?"
            try:
                os.setgid(65534)
                os.setuid(65534)
                Client(control, timeout=10).call("status")
                code = b"allowed"
            except HotswapError as e:
                code = e.code.encode()
            except BaseException as e:
                code = repr(e).encode()
            finally:
                os.write(write_end, code)
                os._exit(0)
        os.close(write_end)
        answer = os.read(read_end, 1000).decode()
        os.close(read_end)
        os.waitpid(pid, 0)
        os.chmod(sup.state_dir, 0o700)
        os.chmod(control, 0o600)
        assert answer == "permission_denied", answer
        assert sup.status()["active"] is not None  # still steerable by its owner


def test_unix_and_ipv6_listeners(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    path = tmp_path / "app.sock"
    binds = [f"unix:{path}"]
    if socket.has_ipv6:
        binds.append("[::1]:0")
    port_sup = start_supervisor(release_v1.tarball, tmp_path / "state", binds=binds, wait=False)
    try:

        def unix_get() -> bytes | None:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(path))
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    chunks = []
                    while data := sock.recv(65536):
                        chunks.append(data)
                    return b"".join(chunks)
            except OSError:
                return None

        body = wait_for(unix_get, what="the unix listener to answer")
        assert b'"version": "1.0.0"' in body
        wait_for(lambda: not port_sup.status()["upgrading"], what="initial boot")
        listeners = port_sup.status()["supervisor"]["listeners"]
        assert listeners[0] == f"unix:{path}"
        if socket.has_ipv6:
            host_port = listeners[1]
            assert host_port.startswith("[::1]:")
            port = int(host_port.rsplit(":", 1)[1])
            conn = http.client.HTTPConnection("::1", port, timeout=10)
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
            conn.close()
        port_sup.upgrade(release_v2.tarball)
        assert b'"version": "2.0.0"' in wait_for(unix_get, what="v2 on the unix listener")
        assert port_sup.stop() == 0
        assert not path.exists()
    finally:
        if port_sup.proc.poll() is None:
            port_sup.proc.kill()


def test_a_second_supervisor_on_the_same_state_dir_exits_naming_the_first(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    """Issue 9 item 9: a second `hotswap run` on a state dir in use stole the control socket
    (and unlinked it when it stopped). Now it exits at once with `state_dir_locked` (exit 5)
    and the first one's pid, before it touches anything; the first keeps being steerable."""
    with supervisor(release_v1.tarball, tmp_path) as first:
        sock = first.state_dir / "control.sock"
        inode = sock.stat().st_ino
        other = subprocess.run(
            [sys.executable, "-m", "hotswap.cli", "run", str(release_v1.tarball),
             "--state-dir", str(first.state_dir), "--bind", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode == 5, other
        assert "state_dir_locked" in other.stderr
        assert f"pid {first.proc.pid}" in other.stderr
        assert sock.stat().st_ino == inode  # not replaced
        assert first.status()["active"]["release"] == release_v1.manifest.release_id
    # once the first has stopped, the state dir is free again
    with supervisor("", tmp_path) as again:
        assert again.status()["active"]["release"] == release_v1.manifest.release_id
