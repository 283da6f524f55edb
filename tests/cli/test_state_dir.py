"""Which state dir a command uses when none is given: the app's own for ``run TARBALL``
(tests/cli/test_run.py), else the only one there is; none or several is ``state_dir_unknown``,
never a guess. ``--help`` says the same as the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.cli import EXIT_OK, EXIT_USAGE, statedir
from hotswap.errors import UsageError
from hotswap.release.build import BuildResult
from tests.cli.helpers import as_json, hotswap


def _app_dirs(tmp_path: Path, *names: str) -> Path:
    base = tmp_path / "x" / "hotswap"
    for name in names:
        (base / name).mkdir(parents=True, mode=0o700)
    return base


def test_the_only_state_dir_is_the_default(tmp_path: Path) -> None:
    base = _app_dirs(tmp_path, "shop")
    proc = hotswap("releases", "--json", home=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert as_json(proc)["state_dir"] == str(base / "shop")


def test_two_state_dirs_are_refused_naming_both(tmp_path: Path) -> None:
    _app_dirs(tmp_path, "shop", "chat")
    proc = hotswap("releases", "--json", home=tmp_path)
    assert proc.returncode == EXIT_USAGE
    error = as_json(proc)["error"]
    assert error["code"] == "state_dir_unknown"
    assert "chat, shop" in error["message"]
    human = hotswap("status", home=tmp_path)
    assert human.returncode == EXIT_USAGE
    assert "error [state_dir_unknown]" in human.stderr
    assert "--state-dir" in human.stderr


def test_no_state_dir_at_all_is_refused(tmp_path: Path) -> None:
    proc = hotswap("releases", "--json", home=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert as_json(proc)["error"]["code"] == "state_dir_unknown"
    assert not (tmp_path / "x").exists()  # and nothing was created


def test_the_environment_and_the_option_win(tmp_path: Path) -> None:
    _app_dirs(tmp_path, "shop", "chat")
    env_dir, opt_dir = tmp_path / "env", tmp_path / "opt"
    by_env = hotswap("releases", "--json", home=tmp_path, HOTSWAP_STATE_DIR=str(env_dir))
    assert as_json(by_env)["state_dir"] == str(env_dir)
    by_opt = hotswap("releases", "--json", "--state-dir", opt_dir, home=tmp_path)
    assert as_json(by_opt)["state_dir"] == str(opt_dir)


def test_inspect_needs_no_state_dir(tmp_path: Path) -> None:
    _app_dirs(tmp_path, "shop", "chat")  # ambiguous, but inspect writes nothing
    proc = hotswap("inspect", tmp_path / "nope.tar.gz", "--json", home=tmp_path)
    assert as_json(proc)["error"]["code"] == "release_not_found"


def test_help_says_how_the_state_dir_is_chosen(tmp_path: Path) -> None:
    run = " ".join(hotswap("run", "--help", home=tmp_path).stdout.split())
    assert "~/.local/state/hotswap/APP with APP the tarball's app name" in run
    assert "/default" not in run
    releases = " ".join(hotswap("releases", "--help", home=tmp_path).stdout.split())
    assert "the only state dir under" in releases
    assert "/default" not in releases


def test_unpack_defaults_to_the_tarballs_app_dir(tmp_path: Path, release_v1: BuildResult) -> None:
    base = _app_dirs(tmp_path, "shop")  # another app's dir is not where this release goes
    proc = hotswap("unpack", release_v1.tarball, "--json", home=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert Path(as_json(proc)["path"]).parent.parent == base / release_v1.manifest.name


def test_with_several_state_dirs_a_tarball_picks_its_apps(
    tmp_path: Path, release_v1: BuildResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # in-process: the resolution alone
    monkeypatch.delenv("HOTSWAP_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "x"))
    base = _app_dirs(tmp_path, "shop", release_v1.manifest.name)
    picked = statedir.resolve(None, tarball=str(release_v1.tarball))
    assert picked == base / release_v1.manifest.name
    with pytest.raises(UsageError) as unknown:
        statedir.resolve(None)  # without the tarball: which one?
    assert unknown.value.code == "state_dir_unknown"
