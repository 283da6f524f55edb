"""End to end: ``hotswap publish``, ``hotswap upgrade s3://...`` and ``hotswap run --follow``
with real supervisors and a real S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hotswap.release.build import BuildResult
from tests.fleet.conftest import S3Server, run_cli
from tests.fleet.hosts import start_host, stop_host

pytestmark = pytest.mark.slow


def test_publish_then_upgrade_from_s3_then_a_fresh_host_follows_current(
    s3_server: S3Server,
    bucket: str,
    release_v1: BuildResult,
    release_v2: BuildResult,
    tmp_path: Path,
) -> None:
    prefix = f"s3://{bucket}/app/"
    published = run_cli("publish", release_v2.tarball, prefix, "--json", "--by", "ci@test")
    assert published.returncode == 0, published.stdout + published.stderr
    assert json.loads(published.stdout)["release_id"] == release_v2.manifest.release_id

    host = start_host(tmp_path / "host1", release=release_v1.tarball)
    try:
        assert host.get_json()["version"] == "1.0.0"
        done = run_cli("upgrade", prefix, "--json", "--state-dir", host.state_dir)
        assert done.returncode == 0, done.stdout + done.stderr
        record = json.loads(done.stdout)
        assert record["release"] == release_v2.manifest.release_id and record["ok"]
        assert host.get_json()["version"] == "2.0.0"
        downloaded = host.state_dir / "downloads" / release_v2.tarball.name
        assert downloaded.read_bytes() == release_v2.tarball.read_bytes()
    finally:
        stop_host(host)

    # a replaced host: empty state dir, no release on the command line, only --follow
    fresh = start_host(tmp_path / "fresh", follow=prefix + "current.json")
    try:
        assert fresh.get_json()["version"] == "2.0.0"
        assert fresh.status()["current"] == release_v2.manifest.release_id
        assert "--follow" in fresh.log() and release_v2.manifest.release_id in fresh.log()
    finally:
        stop_host(fresh)


def test_upgrade_from_a_tampered_store_changes_nothing(
    s3_server: S3Server,
    bucket: str,
    release_v1: BuildResult,
    release_v2: BuildResult,
    tmp_path: Path,
) -> None:
    prefix = f"s3://{bucket}/app/"
    assert run_cli("publish", release_v2.tarball, prefix).returncode == 0
    data = bytearray(release_v2.tarball.read_bytes())
    data[-100] ^= 0x01
    s3_server.client().put_object(
        Bucket=bucket, Key=f"app/{release_v2.tarball.name}", Body=bytes(data)
    )
    host = start_host(tmp_path / "host1", release=release_v1.tarball)
    try:
        done = run_cli("upgrade", prefix, "--json", "--state-dir", host.state_dir)
        assert done.returncode == 3, done.stdout + done.stderr  # EXIT_RELEASE
        assert json.loads(done.stdout)["error"]["code"] == "checksum_mismatch"
        assert host.get_json()["version"] == "1.0.0"
        assert host.status()["recent"][0]["how"] == "initial"  # no swap was even started
    finally:
        stop_host(host)
