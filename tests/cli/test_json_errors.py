"""With ``--json``, every refusal of every command is one JSON object on stdout (``ok: false``
and the error with its code), a command line that does not parse included; and every command's
``--help`` ends with an example."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.cli import EXIT_RESOURCE, EXIT_USAGE
from hotswap.errors import ALL_CODES
from tests.cli.helpers import as_json, hotswap
from tests.cli.test_commands import COMMANDS

# (argv, the code); "{state}" is an empty state dir with no supervisor
BAD = [
    (["build", "{tmp}/nope"], "not_a_project"),
    (["inspect", "{tmp}/nope.tar.gz"], "release_not_found"),
    (["unpack", "{tmp}/nope.tar.gz", "--state-dir", "{state}"], "release_not_found"),
    (["releases", "--state-dir", "{tmp}/a-file"], None),
    (["run", "{tmp}/nope.tar.gz", "--state-dir", "{state}"], "release_not_found"),
    (["run", "--bind", "nonsense:::", "--state-dir", "{state}"], "bad_config"),
    (["upgrade", "{tmp}/nope.tar.gz", "--state-dir", "{state}"], "not_running"),
    (["rollback", "--state-dir", "{state}"], "not_running"),
    (["restart", "--state-dir", "{state}"], "not_running"),
    (["status", "--state-dir", "{state}"], "not_running"),
    (["hot-upgrade", "{tmp}/nope.tar.gz", "--state-dir", "{state}"], "not_running"),
    (["check", "{tmp}/a.tar.gz", "{tmp}/b.tar.gz", "--state-dir", "{state}"], "release_not_found"),
    (["handoff", "get", "k", "--state-dir", "{state}"], "not_running"),
    (["publish", "{tmp}/nope.tar.gz", "not-a-url"], None),
    (["fetch", "not-a-url", "--state-dir", "{state}"], "bad_url"),
    (["promote", "not-a-url"], "bad_url"),
    (["systemd-unit", "--name", "x", "--release", "{tmp}/nope.tar.gz"], "release_not_found"),
    (["env", "list", "--state-dir", "{tmp}/a-file"], None),
    (["env", "set", "NOEQUALS"], "bad_arguments"),
    (["logs", "--state-dir", "{state}"], "not_running"),
    (["logs", "-f", "--state-dir", "{state}"], "not_running"),
    (["logs", "-n", "-1"], "bad_arguments"),
    (["status", "--watch", "--state-dir", "{state}"], "not_running"),
    (["status", "--watch", "--interval", "0"], "bad_arguments"),
    # command lines that do not parse
    (["bogus"], "bad_arguments"),
    (["status", "--bogus"], "bad_arguments"),
    (["upgrade"], "bad_arguments"),
    (["handoff", "put", "k"], "bad_arguments"),
    (["run", "--max-restarts", "many"], "bad_arguments"),
]


@pytest.mark.parametrize(("argv", "code"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_every_refusal_is_one_json_object(
    argv: list[str], code: str | None, tmp_path: Path
) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "a-file").write_text("not a dir")
    args = [a.format(tmp=tmp_path, state=tmp_path / "state") for a in argv]
    proc = hotswap(*args, "--json", home=tmp_path, timeout=60)
    assert proc.returncode != 0
    data = as_json(proc)
    assert data["ok"] is False
    assert data["error"]["code"] in ALL_CODES
    if code is not None:
        assert data["error"]["code"] == code
    if code == "bad_arguments":
        assert proc.returncode == EXIT_USAGE
        assert "usage: hotswap" in proc.stderr  # people still get argparse's message


def test_a_command_line_that_does_not_parse_still_reads_as_usual_without_json(
    tmp_path: Path,
) -> None:
    proc = hotswap("status", "--bogus", home=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert proc.stdout == ""
    assert "hotswap: error: unrecognized arguments: --bogus" in proc.stderr


def test_every_command_is_covered_here() -> None:
    missing = set(COMMANDS) - {argv[0] for argv, _ in BAD}
    assert not missing, f"add a bad command line of {sorted(missing)} to BAD"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_ends_with_an_example(command: str, tmp_path: Path) -> None:
    lines = hotswap(command, "--help", home=tmp_path).stdout.rstrip().splitlines()
    assert lines[-1].startswith(f"example: hotswap {command} ")


def test_an_os_error_no_layer_mapped_is_io_error_not_a_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "control.sock").symlink_to("control.sock")  # connect: ELOOP
    proc = hotswap("status", "--state-dir", state, "--json", home=tmp_path)
    assert proc.returncode == EXIT_RESOURCE
    assert as_json(proc)["error"]["code"] == "io_error"
    assert "Traceback" not in proc.stderr
