"""A human error says what failed and, for a failed generation, shows the end of its output
(``--json`` carries all of it in ``details.output``)."""

from __future__ import annotations

from pathlib import Path

from hotswap.cli import ERROR_TAIL, EXIT_CHILD
from hotswap.cli.render import error_text
from hotswap.errors import ChildError, UsageError
from hotswap.release.build import BuildResult
from tests.cli.helpers import hotswap
from tests.e2e.harness import supervisor


def test_a_failed_upgrade_shows_the_end_of_the_generations_output(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    env = {"FIXTURE_CRASH_AT_IMPORT": "2.0.0"}
    with supervisor(release_v1.tarball, tmp_path, env=env) as sup:
        proc = hotswap(
            "upgrade", release_v2.tarball, "-q", "--state-dir", sup.state_dir, home=tmp_path
        )
    assert proc.returncode == EXIT_CHILD
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("hotswap: error [boot_failed]: ")
    assert "output of the generation" in lines[1]
    shown = [line for line in lines[2:] if line.startswith("  | ")]
    assert 0 < len(shown) <= ERROR_TAIL
    assert "crashes at import, as asked" in shown[-1]  # the traceback's last line


def test_error_text_shows_the_last_lines_only() -> None:
    output = [f"line {i}" for i in range(40)]
    text = error_text(ChildError("boot_failed", "it died", output=output), tail=15).splitlines()
    assert text[0] == "hotswap: error [boot_failed]: it died"
    assert text[1] == "  output of the generation (last 15 of 40 lines):"
    assert text[2:] == [f"  | line {i}" for i in range(25, 40)]


def test_error_text_without_output_is_one_line() -> None:
    assert (
        error_text(UsageError("not_running", "no"), tail=15) == "hotswap: error [not_running]: no"
    )
    with_output = ChildError("boot_failed", "it died", output=["a"])
    assert error_text(with_output, tail=0) == "hotswap: error [boot_failed]: it died"


def test_a_refused_hot_upgrade_lists_its_reason_codes() -> None:
    reasons = [
        {"code": "instance_state", "message": "Counter changed", "subject": "app.Counter"},
        {"code": "data_files", "message": "data files changed"},
    ]
    error = ChildError("hot_upgrade_refused", "cannot hot-upgrade: ...", reasons=reasons)
    assert error_text(error, tail=15).splitlines()[1:] == [
        "  reasons: instance_state (app.Counter), data_files"
    ]
