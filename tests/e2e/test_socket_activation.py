"""Socket activation: a supervisor started with systemd's LISTEN_FDS serves on the sockets it was
handed and binds none of its own (the socket unit owns the ports; promise 1 then holds across
supervisor restarts too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import BuildResult
from tests.e2e.harness import Running, stop_and_check, wait_for

# Exec ARGV with listening sockets at fds 3, 4, ..., as systemd does: LISTEN_PID is the pid after
# exec (exec keeps it). Ports and names come in as "name=port,name=port".
_LAUNCH = """
import os, socket, sys
pairs = [item.split("=") for item in sys.argv[1].split(",")]
socks = [socket.create_server(("127.0.0.1", int(port)), backlog=128) for _, port in pairs]
high = [os.dup(s.fileno()) for s in socks]  # the sockets may already sit at 3, 4, ...
for target, fd in enumerate(high, 3):
    os.dup2(fd, target)  # inheritable, as systemd passes them
os.environ.update(
    LISTEN_PID=str(os.getpid()),
    LISTEN_FDS=str(len(pairs)),
    LISTEN_FDNAMES=":".join(name for name, _ in pairs),
)
os.execv(sys.argv[2], sys.argv[2:])
"""


def launch_activated(
    argv: list[str], listeners: dict[str, int], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` the way systemd starts a socket-activated service."""
    spec = ",".join(f"{name}={port}" for name, port in listeners.items())
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, spec, *argv],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )


HOTSWAP_RUN = [sys.executable, "-m", "hotswap.cli", "run"]


def _listening_inodes(pid: int) -> dict[int, int]:
    """inode -> port of every TCP socket in LISTEN state that ``pid`` holds."""
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[9]) in held:  # 0A: LISTEN
                out[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return out


def _fd_inode(pid: int, fd: int) -> int:
    return int(os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1])


def test_listen_fds_two_sockets_are_served_and_nothing_is_bound(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    from hotswap.testing.load import free_port, wait_http

    http_port, admin_port = free_port(), free_port()
    state = tmp_path / "state"
    log_path = tmp_path / "supervisor.log"
    argv = [*HOTSWAP_RUN, str(release_v1.tarball), "--state-dir", str(state)]
    proc = launch_activated(argv, {"http": http_port, "admin": admin_port}, log_path)
    running = Running(proc, http_port, state, log_path)
    try:
        wait_http("127.0.0.1", http_port, timeout=60)
        wait_for(lambda: not running.status()["upgrading"], what="the initial boot")
        running.get_json()
        admin = Running(proc, admin_port, state, log_path)
        assert admin.get_json()["version"] == "1.0.0"
        listening = _listening_inodes(proc.pid)
        # what the supervisor listens on is exactly what it was handed, at fds 3 and 4
        assert listening == {
            _fd_inode(proc.pid, 3): http_port,
            _fd_inode(proc.pid, 4): admin_port,
        }
        status = running.status()
        assert status["supervisor"]["listeners"] == [
            f"127.0.0.1:{http_port}",
            f"127.0.0.1:{admin_port}",
        ]
        # the generation gets them too, named as systemd named them
        gen_pid = status["active"]["pid"]
        environ = Path(f"/proc/{gen_pid}/environ").read_bytes().split(b"\0")
        assert b"LISTEN_FDNAMES=http:admin" in environ
    finally:
        stop_and_check(running, running.seen_pids)


def test_bind_with_socket_activation_is_refused(tmp_path: Path, release_v1: BuildResult) -> None:
    from hotswap.testing.load import free_port

    argv = [*HOTSWAP_RUN, str(release_v1.tarball), "--state-dir", str(tmp_path / "s")]
    argv += ["--bind", "127.0.0.1:1"]
    log_path = tmp_path / "log"
    proc = launch_activated(argv, {"http": free_port()}, log_path)
    assert proc.wait(60) == 2
    log = log_path.read_text()
    assert "bad_config" in log and "LISTEN_FDS" in log
