"""The rolling blue-green playbook with real Ansible, three real supervisors as "hosts" on this
machine (local connection, each its own state dir and port) and a real S3 server."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotswap.errors import HotswapError
from hotswap.fleet.fetch import read_pointer
from hotswap.release.build import BuildResult
from hotswap.testing.load import Load
from tests.e2e.harness import Running
from tests.fleet.ansible_env import Ansible
from tests.fleet.conftest import S3Server, run_cli
from tests.fleet.hosts import open_hosts, write_inventory

pytestmark = pytest.mark.slow

HOSTS = ("host1", "host2", "host3")
HOTSWAP = str(Path(sys.executable).with_name("hotswap"))


def _pointer(bucket: str) -> str | None:
    """The release current.json names, or None when there is none."""
    try:
        return read_pointer(f"s3://{bucket}/app/").release_id
    except HotswapError as e:
        assert e.code == "release_not_found"
        return None


@contextlib.contextmanager
def loads(hosts: list[Running]) -> Iterator[list[Load]]:
    """A load client on every host, for the whole block."""
    clients = [Load("127.0.0.1", h.port, keepalive=2, fresh=1, pause=0.005) for h in hosts]
    for client in clients:
        client.start()
    try:
        for client in clients:
            assert client.wait_requests(20, timeout=30)
        yield clients
    finally:
        for client in clients:
            client.stop()


def test_rolling_upgrade_of_three_hosts_under_load_fails_no_request_and_is_idempotent(
    ansible: Ansible,
    s3_server: S3Server,
    bucket: str,
    release_v1: BuildResult,
    release_v2: BuildResult,
    tmp_path: Path,
) -> None:
    # staged: in the bucket, but current.json is moved only once the whole fleet runs it
    staged = run_cli("publish", release_v2.tarball, f"s3://{bucket}/app/", "--no-current")
    assert staged.returncode == 0, staged.stderr
    url = f"s3://{bucket}/app/{release_v2.tarball.name}"
    promote = {"hotswap_promote": "true", "hotswap_controller_executable": HOTSWAP}
    v1, v2 = release_v1.manifest.release_id, release_v2.manifest.release_id
    with open_hosts(tmp_path, [release_v1.tarball] * 3) as hosts:
        inventory = write_inventory(tmp_path / "inventory.ini", hosts)
        pids = [h.get_json()["pid"] for h in hosts]

        # check mode with a diff: says what would change, changes nothing
        dry = ansible.playbook(
            "rolling_upgrade", inventory, "--check", "--diff", hotswap_release=url, **promote
        )
        assert dry.rc == 0, dry
        recap = dry.recap()
        assert all(recap[h]["changed"] == 1 and recap[h]["failed"] == 0 for h in HOSTS), dry
        assert f"-release: {v1}" in dry.stdout and f"+release: {v2}" in dry.stdout
        assert [h.get_json()["pid"] for h in hosts] == pids
        assert _pointer(bucket) is None

        with loads(hosts) as clients:
            run = ansible.playbook("rolling_upgrade", inventory, hotswap_release=url, **promote)
            for client in clients:
                assert client.wait_requests(20, timeout=30)
        assert run.rc == 0, run
        for host, client in zip(hosts, clients, strict=True):
            report = client.report
            assert report.failed == 0, report.summary()
            assert set(report.versions) == {"1.0.0", "2.0.0"}, report.summary()
            status = host.status()
            assert status["active"]["release"] == status["current"] == v2
            assert host.get_json()["version"] == "2.0.0"
        recap = run.recap()
        assert set(recap) == {*HOSTS, "localhost"}, run
        assert all(recap[h]["changed"] == 1 and recap[h]["failed"] == 0 for h in HOSTS), run
        assert _pointer(bucket) == v2  # promoted after the last batch

        again = ansible.playbook("rolling_upgrade", inventory, hotswap_release=url)
        assert again.rc == 0, again
        recap = again.recap()
        assert all(recap[h]["changed"] == 0 and recap[h]["failed"] == 0 for h in HOSTS), again
        assert [h.status()["active"]["generation"] for h in hosts] == [2, 2, 2]


def test_a_release_failing_health_on_host2_rolls_host1_back_and_never_touches_host3(
    ansible: Ansible,
    s3_server: S3Server,
    bucket: str,
    release_v1: BuildResult,
    release_v2: BuildResult,
    tmp_path: Path,
) -> None:
    staged = run_cli("publish", release_v2.tarball, f"s3://{bucket}/app/", "--no-current")
    assert staged.returncode == 0, staged.stderr
    url = f"s3://{bucket}/app/{release_v2.tarball.name}"
    v1 = release_v1.manifest.release_id
    envs = [{}, {"FIXTURE_FAIL_HEALTH": "2.0.0"}, {}]  # 2.0.0 is unhealthy on host2 only
    with open_hosts(tmp_path, [release_v1.tarball] * 3, envs=envs) as hosts:
        inventory = write_inventory(tmp_path / "inventory.ini", hosts)
        host3_pid = hosts[2].get_json()["pid"]
        run = ansible.playbook(
            "rolling_upgrade",
            inventory,
            hotswap_release=url,
            hotswap_promote="true",
            hotswap_controller_executable=HOTSWAP,
        )
        assert run.rc != 0, run
        assert "[health_failed]" in run.stdout and "stopped at host2" in run.stdout, run
        recap = run.recap()
        assert recap["host2"]["failed"] == 1 and "host3" not in recap, run
        assert _pointer(bucket) is None  # a failed run promotes nothing

        host1 = hosts[0].status()
        assert host1["active"]["release"] == host1["current"] == v1
        assert [r["how"] for r in host1["recent"][:2]] == ["rollback", "blue-green"]
        assert hosts[0].get_json()["version"] == "1.0.0"

        host2 = hosts[1].status()  # its failed swap changed nothing
        assert host2["active"]["release"] == host2["current"] == v1
        assert host2["recent"][0]["error"]["code"] == "health_failed"

        host3 = hosts[2].status()  # never touched
        assert [r["how"] for r in host3["recent"]] == ["initial"]
        assert hosts[2].get_json()["pid"] == host3_pid
