"""``hotswap run``: what can be refused is refused before a listener is bound, a failed first
boot exits with its error's status, and without ``--state-dir`` the tarball's app names the
state dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hotswap.cli import EXIT_CHILD, EXIT_RESOURCE, EXIT_USAGE, make_parser
from hotswap.cli.supervisor import prepare_run
from hotswap.release.build import BuildResult
from hotswap.testing.load import free_port
from tests.cli.helpers import as_json, hotswap
from tests.e2e.harness import start_supervisor, stop_and_check


def test_run_with_a_missing_tarball_binds_nothing_and_exits_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sock = tmp_path / "app.sock"
    argv = ["run", tmp_path / "nope.tar.gz", "--state-dir", state, "--bind", f"unix:{sock}"]
    proc = hotswap(*argv, "--bind", f"127.0.0.1:{free_port()}", "--json", home=tmp_path)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert as_json(proc)["error"]["code"] == "release_not_found"
    assert "listening on" not in proc.stderr
    assert not sock.exists()
    assert not state.exists()  # nothing was created either
    human = hotswap(*argv, home=tmp_path)
    assert human.returncode == EXIT_USAGE
    assert "error [release_not_found]" in human.stderr
    assert "listening on" not in human.stderr


def test_run_of_an_unknown_release_id_exits_2_before_binding(tmp_path: Path) -> None:
    proc = hotswap("run", "1.0.0-000000000000", "--state-dir", tmp_path / "s", home=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert "error [release_not_found]" in proc.stderr
    assert "listening on" not in proc.stderr


def test_run_of_a_release_that_fails_to_boot_exits_with_the_child_status(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    state = tmp_path / "state"
    proc = hotswap(
        "run",
        release_v1.tarball,
        "--state-dir",
        state,
        "--bind",
        f"127.0.0.1:{free_port()}",
        "--json",
        home=tmp_path,
        FIXTURE_CRASH_AT_IMPORT="1.0.0",
    )
    assert proc.returncode == EXIT_CHILD, proc.stderr[-2000:]
    error = as_json(proc)["error"]
    assert error["code"] == "boot_failed"
    assert any("crashes at import, as asked" in line for line in error["details"]["output"])
    assert "crashes at import, as asked" in proc.stderr  # the supervisor's log shows it too


def test_run_defaults_to_the_tarballs_app_dir(
    tmp_path: Path, release_v1: BuildResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # in-process: prepare_run is everything run does before it binds
    monkeypatch.delenv("HOTSWAP_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "x"))
    (tmp_path / "x" / "hotswap" / "other-app").mkdir(parents=True)  # the app decides, not this
    store, ref, _ = prepare_run(make_parser().parse_args(["run", str(release_v1.tarball), "-q"]))
    app_dir = tmp_path / "x" / "hotswap" / release_v1.manifest.name
    assert store.state_dir == app_dir
    assert ref == str(release_v1.tarball)
    assert (app_dir / "releases" / release_v1.manifest.release_id / "RELEASE.json").is_file()


def test_an_os_error_at_start_is_io_error_not_a_traceback(tmp_path: Path) -> None:
    from tests.release import forge

    (tmp_path / "in").mkdir()
    tarball = forge.write_archive(tmp_path / "in" / "good.tar.gz", forge.release_members())
    state = tmp_path / "state"
    (state / "control.sock").mkdir(parents=True, mode=0o700)  # cannot be replaced by a socket
    state.chmod(0o700)
    proc = hotswap(
        "run", tarball, "--state-dir", state, "--bind", f"127.0.0.1:{free_port()}", home=tmp_path
    )
    assert proc.returncode == EXIT_RESOURCE, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error [io_error]" in proc.stderr


def test_run_serves_and_is_steered_with_a_state_dir_too_deep_for_af_unix(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    """``<state>/control.sock`` over AF_UNIX's 108 bytes: the supervisor binds it, the CLI,
    the Python client and a generation (the handoff API) reach it, all through the
    directory's descriptor; it used to fail with ``io_error`` once the listeners were bound."""
    state = tmp_path / ("d" * 60) / "state"
    assert len(str(state / "control.sock").encode()) > 108
    state.parent.mkdir()
    running = start_supervisor(release_v1.tarball, state)
    try:
        assert running.status()["active"]["release"] == release_v1.manifest.release_id
        remembered = running.get_json("/remember?key=deep")  # from inside the generation
        assert "deep" in remembered["all"]
        proc = running.cli("status", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["active"]["release"] == release_v1.manifest.release_id
    finally:
        stop_and_check(running, running.seen_pids)
