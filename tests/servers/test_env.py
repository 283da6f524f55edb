"""The state dir's environment file: ``hotswap env set`` reaches the next generation, never
the running one, without a supervisor restart; the file is private and parsed strictly."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hotswap import envfile
from hotswap.errors import UsageError
from hotswap.release.build import BuildResult
from tests.e2e.harness import supervisor


@pytest.mark.slow
def test_env_set_reaches_the_next_generation_and_not_the_running_one(
    tmp_path: Path, flask_releases: list[BuildResult]
) -> None:
    with supervisor(flask_releases[0].tarball, tmp_path) as sup:
        running = sup.get_json()
        assert running["env"] is None
        done = sup.cli("env", "set", "FIXTURE_ENV=postgres://db/app?x=1", "OTHER=2")
        assert done.returncode == 0, done.stderr
        mode = stat.S_IMODE(os.stat(sup.state_dir / "env").st_mode)
        assert mode == 0o600
        assert sup.get_json()["env"] is None  # the running generation keeps its environment
        assert sup.get_json()["pid"] == running["pid"]
        sup.upgrade(flask_releases[1].tarball)
        after = sup.get_json()
        assert after["version"] == "2.0.0" and after["env"] == "postgres://db/app?x=1"
        listed = sup.cli("env", "list", "--json")
        assert json.loads(listed.stdout)["names"] == ["FIXTURE_ENV", "OTHER"]
        environment = sup.status()["active"]["environment"]
        assert environment["env_file"] == ["FIXTURE_ENV", "OTHER"]
        assert "postgres" not in json.dumps(environment)  # the file's values are not shown
        assert "postgres" not in listed.stdout  # names only, unless --values
        assert sup.cli("env", "unset", "FIXTURE_ENV").returncode == 0
        sup.upgrade(flask_releases[0].tarball)
        assert sup.get_json()["env"] is None


def test_precedence_is_release_defaults_then_supervisor_then_file(tmp_path: Path) -> None:
    envfile.set_variables(tmp_path, {"A": "file"})
    env, shown = envfile.generation_environment(
        {"A": "default", "B": "default", "C": "default"}, {"A": "sup", "B": "sup"}, tmp_path
    )
    assert (env["A"], env["B"], env["C"]) == ("file", "sup", "default")
    # what status shows: release defaults in force with their values, the file's names only
    assert shown == {"release": {"C": "default"}, "env_file": ["A"], "overridden": ["A", "B"]}


@pytest.mark.parametrize(
    ("text", "line"), [("A=1\nnot a line\n", 2), ("=x\n", 1), ("HOTSWAP_X=1\n", 1)]
)
def test_malformed_lines_are_bad_config_naming_the_line(text: str, line: int) -> None:
    with pytest.raises(UsageError) as caught:
        envfile.parse(text)
    assert caught.value.code == "bad_config" and caught.value.details["line"] == line


def test_values_are_verbatim_and_comments_are_skipped() -> None:
    assert envfile.parse("# c\n\nURL=a=b #not a comment\nEMPTY=\n") == {
        "URL": "a=b #not a comment",
        "EMPTY": "",
    }


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    envfile.set_variables(tmp_path, {"SECRET": "x"})
    os.chmod(tmp_path / "env", 0o644)
    with pytest.raises(UsageError) as caught:
        envfile.read(tmp_path)
    assert "0600" in caught.value.message


@pytest.mark.parametrize(("name", "value"), [("LISTEN_FDS", "3"), ("A B", "1"), ("X", "a\nb")])
def test_bad_names_and_values_change_nothing(tmp_path: Path, name: str, value: str) -> None:
    envfile.set_variables(tmp_path, {"KEEP": "1"})
    with pytest.raises(UsageError):
        envfile.set_variables(tmp_path, {name: value})
    assert envfile.read(tmp_path) == {"KEEP": "1"}
