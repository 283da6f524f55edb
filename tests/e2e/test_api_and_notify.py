"""hotswap.start's enabled/pass-through rule, the API from inside a generation, sd_notify."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from hotswap.release.build import BuildResult
from hotswap.testing.load import free_port, wait_http
from tests.e2e.harness import supervisor

SCRIPT = """
import sys, hotswap
code = hotswap.start(lambda: print("called directly") or 7, bind=[sys.argv[1]], release=sys.argv[2])
sys.exit(code)
"""


def test_start_without_hotswap_enabled_just_calls_the_callable(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HOTSWAP"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "127.0.0.1:1", str(release_v1.tarball)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 7 and "called directly" in done.stdout


def test_start_with_hotswap_enabled_becomes_the_supervisor(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    port = free_port()
    env = {**os.environ, "HOTSWAP": "yes", "HOTSWAP_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, f"127.0.0.1:{port}", str(release_v1.tarball)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http("127.0.0.1", port, timeout=60)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "called directly" not in out
    assert "serving 1.0.0-" in err


def test_handoff_api_works_from_inside_a_generation(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        first = sup.get_json("/remember?key=one")
        assert first["all"]["one"]["by"] == "1.0.0"
        sup.upgrade(release_v2.tarball)
        second = sup.get_json("/remember?key=two")
        assert second["all"]["one"]["by"] == "1.0.0"  # survived the cutover
        assert second["all"]["two"]["by"] == "2.0.0"


def test_systemd_notify_ready_and_reloading(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    messages: list[str] = []
    try:
        with supervisor(
            release_v1.tarball, tmp_path, env={"NOTIFY_SOCKET": str(notify_path)}
        ) as sup:
            messages.append(notify.recv(4096).decode())
            assert "READY=1" in messages[0] and f"MAINPID={sup.proc.pid}" in messages[0]
            pid = sup.upgrade(release_v2.tarball)["pid"]
            # only the supervisor speaks to systemd: its generations never see NOTIFY_SOCKET
            assert b"NOTIFY_SOCKET=" not in Path(f"/proc/{pid}/environ").read_bytes()
            messages.append(notify.recv(4096).decode())
            messages.append(notify.recv(4096).decode())
        messages.append(notify.recv(4096).decode())
    finally:
        notify.close()
    assert messages[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert messages[2] == "READY=1"
    assert messages[3] == "STOPPING=1"
