"""``hotswap run --metrics``: a bad address, or prometheus_client missing, is refused with its
code before anything is bound or unpacked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.cli import EXIT_RESOURCE, EXIT_USAGE
from hotswap.release.build import BuildResult
from hotswap.testing.load import free_port
from tests.cli.helpers import as_json, hotswap


@pytest.mark.parametrize("address", ["9100", "localhost", "127.0.0.1:99999", "unix:/tmp/m.sock"])
def test_a_bad_metrics_address_is_refused_before_anything_binds(
    tmp_path: Path, release_v1: BuildResult, address: str
) -> None:
    state = tmp_path / "state"
    port = free_port()
    proc = hotswap(
        "run", release_v1.tarball, "--state-dir", state, "--bind", f"127.0.0.1:{port}",
        "--metrics", address, "--json", home=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE, proc.stderr
    error = as_json(proc)["error"]
    assert error["code"] == "bad_config"
    assert error["details"]["key"] == "metrics"
    assert "--metrics must be HOST:PORT" in error["message"]
    assert "listening on" not in proc.stderr
    assert not state.exists()


def test_metrics_without_prometheus_client_is_extra_missing(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    shadow = tmp_path / "shadow"  # a prometheus_client that cannot be imported
    shadow.mkdir()
    (shadow / "prometheus_client.py").write_text("raise ImportError('not installed here')\n")
    state = tmp_path / "state"
    proc = hotswap(
        "run", release_v1.tarball, "--state-dir", state, "--bind", f"127.0.0.1:{free_port()}",
        "--metrics", f"127.0.0.1:{free_port()}", home=tmp_path, timeout=60,
        PYTHONPATH=str(shadow),
    )  # fmt: skip
    assert proc.returncode == EXIT_RESOURCE, proc.stderr
    assert "error [extra_missing]" in proc.stderr
    assert "pip install 'hotswap[metrics]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "listening on" not in proc.stderr
    assert not state.exists()
