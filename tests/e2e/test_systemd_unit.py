"""The units of ``hotswap systemd-unit``, run the way systemd runs them (no systemd as PID 1
here): the socket unit's ports passed with LISTEN_FDS, ``ExecStart=`` with NOTIFY_SOCKET,
``ExecReload=`` for ``systemctl reload``, SIGTERM to the main process alone (KillMode=mixed)
within ``TimeoutStopSec``, and a second start after a deploy booting the current release, not
the unit's ``--initial`` one."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import BuildResult
from tests.e2e.harness import Running, stop_and_check, wait_for
from tests.e2e.test_socket_activation import launch_activated


def _units(tmp_path: Path, tarball: Path, port: int) -> dict[str, dict[str, list[str]]]:
    done = subprocess.run(
        [sys.executable, "-m", "hotswap.cli", "systemd-unit", "--name", "shop", "--socket",
         "--bind", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"),
         "--release", str(tarball), "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    out: dict[str, dict[str, list[str]]] = {}
    for name, text in json.loads(done.stdout)["files"].items():
        directives: dict[str, list[str]] = {}
        for line in text.splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                directives.setdefault(key, []).append(value)
        out[name] = directives
    return out


def _recv_until(notify: socket.socket, wanted: str, seen: list[str]) -> None:
    while True:
        message = notify.recv(4096).decode()
        seen.append(message)
        if wanted in message.split("\n"):
            return


def test_unit_starts_reloads_blue_green_stops_in_time_and_restarts_on_the_current_release(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    from hotswap.testing.load import free_port

    port = free_port()
    units = _units(tmp_path, release_v1.tarball, port)
    service, sock = units["shop.service"], units["shop.socket"]
    assert sock["ListenStream"] == [f"127.0.0.1:{port}"]
    exec_start = shlex.split(service["ExecStart"][0])
    exec_reload = shlex.split(service["ExecReload"][0])
    stop_timeout = float(service["TimeoutStopSec"][0])
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(60)
    env = {"NOTIFY_SOCKET": str(notify_path)}
    seen: list[str] = []
    launched: list[subprocess.Popen[bytes]] = []
    try:
        # first start: nothing deployed, so --initial boots v1
        proc = launch_activated(exec_start, {"http": port}, tmp_path / "first.log", env)
        launched.append(proc)
        running = Running(proc, port, tmp_path / "state", tmp_path / "first.log")
        _recv_until(notify, "READY=1", seen)
        assert running.get_json()["version"] == "1.0.0"
        running.upgrade(release_v2.tarball)
        _recv_until(notify, "READY=1", seen)
        first_gen = running.status()["active"]["pid"]
        # systemctl reload: a blue-green restart of the current release, synchronous
        reload = subprocess.run(exec_reload, capture_output=True, text=True, timeout=120)
        assert reload.returncode == 0, reload.stderr
        mark = len(seen)
        _recv_until(notify, "READY=1", seen)
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in seen[mark:]), seen
        status = running.status()
        assert status["active"]["pid"] != first_gen
        assert status["current"] == release_v2.manifest.release_id
        assert running.get_json()["version"] == "2.0.0"
        # Type=notify-reload (systemd >= 253) sends SIGHUP and waits for RELOADING=1, READY=1
        mark = len(seen)
        proc.send_signal(signal.SIGHUP)
        _recv_until(notify, "READY=1", seen)
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in seen[mark:]), seen
        wait_for(lambda: not running.status()["upgrading"], what="the SIGHUP restart to finish")
        # systemctl stop (KillMode=mixed): SIGTERM to the main process, done within the timeout
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(stop_timeout) == 0
        assert time.monotonic() - started < stop_timeout
        stop_and_check(running, running.seen_pids)
        _recv_until(notify, "STOPPING=1", seen)
        # the next start (a reboot): the same ExecStart boots the current release, v2
        proc = launch_activated(exec_start, {"http": port}, tmp_path / "second.log", env)
        launched.append(proc)
        again = Running(proc, port, tmp_path / "state", tmp_path / "second.log")
        _recv_until(notify, "READY=1", seen)
        wait_for(lambda: not again.status()["upgrading"], what="the boot to finish")
        assert again.get_json()["version"] == "2.0.0"
        stop_and_check(again, again.seen_pids)
    finally:
        notify.close()
        for leftover in launched:  # on a failure: nothing of this test keeps running
            if leftover.poll() is None:
                leftover.kill()
                leftover.wait(10)
