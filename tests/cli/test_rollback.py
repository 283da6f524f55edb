"""``hotswap rollback`` toggles between the last two releases: a second rollback rolls forward
again, as ``--help`` and docs/supervisor.md say."""

from __future__ import annotations

from pathlib import Path

from hotswap.cli import EXIT_OK
from hotswap.release.build import BuildResult
from tests.cli.helpers import as_json, hotswap
from tests.e2e.harness import supervisor


def test_a_second_rollback_rolls_forward_again(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    v1, v2 = release_v1.manifest.release_id, release_v2.manifest.release_id
    with supervisor(release_v1.tarball, tmp_path) as sup:
        sup.upgrade(release_v2.tarball)
        served = []
        for _ in range(2):
            proc = hotswap("rollback", "--json", "--state-dir", sup.state_dir, home=tmp_path)
            assert proc.returncode == EXIT_OK, proc.stderr
            served.append(as_json(proc)["release"])
            sup.seen_pids.add(int(as_json(proc)["pid"]))
        assert served == [v1, v2]
        assert sup.status()["current"] == v2


def test_help_says_a_second_rollback_rolls_forward(tmp_path: Path) -> None:
    text = " ".join(hotswap("rollback", "--help", home=tmp_path).stdout.split())
    assert "a second rollback rolls forward again" in text
