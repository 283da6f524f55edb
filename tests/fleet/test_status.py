"""The fleet status playbook: per host the active release, how it got there, the generation
and uptime, and whether it matches current.json."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotswap.release.build import BuildResult
from tests.fleet.ansible_env import Ansible
from tests.fleet.conftest import S3Server, run_cli
from tests.fleet.hosts import open_hosts, write_inventory

pytestmark = pytest.mark.slow


def test_fleet_status_says_per_host_what_runs_how_and_whether_it_is_current(
    ansible: Ansible,
    s3_server: S3Server,
    bucket: str,
    release_v1: BuildResult,
    release_v2: BuildResult,
    tmp_path: Path,
) -> None:
    prefix = f"s3://{bucket}/app/"
    assert run_cli("publish", release_v2.tarball, prefix).returncode == 0
    v1, v2 = release_v1.manifest.release_id, release_v2.manifest.release_id
    with open_hosts(tmp_path, [release_v1.tarball] * 3) as hosts:
        for host, command in ((hosts[1], "upgrade"), (hosts[2], "hot-upgrade")):
            done = run_cli(command, prefix, "--state-dir", host.state_dir)
            assert done.returncode == 0, done.stderr
        inventory = write_inventory(tmp_path / "inventory.ini", hosts)
        run = ansible.playbook("status", inventory, hotswap_pointer=prefix)
        assert run.rc == 0, run
        lines = {
            m.group(1): m.group(2) for m in re.finditer(r'"msg": "(host\d): (.*)"', run.stdout)
        }
        assert set(lines) == {"host1", "host2", "host3"}, run
        assert lines["host1"].startswith(f"{v1} (initial at ")
        assert "generation 1 up" in lines["host1"]
        assert lines["host1"].endswith(f"DIFFERS from current.json ({v2})")
        assert lines["host2"].startswith(f"{v2} (blue-green at ")
        assert "generation 2 up" in lines["host2"] and lines["host2"].endswith("up to date")
        assert lines["host3"].startswith(f"{v2} (hot at ")
        assert "generation 1 up" in lines["host3"] and lines["host3"].endswith("up to date")
        assert all(r["changed"] == 0 for r in run.recap().values()), run
