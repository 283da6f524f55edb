"""A real S3-compatible server for the fleet tests: moto in server mode, in its own process on
127.0.0.1 and a free port, started once per session and stopped at the end.

The session's environment points boto3 at it (``AWS_ENDPOINT_URL_S3``) with throw-away
credentials, and away from any ``~/.aws`` of the machine, so every process the tests start
(``hotswap`` commands, Ansible and its modules, supervisors) reaches the same server through the
usual environment, as a real host would reach its bucket.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hotswap.testing.load import free_port, wait_http

_BUCKETS = itertools.count(1)


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3")

    def new_bucket(self) -> str:
        name = f"releases-{os.getpid()}-{next(_BUCKETS)}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    pytest.importorskip("moto.server")
    port = free_port()
    home = tmp_path_factory.mktemp("aws")
    log = open(home / "moto.log", "wb")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "fleet-test",
        "AWS_SECRET_ACCESS_KEY": "fleet-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in (*env, "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        wait_http("127.0.0.1", port, timeout=60)
        yield S3Server(endpoint, env)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


def hotswap_cli() -> list[str]:
    return [sys.executable, "-m", "hotswap.cli"]


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*hotswap_cli(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **(env or {})},
    )


from tests.fleet.ansible_env import ansible  # noqa: E402, F401 (a fixture)
