"""The "hosts" of the fleet tests: real ``hotswap run`` supervisors on this machine, each with
its own state dir and loopback port, started like the e2e harness's but with the fleet's
options (``--follow``, no positional release), plus an Ansible inventory that names them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from hotswap.testing.load import free_port, wait_http
from tests.e2e.harness import Running, seed_runtime, stop_and_check, wait_for


def start_host(
    state_dir: Path,
    *,
    release: Path | str | None = None,
    follow: str | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Running:
    port = port or free_port()
    seed_runtime(state_dir)
    log_path = state_dir.parent / f"{state_dir.name}-supervisor-{port}.log"
    argv = [sys.executable, "-m", "hotswap.cli", "run", "--state-dir", str(state_dir)]
    argv += ["--bind", f"127.0.0.1:{port}"]
    if release is not None:
        argv.append(str(release))
    if follow is not None:
        argv += ["--follow", follow]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env={**os.environ, **(env or {})})
    running = Running(proc, port, state_dir, log_path)
    try:
        wait_http("127.0.0.1", port, timeout=90)
    except TimeoutError:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"supervisor never served:\n{running.log()[-3000:]}") from None
    running.get_json()
    wait_for(lambda: not running.status()["upgrading"], what="the initial boot to finish")
    return running


def stop_host(running: Running) -> None:
    with contextlib.suppress(Exception):
        running.status()
    stop_and_check(running, running.seen_pids)


@contextlib.contextmanager
def open_hosts(
    tmp_path: Path,
    releases: list[Path],
    *,
    envs: list[dict[str, str]] | None = None,
) -> Iterator[list[Running]]:
    """One supervisor per release in ``releases`` (host1, host2, ...); all stopped and checked
    for leftovers on exit."""
    hosts: list[Running] = []
    try:
        for i, release in enumerate(releases, start=1):
            env = (envs or [{}] * len(releases))[i - 1]
            hosts.append(start_host(tmp_path / f"host{i}", release=release, env=env))
        yield hosts
    finally:
        for host in hosts:
            stop_host(host)


def write_inventory(path: Path, hosts: list[Running], **group_vars: object) -> Path:
    """An INI inventory: host1..N on the local connection, each with its state dir and port,
    the venv's python, and the venv's ``hotswap``."""
    hotswap_bin = Path(sys.executable).with_name("hotswap")
    lines = ["[app]"]
    for i, host in enumerate(hosts, start=1):
        lines.append(
            f"host{i} ansible_connection=local ansible_python_interpreter={sys.executable}"
            f" hotswap_state_dir={host.state_dir} hotswap_port={host.port}"
        )
    lines += ["", "[app:vars]", f"hotswap_executable={hotswap_bin}"]
    for key, value in group_vars.items():
        lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n")
    return path
