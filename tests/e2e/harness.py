"""A real supervisor in a subprocess, for end-to-end tests: real processes, sockets and HTTP.

``supervisor(tarball, tmp_path, env=...)`` starts ``hotswap run`` on a free loopback port,
waits until it answers, and on exit stops it with SIGTERM and checks that nothing leaked:
no descriptor more than once it served, every generation it started gone, nothing listening
on the port any more.

A state dir that does not exist yet is created with the runtime copy of hotswap already in it
(``runtime/<version>-<hash>/``, hard links to one prepared once per test process), as a
supervisor restarted on its state dir finds it: preparing it compiles ~100 modules in a child
process, 0.6 s of every start on a 2-core machine. The supervisor still checks it and
prepares its own whenever the hash differs.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hotswap
from hotswap.testing.load import free_port, wait_http


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, with a deadline (no bare sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    return False


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    out.append(int(entry.name))
    return out


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    log_path: Path
    seen_pids: set[int] = field(default_factory=set)
    fds_at_start: int | None = None  # the supervisor's open descriptors once it served

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def get_json(self, path: str = "/") -> dict[str, Any]:
        status, _headers, body = self.get(path)
        assert status == 200, (status, body)
        data: dict[str, Any] = json.loads(body)
        if "pid" in data:
            self.seen_pids.add(int(data["pid"]))
        return data

    def upgrade(self, tarball: Path | str, **kwargs: Any) -> dict[str, Any]:
        result = hotswap.upgrade(tarball, state_dir=self.state_dir, **kwargs)
        self.seen_pids.add(int(result["pid"]))
        self.seen_pids.update(int(pid) for pid in result.get("pids", []))
        return result

    def upgrade_hot(self, tarball: Path | str, **kwargs: Any) -> dict[str, Any]:
        return hotswap.hot_upgrade_generation(tarball, state_dir=self.state_dir, **kwargs)

    def status(self) -> dict[str, Any]:
        status = hotswap.status(state_dir=self.state_dir)
        for gen in status["generations"]:
            self.seen_pids.add(int(gen["pid"]))
            self.seen_pids.update(int(pid) for pid in gen.get("pids", []))
        return status

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hotswap.cli", *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"supervisor did not stop in {timeout}s:\n{self.log()[-3000:]}"
            ) from None


_runtime_seed: Path | None = None


def seed_runtime(state_dir: Path) -> None:
    """Create ``state_dir`` (0700) with the prepared runtime copy of hotswap in it."""
    global _runtime_seed
    if state_dir.exists():
        return
    if _runtime_seed is None:
        from hotswap.supervisor import runtime_dir

        base = Path(tempfile.mkdtemp(prefix="hs-runtime-"))
        atexit.register(shutil.rmtree, base, True)
        _runtime_seed = runtime_dir.prepare(base)
    state_dir.mkdir(mode=0o700, parents=True)
    (state_dir / "runtime").mkdir(mode=0o700)
    target = state_dir / "runtime" / _runtime_seed.name
    shutil.copytree(_runtime_seed, target, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def start_supervisor(
    release: Path | str | None,
    state_dir: Path,
    *,
    env: dict[str, str] | None = None,
    binds: list[str] | None = None,
    port: int | None = None,
    wait: bool = True,
    args: list[str] | None = None,
) -> Running:
    port = port or free_port()
    seed_runtime(state_dir)
    log_path = state_dir.parent / f"{state_dir.name}-supervisor-{port}.log"
    argv = [sys.executable, "-m", "hotswap.cli", "run", *([str(release)] if release else [])]
    argv += ["--state-dir", str(state_dir)]  # no release: the current one of the state dir
    for bind in binds or [f"127.0.0.1:{port}"]:
        argv += ["--bind", bind]
    argv += args or []
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=full_env)
    running = Running(proc, port, state_dir, log_path)
    if wait:
        try:
            wait_http("127.0.0.1", port, timeout=60)
        except TimeoutError:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"supervisor never served:\n{running.log()[-3000:]}") from None
        running.get_json()
        # serving starts at cutover; the initial swap still records state.json after it
        wait_for(lambda: not running.status()["upgrading"], what="the initial boot to finish")
        running.fds_at_start = fd_count(proc.pid)
    return running


@contextlib.contextmanager
def supervisor(
    release: Path | str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    binds: list[str] | None = None,
    args: list[str] | None = None,
) -> Iterator[Running]:
    """A running supervisor; on exit: stopped, and no generation or listener left behind."""
    running = start_supervisor(release, tmp_path / "state", env=env, binds=binds, args=args)
    try:
        yield running
    finally:
        with contextlib.suppress(Exception):
            running.status()  # records the pids of every generation still known
        stop_and_check(running, running.seen_pids)


def stop_and_check(running: Running, pids: set[int]) -> None:
    """Stop the supervisor with SIGTERM and check it left nothing behind: no more descriptors
    open than once it served, exit status 0, every process in ``pids`` gone, nothing
    listening on its port any more."""
    start = running.fds_at_start
    if start is not None and running.proc.poll() is None:
        pid = running.proc.pid
        wait_for(
            lambda: fd_count(pid) <= start,
            timeout=10,
            what=f"the supervisor's descriptors to come back to {start} (a leak?)",
        )
    code = running.stop()
    assert code == 0, f"supervisor exited {code}:\n{running.log()[-3000:]}"
    wait_for(
        lambda: not any(pid_alive(p) for p in pids),
        timeout=30,
        what=f"processes {sorted(pids)} to exit",
    )
    with socket.socket() as probe:
        refused = probe.connect_ex(("127.0.0.1", running.port)) == errno.ECONNREFUSED
    assert refused, f"something still listens on port {running.port} after stop"
