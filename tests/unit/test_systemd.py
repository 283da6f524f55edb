"""The units `hotswap systemd-unit` prints, and socket activation (sd_listen_fds)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hotswap.errors import UsageError
from hotswap.systemd import (
    STOP_MARGIN,
    Inherited,
    UnitOptions,
    adopt,
    listen_fds,
    service_unit,
    socket_units,
    warnings,
)


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def _opts(**kw: object) -> UnitOptions:
    base: dict[str, object] = {
        "name": "myapp",
        "state_dir": Path("/var/lib/myapp"),
        "binds": ["127.0.0.1:8000"],
        "hotswap": "/opt/myapp/bin/hotswap",
    }
    base.update(kw)
    return UnitOptions(**base)  # type: ignore[arg-type]


def test_service_unit_is_notify_reloads_kills_mixed_and_stops_by_shutdown_timeout() -> None:
    d = _directives(service_unit(_opts(shutdown_timeout=12.5)))
    assert d["Type"] == ["notify"]
    assert d["ExecStart"] == [
        "/opt/myapp/bin/hotswap run --state-dir /var/lib/myapp --bind 127.0.0.1:8000"
    ]
    assert d["ExecReload"] == ["/opt/myapp/bin/hotswap restart --state-dir /var/lib/myapp"]
    assert d["KillMode"] == ["mixed"]
    assert d["TimeoutStopSec"] == [f"{12.5 + STOP_MARGIN:g}"]
    assert d["Restart"] == ["on-failure"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["StateDirectory"] == ["myapp"] and d["StateDirectoryMode"] == ["0700"]
    assert "ReadWritePaths" not in d
    assert d["PrivateTmp"] == ["yes"]
    assert "MemoryDenyWriteExecute" not in d  # breaks ctypes/cffi


def test_socket_activation_moves_the_binds_into_one_socket_unit_per_listener_name() -> None:
    opts = _opts(
        binds=["127.0.0.1:8000", "[::1]:8000", "admin=unix:/run/myapp/admin.sock"],
        socket_activation=True,
    )
    service = _directives(service_unit(opts))
    assert "--bind" not in service["ExecStart"][0]
    units = socket_units(opts)
    assert list(units) == ["myapp.socket", "myapp-admin.socket"]
    assert service["Requires"] == ["myapp.socket myapp-admin.socket"]
    http = _directives(units["myapp.socket"])
    assert http["ListenStream"] == ["127.0.0.1:8000", "[::1]:8000"]
    assert http["FileDescriptorName"] == ["http"]
    assert http["Service"] == ["myapp.service"]
    admin = _directives(units["myapp-admin.socket"])
    assert admin["ListenStream"] == ["/run/myapp/admin.sock"]
    assert admin["FileDescriptorName"] == ["admin"]


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"name": "my app"}, "name"),
        ({"name": "-x"}, "name"),
        ({"state_dir": Path("relative/state")}, "state_dir"),
        ({"binds": ["localhost"]}, "bind"),
    ],
)
def test_bad_unit_options_are_refused_naming_the_option(kw: dict[str, object], key: str) -> None:
    with pytest.raises(UsageError) as e:
        service_unit(_opts(**kw))
    assert e.value.code == "bad_config"
    assert e.value.details["key"] == key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    hotswap_exe = Path(sys.executable).with_name("hotswap")
    assert hotswap_exe.exists()
    opts = _opts(
        state_dir=tmp_path / "state",
        hotswap=str(hotswap_exe),
        socket_activation=True,
        binds=["127.0.0.1:8000", "admin=127.0.0.1:8001"],
    )
    (tmp_path / "myapp.service").write_text(service_unit(opts))
    for name, text in socket_units(opts).items():
        (tmp_path / name).write_text(text)
    units = sorted(str(p) for p in tmp_path.glob("myapp*"))
    done = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify also reports on units the host lacks (no systemd as PID 1 here); only lines about
    # our own files count
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "myapp" in line]
    assert not ours, ours


def test_listen_fds_only_for_the_pid_they_name() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:admin"}
    assert listen_fds(env, 42) == [Inherited(3, "http"), Inherited(4, "admin")]
    assert listen_fds(env, 43) == []  # meant for another process
    assert listen_fds({}, 42) == []
    assert listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "1"}, 42) == [Inherited(3, "http")]
    assert listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "unknown"}, 42) == [
        Inherited(3, "http")
    ]


@pytest.mark.parametrize(
    "env",
    [
        {"LISTEN_PID": "x", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "0"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "1000"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http"},
    ],
)
def test_malformed_listen_fds_is_bad_config(env: dict[str, str]) -> None:
    with pytest.raises(UsageError) as e:
        listen_fds(env, 42)
    assert e.value.code == "bad_config"


def test_adopt_refuses_what_is_not_a_listening_stream_socket(tmp_path: Path) -> None:
    plain = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR)
    unlistened = socket.socket()
    dgram = socket.socket(type=socket.SOCK_DGRAM)
    try:
        for fd in (plain, unlistened.fileno(), dgram.fileno()):
            with pytest.raises(UsageError) as e:
                adopt(Inherited(fd, "http"))
            assert e.value.code == "bad_config"
            os.fstat(fd)  # still open: a refusal closes nothing it does not own
    finally:
        os.close(plain)
        unlistened.close()
        dgram.close()


def test_a_release_under_tmp_and_a_missing_state_dir_are_warned_about(tmp_path: Path) -> None:
    opts = _opts(state_dir=tmp_path / "absent", extra_args=["--initial", "/tmp/x.tar.gz"])
    found = warnings(opts)
    assert any("PrivateTmp" in w for w in found)
    assert any("does not exist" in w for w in found)
    assert warnings(_opts()) == []  # /var/lib: systemd creates it (StateDirectory=)


def test_systemd_unit_defaults_the_state_dir_to_var_lib_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HOTSWAP_STATE_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "hotswap.cli", "systemd-unit", "--name", "shop", "--json"],
        capture_output=True, text=True, timeout=60, check=True, env={**env, "HOME": str(tmp_path)},
    )  # fmt: skip
    service = _directives(json.loads(done.stdout)["files"]["shop.service"])
    assert service["Environment"] == ["HOTSWAP_STATE_DIR=/var/lib/shop"]
    assert service["StateDirectory"] == ["shop"]


def test_systemd_unit_passes_workers_and_metrics_to_run_and_checks_them(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "hotswap.cli", "systemd-unit", "--name", "shop", "--json"]
    done = subprocess.run(
        [*argv, "--workers", "4", "--metrics", "127.0.0.1:9464"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    service = _directives(json.loads(done.stdout)["files"]["shop.service"])
    assert "--workers 4 --metrics 127.0.0.1:9464" in service["ExecStart"][0]
    bad = subprocess.run(
        [*argv, "--metrics", "nowhere"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and '"bad_config"' in bad.stdout
