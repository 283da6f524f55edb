"""``hotswap build | inspect | unpack | releases`` as a user runs them: a real process,
JSON on stdout with ``--json``, progress on stderr, the error code and the documented exit
status on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hotswap.cli import EXIT_OK, EXIT_RELEASE, EXIT_RESOURCE, EXIT_USAGE
from hotswap.release.build import BuildResult
from tests.conftest import SOURCE_DATE_EPOCH, stamp_project
from tests.release import forge


def hotswap(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HOTSWAP_STATE_DIR"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "hotswap.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=environ,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)  # stdout is one JSON object, nothing else
    return data


@pytest.mark.slow
def test_build_json_prints_the_tarball_and_matches_the_api_build(
    release_v1: BuildResult, tmp_path: Path
) -> None:
    project = stamp_project(tmp_path / "project", "1.0.0")
    proc = hotswap(
        "build", project, "-o", tmp_path / "out", "--json", SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    data = as_json(proc)
    assert Path(data["tarball"]).is_file()
    assert data["release_id"] == release_v1.manifest.release_id
    assert data["sha256"] == release_v1.sha256  # the CLI and the API build the same bytes
    assert data["installer"] == "uv"
    assert data["files"] == release_v1.manifest.record["files"]
    assert "compiling bytecode" in proc.stderr  # progress goes to stderr
    assert "[" in proc.stderr.splitlines()[0]


def test_inspect_json_runs_every_check(release_v1: BuildResult, tmp_path: Path) -> None:
    proc = hotswap("inspect", release_v1.tarball, "--json", "--state-dir", tmp_path / "state")
    assert proc.returncode == EXIT_OK, proc.stderr
    data = as_json(proc)
    assert data["ok"] is True
    assert data["sha256"] == release_v1.sha256
    assert data["checks"] == ["checksum, members, record, manifest", "interpreter", "file hashes"]
    assert data["manifest"] == release_v1.manifest.raw
    assert not (tmp_path / "state").exists()  # inspect writes nothing


def test_inspect_prints_the_manifest_for_people(release_v1: BuildResult, tmp_path: Path) -> None:
    proc = hotswap("inspect", release_v1.tarball, "--state-dir", tmp_path / "state")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert release_v1.manifest.release_id in proc.stdout
    assert "fixture_app.main:app" in proc.stdout
    assert "uvicorn" in proc.stdout
    assert "checks passed" in proc.stdout


def test_unpack_then_releases_json(release_v1: BuildResult, tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = hotswap("unpack", release_v1.tarball, "--json", "--state-dir", state)
    assert proc.returncode == EXIT_OK, proc.stderr
    unpacked = as_json(proc)
    assert unpacked["ok"] is True
    assert unpacked["id"] == release_v1.manifest.release_id
    assert Path(unpacked["path"]) == state / "releases" / unpacked["id"]
    assert (Path(unpacked["path"]) / "RELEASE.json").is_file()

    listed = as_json(hotswap("releases", "--json", HOTSWAP_STATE_DIR=str(state)))
    assert listed["state_dir"] == str(state)
    assert (listed["current"], listed["previous"]) == (None, None)
    assert [r["id"] for r in listed["releases"]] == [unpacked["id"]]
    assert listed["releases"][0]["version"] == "1.0.0"

    human = hotswap("releases", "--state-dir", state)
    assert human.returncode == EXIT_OK
    assert unpacked["id"] in human.stdout


def test_releases_of_an_empty_state_dir(tmp_path: Path) -> None:
    proc = hotswap("releases", "--state-dir", tmp_path / "state")
    assert proc.returncode == EXIT_OK
    assert "no releases" in proc.stdout


def _symlink_archive(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    members = [
        *forge.release_members(),
        forge.M("lib/demo/link", type=b"2", linkname="/etc/passwd"),
    ]
    return forge.write_archive(tmp_path / "in" / "bad.tar.gz", members)


@pytest.mark.parametrize("command", ["inspect", "unpack"])
def test_hostile_tarball_exits_with_the_release_status(command: str, tmp_path: Path) -> None:
    tarball = _symlink_archive(tmp_path)
    state = tmp_path / "state"
    proc = hotswap(command, tarball, "--json", "--state-dir", state)
    assert proc.returncode == EXIT_RELEASE
    error = as_json(proc)
    assert error["ok"] is False
    assert error["error"]["code"] == "unsafe_member"
    assert error["error"]["kind"] == "release"
    assert "lib/demo/link" in error["error"]["message"]
    human = hotswap(command, tarball, "--state-dir", state)
    assert human.returncode == EXIT_RELEASE
    assert "error [unsafe_member]" in human.stderr
    assert not (state / "releases").exists() or os.listdir(state / "releases") == []


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (("inspect", "{tmp}/nope.tar.gz"), "release_not_found", EXIT_USAGE),
        (("unpack", "{good}", "--max-files", "3"), "too_large", EXIT_RELEASE),
        (("unpack", "{good}", "--sha256", "0" * 64), "checksum_mismatch", EXIT_RELEASE),
        (("build", "{tmp}"), "not_a_project", EXIT_USAGE),
        (("build", "{unknown_key}"), "unknown_config_key", EXIT_USAGE),
        (("build", "{broken}", "-o", "{tmp}/out"), "build_failed", EXIT_RESOURCE),
    ],
    ids=["missing", "too-many-files", "wrong-sha256", "no-project", "unknown-key", "build-fails"],
)
def test_errors_print_their_code_and_exit_with_their_status(
    args: tuple[str, ...], code: str, status: int, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    places = {
        "tmp": str(tmp_path),
        "good": str(forge.write_archive(tmp_path / "in" / "good.tar.gz", forge.release_members())),
        "unknown_key": str(tmp_path / "unknown"),
        "broken": str(tmp_path / "broken"),
    }
    if "{unknown_key}" in args:
        (tmp_path / "unknown").mkdir()
        (tmp_path / "unknown" / "pyproject.toml").write_text(
            '[project]\nname = "x"\nversion = "1"\n[tool.hotswap]\nentry = "x:app"\nport = 80\n'
        )
    if "{broken}" in args:
        stamp_project(tmp_path / "broken", "1.0.0", {"src/fixture_app/broken.py": "def broken(:\n"})
    argv = [a.format(**places) for a in args]
    state = [] if argv[0] == "build" else ["--state-dir", str(tmp_path / "state")]
    proc = hotswap(*argv, *state, "--json")
    assert proc.returncode == status, proc.stderr
    assert as_json(proc)["error"]["code"] == code
    if code == "build_failed":
        assert "SyntaxError" in as_json(proc)["error"]["message"]  # the tail of the output
        return  # one failing build is enough
    human = hotswap(*argv, *state)
    assert human.returncode == status
    assert f"error [{code}]" in human.stderr


@pytest.mark.parametrize("command", ["build", "inspect", "unpack", "releases"])
def test_help_works_for_each_command(command: str) -> None:
    proc = hotswap(command, "--help")
    assert proc.returncode == EXIT_OK
    assert proc.stdout.startswith(f"usage: hotswap {command}")
    assert "--json" in proc.stdout


def test_top_level_help_and_version() -> None:
    proc = hotswap("--help")
    assert proc.returncode == EXIT_OK
    for command in ("build", "inspect", "unpack", "releases"):
        assert command in proc.stdout
    version = hotswap("--version")
    assert version.returncode == EXIT_OK
    assert version.stdout.startswith("hotswap ")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "hotswap"
    proc = subprocess.run(
        [script, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == EXIT_OK
    assert proc.stdout.startswith("hotswap ")
