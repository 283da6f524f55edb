"""The collection's modules on a host where no supervisor runs: status says so, release fails
with hotswap's code and changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hotswap.release.build import BuildResult
from tests.fleet.ansible_env import Ansible

pytestmark = pytest.mark.slow


def _inventory(tmp_path: Path) -> Path:
    hotswap_bin = Path(sys.executable).with_name("hotswap")
    path = tmp_path / "inventory.ini"
    path.write_text(
        f"host1 ansible_connection=local ansible_python_interpreter={sys.executable}"
        f" hotswap_executable={hotswap_bin}\n"
    )
    return path


def test_status_and_release_on_a_host_without_a_supervisor(
    ansible: Ansible, release_v1: BuildResult, tmp_path: Path
) -> None:
    inventory = _inventory(tmp_path)
    state = tmp_path / "state"
    hotswap_bin = str(Path(sys.executable).with_name("hotswap"))
    common = {"state_dir": str(state), "executable": hotswap_bin}
    status = ansible.module("status", common, inventory)
    assert status.rc == 0, status
    result = status.results()["host1"]
    assert result["running"] is False and result["changed"] is False, status

    release = ansible.module("release", {**common, "src": str(release_v1.tarball)}, inventory)
    assert release.rc != 0, release
    failed = release.results()["host1"]
    assert failed["code"] == "not_running" and failed["changed"] is False, release
    assert not (state / "releases").exists() or not any((state / "releases").iterdir())

    missing = ansible.module(
        "release", {**common, "executable": str(tmp_path / "no-hotswap"), "src": "x"}, inventory
    )
    assert missing.rc != 0 and missing.results()["host1"]["code"] == "tool_missing", missing
