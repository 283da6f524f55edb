"""The release store on S3: publish, locate, fetch, and the pointer, against a real S3 server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hotswap.errors import HotswapError
from hotswap.fleet.fetch import fetch, locate, read_pointer
from hotswap.fleet.follow import resolve_follow
from hotswap.fleet.pointer import Pointer
from hotswap.fleet.publish import promote, publish
from hotswap.fleet.s3 import ObjectStore, S3Url
from hotswap.release.build import BuildResult
from hotswap.release.store import ReleaseStore
from tests.fleet.conftest import S3Server


def _keys(s3: S3Server, bucket: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_publish_writes_tarball_checksum_and_pointer_last(
    s3_server: S3Server, bucket: str, release_v1: BuildResult
) -> None:
    out = publish(release_v1.tarball, f"s3://{bucket}/app/", by="ci@build")
    name = release_v1.tarball.name
    assert _keys(s3_server, bucket) == sorted(
        [f"app/{name}", f"app/{name}.sha256", "app/current.json"]
    )
    client = s3_server.client()
    body = client.get_object(Bucket=bucket, Key=f"app/{name}")["Body"].read()
    assert body == release_v1.tarball.read_bytes()
    head = client.head_object(Bucket=bucket, Key=f"app/{name}")
    assert head["Metadata"] == {
        "release-id": release_v1.manifest.release_id,
        "sha256": release_v1.sha256,
        "name": "fixture-app",
    }
    pointer = json.loads(client.get_object(Bucket=bucket, Key="app/current.json")["Body"].read())
    assert pointer["release_id"] == release_v1.manifest.release_id
    assert pointer["sha256"] == release_v1.sha256 == out["sha256"]
    assert pointer["tarball"] == name
    assert pointer["how"] == "blue-green" and pointer["published_by"] == "ci@build"
    assert pointer["published_at"].endswith("Z")
    assert read_pointer(f"s3://{bucket}/app/").release_id == release_v1.manifest.release_id


def test_promote_points_current_at_a_published_tarball_without_moving_bytes(
    s3_server: S3Server, bucket: str, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    publish(release_v1.tarball, f"s3://{bucket}/app/")
    staged = publish(release_v2.tarball, f"s3://{bucket}/app/", set_current=False)
    assert staged["current"] is None
    assert read_pointer(f"s3://{bucket}/app/").release_id == release_v1.manifest.release_id
    out = promote(staged["tarball"], how="hot", by="ops@bastion")
    pointer = read_pointer(f"s3://{bucket}/app/")
    assert pointer.to_json() == {**out["pointer"], "format": 1}
    assert (pointer.release_id, pointer.version, pointer.name) == (
        release_v2.manifest.release_id,
        "2.0.0",
        "fixture-app",
    )
    assert (pointer.sha256, pointer.how) == (release_v2.sha256, "hot")
    # a tarball that hotswap publish did not put there is refused
    key = f"app/other-{release_v2.tarball.name}"
    s3_server.client().upload_file(str(release_v2.tarball), bucket, key)
    s3_server.client().put_object(Bucket=bucket, Key=key + ".sha256", Body=b"a" * 64)
    with pytest.raises(HotswapError) as caught:
        promote(f"s3://{bucket}/{key}")
    assert caught.value.code == "manifest_invalid"
    assert read_pointer(f"s3://{bucket}/app/").release_id == release_v2.manifest.release_id


def test_publish_refuses_a_bad_tarball_before_uploading_anything(
    s3_server: S3Server, bucket: str, release_v1: BuildResult, tmp_path: Path
) -> None:
    bad = tmp_path / release_v1.tarball.name
    bad.write_bytes(release_v1.tarball.read_bytes())
    (tmp_path / (bad.name + ".sha256")).write_text("0" * 64 + f"  {bad.name}\n")
    with pytest.raises(HotswapError) as caught:
        publish(bad, f"s3://{bucket}/app/")
    assert caught.value.code == "checksum_mismatch"
    assert _keys(s3_server, bucket) == []


def test_fetch_downloads_verified_and_reuses_a_good_copy(
    bucket: str, release_v1: BuildResult, tmp_path: Path
) -> None:
    publish(release_v1.tarball, f"s3://{bucket}/app/")
    state = tmp_path / "state"
    first = fetch(f"s3://{bucket}/app/current.json", state)
    assert first.downloaded
    assert first.path == state / "downloads" / release_v1.tarball.name
    assert first.path.read_bytes() == release_v1.tarball.read_bytes()
    assert first.located.release_id == release_v1.manifest.release_id
    sidecar = first.path.with_name(first.path.name + ".sha256")
    assert sidecar.read_text().split()[0] == release_v1.sha256
    again = fetch(f"s3://{bucket}/app/", state)
    assert not again.downloaded and again.path == first.path
    # the supervisor's own store takes it as any local tarball
    assert ReleaseStore(state).unpack(first.path).id == release_v1.manifest.release_id


def test_a_tampered_object_is_refused_and_leaves_nothing(
    s3_server: S3Server, bucket: str, release_v1: BuildResult, tmp_path: Path
) -> None:
    publish(release_v1.tarball, f"s3://{bucket}/app/")
    data = bytearray(release_v1.tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    key = f"app/{release_v1.tarball.name}"
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=bytes(data))
    state = tmp_path / "state"
    with pytest.raises(HotswapError) as caught:
        fetch(f"s3://{bucket}/app/", state)
    assert caught.value.code == "checksum_mismatch"
    assert list((state / "downloads").iterdir()) == []


def test_a_tarball_url_is_checked_against_its_sidecar_or_the_given_digest(
    s3_server: S3Server, bucket: str, release_v1: BuildResult, tmp_path: Path
) -> None:
    key = f"raw/{release_v1.tarball.name}"
    s3_server.client().upload_file(str(release_v1.tarball), bucket, key)
    url = f"s3://{bucket}/{key}"
    with pytest.raises(HotswapError) as caught:
        locate(url)
    assert caught.value.code == "checksum_missing"
    got = fetch(url, tmp_path / "state", sha256=release_v1.sha256)
    assert got.sha256 == release_v1.sha256 and got.located.release_id is None
    with pytest.raises(HotswapError) as caught:
        fetch(url, tmp_path / "other", sha256="a" * 64)
    assert caught.value.code == "checksum_mismatch"


def test_bad_urls_and_missing_objects_have_codes(bucket: str, tmp_path: Path) -> None:
    for url in ("s3://", "s3://UPPER/x", "s3://ok-bucket/a/../b", "http://x/y"):
        with pytest.raises(HotswapError) as caught:
            S3Url.parse(url)
        assert caught.value.code == "bad_url", url
    with pytest.raises(HotswapError) as caught:
        fetch(f"s3://{bucket}/nothing/", tmp_path / "state")
    assert caught.value.code == "release_not_found"
    with pytest.raises(HotswapError) as caught:
        fetch("s3://no-such-bucket-here/app/", tmp_path / "state")
    assert caught.value.code == "release_not_found"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"tarball": "../other/x.tar.gz"}, "tarball"),
        ({"sha256": "nothex"}, "sha256"),
        ({"format": 2}, "format"),
        ({"how": "sideways"}, "how"),
    ],
)
def test_a_pointer_that_does_not_parse_is_pointer_invalid(
    s3_server: S3Server, bucket: str, release_v1: BuildResult, patch: dict[str, object], field: str
) -> None:
    publish(release_v1.tarball, f"s3://{bucket}/app/")
    client = s3_server.client()
    raw = json.loads(client.get_object(Bucket=bucket, Key="app/current.json")["Body"].read())
    raw.update(patch)
    client.put_object(Bucket=bucket, Key="app/current.json", Body=json.dumps(raw).encode())
    with pytest.raises(HotswapError) as caught:
        read_pointer(f"s3://{bucket}/app/")
    assert caught.value.code == "pointer_invalid"
    assert field in caught.value.message
    with pytest.raises(HotswapError) as garbage:
        Pointer.decode(b"\xff{", "x")
    assert garbage.value.code == "pointer_invalid"


def test_follow_falls_back_to_current_only_when_the_store_is_unreachable(
    release_v1: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    empty = tmp_path / "empty"
    with pytest.raises(HotswapError) as caught:
        resolve_follow("s3://some-bucket/app/", empty, log=lambda _m: None)
    assert caught.value.code == "storage_error"
    state = tmp_path / "state"
    store = ReleaseStore(state)
    release = store.unpack(release_v1.tarball)
    store.set_current(release.id, how="blue-green")
    said: list[str] = []
    boot = resolve_follow("s3://some-bucket/app/", state, log=said.append)
    assert boot.release is None and not boot.followed
    assert "storage_error" in said[0]


def test_without_boto3_s3_urls_say_extra_missing(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from hotswap.fleet.fetch import fetch\n"
        "try:\n"
        f"    fetch('s3://a-bucket/app/', {str(tmp_path)!r})\n"
        "except Exception as e:\n"
        "    print(e.code, e.message)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("extra_missing ")
    assert "hotswap[s3]" in out.stdout


def test_object_store_imports_no_boto3_until_used() -> None:
    code = (
        "import sys, hotswap.fleet.fetch, hotswap.fleet.publish, hotswap.fleet.follow\n"
        "print('boto3' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
    assert ObjectStore()._client is None
