"""No orphan keeps a listener: what a generation forks dies with it (its process group).

The fixture app forks a worker at start-up that ignores SIGTERM and keeps the inherited
listening socket (fd 3) open. Killed by pid alone, that worker outlived its generation and the
supervisor: the port kept accepting connections nobody answered, and the next supervisor could
not bind it. Each generation runs in a process group of its own, killed when it exits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BuildRelease
from tests.e2e.harness import pid_alive, supervisor, wait_for


@pytest.mark.slow
def test_a_forked_worker_ignoring_sigterm_dies_with_its_generation(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", tool={"shutdown_timeout": 3})
    v2 = build_release("2.0.0", tool={"shutdown_timeout": 3})
    with supervisor(v1.tarball, tmp_path, env={"FIXTURE_FORK_GRANDCHILD": "1.0.0"}) as sup:
        old_pid = sup.get_json()["pid"]
        marker = sup.state_dir / f"grandchild-{old_pid}.pid"
        grandchild = int(wait_for(lambda: marker.is_file() and marker.read_text()))
        assert pid_alive(grandchild)
        assert sup.upgrade(v2.tarball)["ok"]
        wait_for(lambda: not pid_alive(old_pid), what="the old generation to exit")
        wait_for(lambda: not pid_alive(grandchild), timeout=5, what="its forked worker to die")
        assert sup.get_json()["version"] == "2.0.0"
    # and stop_and_check found the port refused: nothing holds the listener any more
