"""A reader that goes away early (``hotswap releases --json | head -c1``) ends the command
quietly, with the status a shell reports for SIGPIPE, and no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hotswap.cli import EXIT_BROKEN_PIPE
from tests.cli.helpers import hotswap


@pytest.mark.parametrize(
    "args",
    [("releases", "--json"), ("releases",)],
    ids=["json", "human"],
)
def test_a_closed_stdout_ends_quietly_without_a_traceback(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write gets EPIPE
    try:
        proc = hotswap(*args, "--state-dir", tmp_path / "state", home=tmp_path, stdout=write)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == EXIT_BROKEN_PIPE
