"""``hotswap status``'s human form lists every worker of a generation of several."""

from __future__ import annotations

from hotswap.cli.render import progress_line
from hotswap.cli.status import render_status


def _worker(index: int, pid: int, release: str = "app-1", restarts: int = 0) -> dict[str, object]:
    return {
        "worker": index,
        "pid": pid,
        "state": "live",
        "uptime_s": 12.0,
        "restarts": restarts,
        "release": release,
    }


def _status(workers: list[dict[str, object]]) -> dict[str, object]:
    return {
        "supervisor": {
            "pid": 10,
            "hotswap": "0",
            "uptime_s": 60.0,
            "listeners": ["127.0.0.1:8000"],
        },
        "active": {
            "generation": 3,
            "pid": 11,
            "release": "app-1",
            "version": "1.0",
            "uptime_s": 12.0,
            "workers": workers,
        },
        "upgrade": None,
        "services": [],
        "generations": [],
        "recent": [],
    }


def test_each_worker_gets_a_line_with_its_restarts_and_any_other_release() -> None:
    text = render_status(_status([_worker(0, 11), _worker(1, 12, "app-2", restarts=2)]))
    assert "  worker 0  pid 11, live, up 12s, restarts 0\n" in text
    assert "  worker 1  pid 12, live, up 12s, restarts 2, runs app-2\n" in text


def test_one_worker_shows_no_worker_lines() -> None:
    assert "worker" not in render_status(_status([_worker(0, 11)]))


def test_what_ran_at_start_up_is_counted() -> None:
    status = _status([_worker(0, 11)])
    status["active"]["startup_code"] = {"app.main": ["lifespan", "make"], "lib.x": ["f"]}  # type: ignore[index]
    text = render_status(status)
    assert "  start-up  3 functions of 2 modules ran before ready" in text
    assert "start-up" not in render_status(_status([_worker(0, 11)]))


def test_a_generation_still_spawning_is_not_shown_as_pid_0() -> None:
    status = _status([_worker(0, 11)])
    status["generations"] = [{"generation": 4, "state": "starting", "pid": 0}]
    assert "generation 4 starting (spawning)" in render_status(status)


def test_a_hot_upgrade_under_way_is_shown() -> None:
    data = {
        **_status([_worker(0, 21), _worker(1, 22)]),
        "upgrading": True,
        "upgrade": {
            "phase": "prepare",
            "release": "app-2",
            "how": "hot",
            "elapsed_ms": 41.0,
            "new_generation": None,
        },
    }
    text = render_status(data)
    assert "upgrading   hot to app-2: phase prepare, 41 ms so far" in text
    assert "upgrading   no" not in text


def test_the_progress_line_counts_a_hot_upgrades_own_phases() -> None:
    def line(how: str, phase: str, workers: int) -> str | None:
        data = _status([_worker(i, 21 + i) for i in range(workers)])
        data["active"]["worker_count"] = workers  # type: ignore[index]
        data["upgrade"] = {"phase": phase, "how": how, "elapsed_ms": 1500.0}
        return progress_line(data)

    assert (line("hot", "commit", 4) or "").endswith("commit (3 of 4), 1.5 s")
    assert (line("hot", "apply", 1) or "").endswith("apply (2 of 3), 1.5 s")
    assert (line("blue-green", "boot", 1) or "").endswith("boot (3 of 7), 1.5 s")
