"""The two-phase fleet hot upgrade playbook with real Ansible and three real supervisors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hotswap.fleet.fetch import read_pointer
from hotswap.release.build import BuildResult
from tests.conftest import BuildRelease
from tests.fleet.ansible_env import Ansible
from tests.fleet.conftest import S3Server, run_cli
from tests.fleet.hosts import open_hosts, write_inventory

pytestmark = pytest.mark.slow

# A module with a class layout: changing __slots__ cannot be hot-applied.
SHAPE = "src/fixture_app/shape.py"


def _shape(slots: str) -> dict[str, str]:
    return {SHAPE: f"class Shape:\n    __slots__ = ({slots!r},)\n"}


@pytest.fixture(scope="module")
def old_a(build_release: BuildRelease) -> BuildResult:
    return build_release("1.0.0", extra_files=_shape("a"))


@pytest.fixture(scope="module")
def old_b(build_release: BuildRelease) -> BuildResult:  # host2 drifted: another layout
    return build_release("1.0.0", extra_files=_shape("b"))


@pytest.fixture(scope="module")
def new_a(build_release: BuildRelease) -> BuildResult:
    return build_release("2.0.0", extra_files=_shape("a"))


def test_hot_upgrade_of_three_hosts_keeps_every_process_and_is_idempotent(
    ansible: Ansible,
    s3_server: S3Server,
    bucket: str,
    old_a: BuildResult,
    new_a: BuildResult,
    tmp_path: Path,
) -> None:
    new = new_a.manifest.release_id
    staged = run_cli("publish", new_a.tarball, f"s3://{bucket}/app/", "--no-current")
    assert staged.returncode == 0, staged.stderr
    url = f"s3://{bucket}/app/{new_a.tarball.name}"
    with open_hosts(tmp_path, [old_a.tarball] * 3) as hosts:
        inventory = write_inventory(tmp_path / "inventory.ini", hosts)
        pids = [h.get_json()["pid"] for h in hosts]
        hotswap_bin = str(Path(sys.executable).with_name("hotswap"))
        run = ansible.playbook(
            "hot_upgrade",
            inventory,
            hotswap_release=url,
            hotswap_promote="true",
            hotswap_controller_executable=hotswap_bin,
        )
        assert run.rc == 0, run
        pointer = read_pointer(f"s3://{bucket}/app/")
        assert (pointer.release_id, pointer.how) == (new, "hot")
        for host, pid in zip(hosts, pids, strict=True):
            assert host.get_json() == {"version": "2.0.0", "pid": pid, "path": "/", "worker": 0}
            status = host.status()
            assert status["current"] == status["active"]["release"] == new
            assert status["recent"][0]["how"] == "hot"
        again = ansible.playbook("hot_upgrade", inventory, hotswap_release=url)
        assert again.rc == 0, again
        assert all(r["changed"] == 0 for r in again.recap().values()), again


def test_phase_one_refused_on_one_host_changes_nothing_anywhere(
    ansible: Ansible,
    old_a: BuildResult,
    old_b: BuildResult,
    new_a: BuildResult,
    tmp_path: Path,
) -> None:
    olds = [old_a, old_b, old_a]
    with open_hosts(tmp_path, [r.tarball for r in olds]) as hosts:
        inventory = write_inventory(tmp_path / "inventory.ini", hosts)
        pids = [h.get_json()["pid"] for h in hosts]
        run = ansible.playbook("hot_upgrade", inventory, hotswap_release=new_a.tarball)
        assert run.rc != 0, run
        assert "[hot_upgrade_refused]" in run.stdout and "__slots__" in run.stdout, run
        assert "phase two" not in run.stdout, run  # the commit play never started
        assert run.recap()["host2"]["failed"] == 1, run
        for host, pid, old in zip(hosts, pids, olds, strict=True):
            assert host.get_json() == {"version": "1.0.0", "pid": pid, "path": "/", "worker": 0}
            status = host.status()
            assert status["current"] == status["active"]["release"] == old.manifest.release_id
            assert [r["how"] for r in status["recent"]] == ["initial"]


# 2.0.0's package raises when it runs on a host whose environment says so
FAILING_INIT = (
    '"""hotswap\'s test fixture app."""\n\nimport os\n\nVERSION = "2.0.0"\n'
    'if os.environ.get("FLEET_FAIL_COMMIT") == VERSION:\n'
    '    raise RuntimeError("2.0.0 refuses to run on this host, as asked")\n'
)


@pytest.mark.parametrize(
    ("env", "code", "host2_recent"),
    [
        # host2's commit fails and changes nothing there; host1 and host3 go back
        ({"FLEET_FAIL_COMMIT": "2.0.0"}, "hot_upgrade_failed", [("hot", False)]),
        # host2 commits but then fails its health probe: all three go back
        ({"FIXTURE_FAIL_HEALTH": "2.0.0"}, "health_gate_failed", [("hot", True), ("hot", True)]),
    ],
    ids=["commit-fails", "probe-fails-after-commit"],
)
def test_a_failure_in_phase_two_takes_the_committed_hosts_back(
    ansible: Ansible,
    old_a: BuildResult,
    build_release: BuildRelease,
    tmp_path: Path,
    env: dict[str, str],
    code: str,
    host2_recent: list[tuple[str, bool]],
) -> None:
    new = build_release(
        "2.0.0", extra_files={**_shape("a"), "src/fixture_app/__init__.py": FAILING_INIT}
    )
    with open_hosts(tmp_path, [old_a.tarball] * 3, envs=[{}, env, {}]) as hosts:
        inventory = write_inventory(tmp_path / "inventory.ini", hosts)
        pids = [h.get_json()["pid"] for h in hosts]
        run = ansible.playbook("hot_upgrade", inventory, hotswap_release=new.tarball)
        assert run.rc != 0, run
        assert "failed to commit on host2" in run.stdout and f"[{code}]" in run.stdout, run
        assert "this host went back to" in run.stdout, run
        for host, pid in zip(hosts, pids, strict=True):
            assert host.get_json() == {"version": "1.0.0", "pid": pid, "path": "/", "worker": 0}
            status = host.status()
            assert status["current"] == status["active"]["release"] == old_a.manifest.release_id
        for host in (hosts[0], hosts[2]):  # there and back, both hot
            recent = [(r["how"], r["ok"]) for r in host.status()["recent"]]
            assert recent == [("hot", True), ("hot", True), ("initial", True)]
        recent = [(r["how"], r["ok"]) for r in hosts[1].status()["recent"]]
        assert recent == [*host2_recent, ("initial", True)]
