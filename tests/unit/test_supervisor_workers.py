"""Generations of several workers, in virtual time against scripted children (no process).

All-or-nothing readiness (every worker ready and healthy before any accepts), the error naming
the worker that failed, parallel boot, drain of every old worker, and restarts of one worker
alone after cutover. The real processes are in ``tests/e2e/test_workers.py``.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import ChildError, UsageError
from hotswap.supervisor import hot
from hotswap.supervisor.lifecycle import GenState
from hotswap.supervisor.policy import RestartPolicy
from hotswap.testing import FakeChildren, Script
from tests.unit.test_supervisor_driver import APP, World, run

WORKERS = {**APP, "workers": 3}


def serving(w: World, index: int) -> bool:
    child = w.sup.active.workers[index] if w.sup.active is not None else None
    return child is not None and child.state is GenState.LIVE


def test_every_worker_is_spawned_at_once_and_goes_live_together(tmp_path: Path) -> None:
    fake = FakeChildren(Script(ready_after=1.0))

    async def scenario(w: World) -> tuple[dict[str, Any], dict[str, Any]]:
        result = await w.sup.upgrade(w.ids["2"])
        return result, w.sup.status()

    (result, status), code, w = run(tmp_path, scenario, fake=fake, app=WORKERS)
    assert code == 0 and result["ok"]
    new = w.fake.workers(2)
    assert [c.proc.worker for c in new] == [0, 1, 2]
    assert len({c.started for c in new}) == 1  # spawned in parallel, not one after another
    assert result["timings_ms"]["boot"] == pytest.approx(1000, abs=1)  # not 3 x 1 s
    assert all(c.ops[0] == "go" for c in new)
    assert result["pids"] == [c.proc.pid for c in new]
    active = status["active"]
    assert active["worker_count"] == 3
    assert [(x["worker"], x["state"], x["restarts"]) for x in active["workers"]] == [
        (i, GenState.LIVE, 0) for i in range(3)
    ]
    old = w.fake.workers(1)
    assert all(c.ops[-1] == "drain" and c.proc.returncode == 0 for c in old)


def test_one_worker_failing_at_import_refuses_the_release_and_names_it(tmp_path: Path) -> None:
    fake = FakeChildren()

    async def scenario(w: World) -> tuple[ChildError, int | None, list[str]]:
        fake.next = [Script(ready_after=0.5), Script(exit_before_ready=3), Script()]
        with pytest.raises(ChildError) as caught:
            await w.sup.upgrade(w.ids["2"])
        assert w.sup.active is not None
        return caught.value, w.sup.active.number, [c.ops[-1] for c in w.fake.workers(1)]

    (error, serving, old_ops), _, w = run(tmp_path, scenario, fake=fake, app=WORKERS)
    assert error.code == "boot_failed"
    assert error.message.startswith("generation 2 worker 1 exited before it was ready")
    assert error.details["worker"] == 1 and error.details["returncode"] == 3
    assert serving == 1 and "drain" not in old_ops  # the old generation was never touched
    new = w.fake.workers(2)
    assert all(c.proc.returncode is not None for c in new)  # the whole new generation went
    assert all("go" not in c.ops for c in new)  # none of it ever accepted a connection
    assert w.sup.store.read_state()["current"] == w.ids["1"]


def test_one_worker_failing_its_probe_fails_the_whole_generation(tmp_path: Path) -> None:
    fake = FakeChildren()

    async def scenario(w: World) -> ChildError:
        fake.next = [Script(), Script(), Script(health=503)]
        with pytest.raises(ChildError) as caught:
            await w.sup.upgrade(w.ids["2"])
        return caught.value

    error, _, w = run(tmp_path, scenario, fake=fake, app=WORKERS)
    assert error.code == "health_failed" and "worker 2: GET /health answered 503" in error.message
    assert all(signal.SIGKILL in c.proc.process.signals for c in w.fake.workers(2))  # type: ignore[attr-defined]


def test_the_old_generation_has_drained_only_when_its_last_worker_has(tmp_path: Path) -> None:
    fake = FakeChildren()
    # generation 1's workers: one drains at once, one in 4 s, one ignores its drain
    fake.next = [Script(drain_exit_after=d) for d in (0.01, 4.0, None)]

    async def scenario(w: World) -> dict[str, Any]:
        return await w.sup.upgrade(w.ids["2"])

    result, _, w = run(tmp_path, scenario, fake=fake, app=WORKERS)
    assert result["ok"] and result["drain_killed"] is True
    drained = result["timings_ms"]["commit"] + result["timings_ms"]["drain"]
    assert drained == pytest.approx(7000, abs=1)  # shutdown_timeout, for the one that hung
    codes = [c.proc.returncode for c in w.fake.workers(1)]
    assert codes == [0, 0, -signal.SIGKILL]


def test_a_worker_that_dies_after_cutover_is_restarted_alone_and_gated(tmp_path: Path) -> None:
    async def scenario(w: World) -> list[Any]:
        victim = w.fake.child(1, worker=1)
        victim.exit(-signal.SIGKILL)
        await w.until(lambda: len(w.fake.workers(1)) == 4 and serving(w, 1))
        return [w.sup.active, w.sup.status()["active"], [list(c.ops) for c in w.fake.workers(1)]]

    (gen, status, ops), code, w = run(tmp_path, scenario, app=WORKERS)
    assert code == 0
    assert gen.number == 1  # the generation is the same one: no swap happened
    spawned = w.fake.workers(1)
    assert [c.proc.worker for c in spawned] == [0, 1, 2, 1]
    replacement = spawned[3]
    assert replacement.ops[0] == "go"  # gated: ready and probed before it accepted
    assert replacement.started - spawned[1].started == pytest.approx(0.1 + 1.0, abs=0.05)
    assert [x["restarts"] for x in status["workers"]] == [0, 1, 0]
    assert ops[0] == ops[2] == ["go"]  # the others served throughout, never drained
    assert [r["how"] for r in w.sup.recent] == ["initial"]
    assert w.logged("generation 1 worker 1 died: restarting it in 1s")
    assert w.logged("generation 1 worker 1 serves again (restart 1)")


def test_a_restarted_worker_that_fails_its_probe_is_retried_with_backoff(tmp_path: Path) -> None:
    fake = FakeChildren()
    policy = RestartPolicy(initial=1.0, maximum=30.0, max_restarts=3, window=600.0)

    async def scenario(w: World) -> None:
        fake.default = Script(health=500)  # every replacement fails its probe
        w.fake.child(1, worker=2).exit(1)
        await w.until(lambda: w.sup.stopping)

    _, code, w = run(tmp_path, scenario, fake=fake, policy=policy, app=WORKERS)
    assert code == 1  # gave up: the app cannot serve in that worker
    replacements = w.fake.workers(1)[3:]
    assert [c.proc.worker for c in replacements] == [2, 2, 2]
    assert all(c.proc.returncode == -signal.SIGKILL for c in replacements)
    assert all("go" not in c.ops for c in replacements)  # never accepted a connection
    assert w.logged("generation 1 worker 2 failed its health probe: GET /health answered 500")
    assert w.logged("generation 1 worker 2 keeps dying: too many restarts, giving up")


def test_a_worker_dying_within_the_stability_window_rolls_the_release_back(
    tmp_path: Path,
) -> None:
    async def scenario(w: World) -> None:
        assert (await w.sup.upgrade(w.ids["2"]))["ok"]
        w.fake.child(2, worker=0).exit(1)
        await w.until(lambda: w.sup.active is not None and w.sup.active.number == 3)
        await w.until(lambda: w.sup.swapping is None)

    _, code, w = run(tmp_path, scenario, app=WORKERS)
    assert code == 0
    assert w.sup.recent[0]["how"] == "auto-rollback" and w.sup.recent[0]["ok"]
    assert [c.proc.release.id for c in w.fake.workers(3)] == [w.ids["1"]] * 3
    # the two workers of generation 2 still alive drained as an old generation does
    assert [c.ops[-1] for c in w.fake.workers(2)[1:]] == ["drain", "drain"]


def test_every_worker_dying_restarts_the_generation(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        for worker in range(3):
            w.fake.child(1, worker=worker).exit(1)
        await w.until(lambda: w.sup.active is not None and w.sup.active.number == 2)

    _, code, w = run(tmp_path, scenario, app=WORKERS)
    assert code == 0 and w.sup.recent[0]["how"] == "restart"
    assert w.logged("active generation died: restarting the current release in 1s")


def test_workers_given_to_the_supervisor_override_the_release(tmp_path: Path) -> None:
    async def scenario(w: World) -> dict[str, Any]:
        w.sup.workers = 2
        return await w.sup.upgrade(w.ids["2"])

    result, _, w = run(tmp_path, scenario, app=WORKERS)
    assert result["ok"] and len(w.fake.workers(1)) == 3 and len(w.fake.workers(2)) == 2


def test_a_worker_killed_from_outside_within_the_stability_window_is_restarted_alone(
    tmp_path: Path,
) -> None:
    async def scenario(w: World) -> int | None:
        assert (await w.sup.upgrade(w.ids["2"]))["ok"]
        w.fake.child(2, worker=1).exit(-signal.SIGKILL)  # the OOM killer, say
        await w.until(lambda: len(w.fake.workers(2)) == 4 and serving(w, 1))
        return w.sup.active.number if w.sup.active is not None else None

    serving_gen, code, w = run(tmp_path, scenario, app=WORKERS)
    assert code == 0
    assert serving_gen == 2  # no rollback
    assert [r["how"] for r in w.sup.recent] == ["blue-green", "initial"]
    assert w.logged("generation 2 worker 1 (pid")
    assert w.logged("exited with status -9 (killed by SIGKILL)")


def test_a_worker_crashing_within_the_stability_window_is_named_in_the_rollback(
    tmp_path: Path,
) -> None:
    async def scenario(w: World) -> None:
        assert (await w.sup.upgrade(w.ids["2"]))["ok"]
        w.fake.child(2, worker=2).exit(-signal.SIGSEGV)
        await w.until(lambda: w.sup.active is not None and w.sup.active.number == 3)

    _, _, w = run(tmp_path, scenario, app=WORKERS)
    assert w.logged("generation 2 worker 2 (")
    assert w.logged("died within the stability window")


def test_a_hot_upgrade_to_the_release_every_worker_runs_is_refused(tmp_path: Path) -> None:
    async def scenario(w: World) -> tuple[UsageError, list[str]]:
        with pytest.raises(UsageError) as caught:
            await w.sup.hot_upgrade(w.ids["1"])
        return caught.value, [op for c in w.fake.workers(1) for op in c.ops]

    (error, ops), _, w = run(tmp_path, scenario, app=WORKERS)
    assert error.code == "same_release" and "already runs" in error.message
    assert not any(op.startswith("hot") for op in ops)  # no worker was paused for nothing
    assert w.sup.recent[0]["how"] == "hot" and w.sup.recent[0]["ok"] is False


def _hot(tmp_path: Path, scripts: list[Script]) -> tuple[Any, World]:
    fake = FakeChildren()
    fake.next = list(scripts)  # generation 1's workers, in order

    async def scenario(w: World) -> Any:
        try:
            result: Any = await w.sup.hot_upgrade(w.ids["2"])
        except ChildError as e:
            result = e
        await w.until(lambda: all(serving(w, i) for i in range(3)))
        return result

    result, _, w = run(tmp_path, scenario, fake=fake, app=WORKERS)
    return result, w


def test_a_hot_upgrade_of_several_workers_commits_in_every_worker(tmp_path: Path) -> None:
    result, w = _hot(tmp_path, [Script(), Script(), Script()])
    assert result["ok"] and len(result["stats"]["workers"]) == 3
    pids = [c.proc.pid for c in w.fake.workers(1)]
    assert [(x["worker"], x["pid"]) for x in result["stats"]["workers"]] == list(enumerate(pids))
    assert w.sup.store.read_state()["current"] == w.ids["2"]
    workers = w.fake.workers(1)
    assert len(workers) == 3  # the same processes
    assert all(("hot_decide", {"keep": True}) in c.requests for c in workers)
    assert all(("hot_finish", {}) in c.requests for c in workers)  # after every answer


def test_one_worker_failing_its_commit_rolls_every_worker_back(tmp_path: Path) -> None:
    error, w = _hot(tmp_path, [Script(), Script(hot="fail"), Script()])
    assert isinstance(error, ChildError) and error.code == "hot_upgrade_failed"
    assert error.details["worker"] == 1 and "scripted" in error.message
    assert w.sup.store.read_state()["current"] == w.ids["1"]
    assert all(("hot_decide", {"keep": False}) in c.requests for c in w.fake.workers(1))
    assert not any(op == "hot_finish" for c in w.fake.workers(1) for op, _a in c.requests)


def test_a_worker_failing_after_the_decision_to_keep_is_replaced_on_the_new_release(
    tmp_path: Path,
) -> None:
    result, w = _hot(tmp_path, [Script(), Script(), Script(hot="fail_after")])
    # every worker applied it and the supervisor decided to keep it: that is the commit, so
    # the release is current and a worker that lost its hold is replaced, not left behind
    assert result["ok"] and result["stats"]["replaced"] == [2]
    assert w.sup.store.read_state()["current"] == w.ids["2"]
    replacement = w.fake.workers(1)[3]
    assert replacement.proc.worker == 2 and replacement.proc.release.id == w.ids["2"]


def _turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle: int, scripts: list[Script]
) -> tuple[Any, list[list[float]], list[float], World]:
    """A hot upgrade of 4 workers with ``idle`` cores besides the first worker's: each
    reader's turns (when it got ``hot_turn``, when it said it was done), when each reader was
    told to go on."""
    monkeypatch.setattr(hot, "idle_cores", lambda: idle)
    fake = FakeChildren()
    fake.next = list(scripts)

    async def scenario(w: World) -> Any:
        result = await w.sup.hot_upgrade(w.ids["2"])
        await w.until(lambda: all(serving(w, i) for i in range(4)))
        return result

    result, _, w = run(tmp_path, scenario, fake=fake, app={**APP, "workers": 4})
    turns, proceeds = [], []
    for child in w.fake.workers(1)[1:]:
        heard = list(zip(child.ops, child.heard_at, strict=True))
        turns.append([t for op, t in heard if op == "hot_turn"])
        proceeds.append(next(t for op, t in heard if op == "hot_proceed"))
    return result, turns, proceeds, w


@pytest.mark.parametrize(("idle", "offsets"), [(1, [0, 0.2, 0.4]), (2, [0, 0, 0.2])])
def test_the_readers_take_turns_on_the_idle_cores_while_the_first_one_analyses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle: int, offsets: list[float]
) -> None:
    readers = [Script(turn_for=0.2) for _ in range(3)]
    scripts = [Script(prepare_for=1), *readers]
    result, turns, proceeds, w = _turns(tmp_path, monkeypatch, idle, scripts)
    assert result["ok"]
    assert all(_prepares(c)[0]["analysis_wait"] is True for c in w.fake.workers(1)[1:])
    # one reader per idle core at a time, each as soon as one before says it is done
    starts = [t[0] for t in turns]
    assert [t - starts[0] for t in starts] == pytest.approx(offsets)
    assert proceeds == pytest.approx([starts[0] + 1] * 3)  # go when the first one has prepared


def test_no_turn_is_given_once_the_analysis_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers = [Script(turn_for=0.6) for _ in range(3)]
    result, turns, proceeds, _w = _turns(
        tmp_path, monkeypatch, 1, [Script(prepare_for=1), *readers]
    )
    assert result["ok"]
    # the turns would end at 0.6, 1.2 and 1.8: the first one is done at 1, the third reader
    # takes its part after hot_proceed, and nobody waits for the second one's turn to end
    assert [len(t) for t in turns] == [1, 1, 0]
    assert proceeds == pytest.approx([turns[0][0] + 1] * 3)


def test_a_reader_whose_turn_does_not_end_holds_back_only_the_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers = [Script(turn_for=None), Script(), Script()]
    result, turns, _, _w = _turns(tmp_path, monkeypatch, 1, [Script(prepare_for=1), *readers])
    assert result["ok"]  # the others take their part after hot_proceed
    assert [len(t) for t in turns] == [1, 0, 0]


def test_no_idle_core_no_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readers = [Script() for _ in range(3)]
    result, turns, _, w = _turns(tmp_path, monkeypatch, 0, [Script(prepare_for=1), *readers])
    assert result["ok"] and turns == [[], [], []]
    # they take their part once told to go on: early, it would only slow the first one down
    assert all(("hot_proceed" in c.ops) for c in w.fake.workers(1)[1:])


def _prepares(child: Any) -> list[dict[str, Any]]:
    return [args for op, args in child.requests if op == "hot_prepare"]


def test_the_first_worker_analyses_for_the_others(tmp_path: Path) -> None:
    result, w = _hot(tmp_path, [Script(), Script(), Script()])
    assert result["ok"]
    first, *rest = (_prepares(c) for c in w.fake.workers(1))
    assert [a["analysis_role"] for a in first] == ["write"]
    assert all([a["analysis_role"] for a in r] == ["read"] for r in rest)
    assert {a["analysis"] for r in (first, *rest) for a in r} == {first[0]["analysis"]}
    # asked at once, the others told to go on once the first one had prepared
    for child in w.fake.workers(1)[1:]:
        assert ("hot_proceed", {"analysis": first[0]["analysis"], "go": True}) in child.requests
    assert not Path(first[0]["analysis"]).exists()  # removed when the prepares are done


def test_a_refusal_by_the_first_worker_is_the_answer_of_all(tmp_path: Path) -> None:
    error, w = _hot(tmp_path, [Script(hot="refuse"), Script(), Script()])
    assert isinstance(error, ChildError) and error.code == "hot_upgrade_refused"
    assert error.details["worker"] == 0
    workers = w.fake.workers(1)
    # every worker was asked at once; the others, waiting for its analysis, were told to drop it
    assert [len(_prepares(c)) for c in workers] == [1, 1, 1]
    path = _prepares(workers[0])[0]["analysis"]
    for child in workers[1:]:
        assert _prepares(child)[0]["analysis_wait"] is True
        assert ("hot_proceed", {"analysis": path, "go": False}) in child.requests
    assert not any(op == "hot_commit" for c in workers for op, _a in c.requests)
    assert w.sup.store.read_state()["current"] == w.ids["1"]


def test_a_refusal_by_another_worker_drops_it_in_every_worker(tmp_path: Path) -> None:
    error, w = _hot(tmp_path, [Script(), Script(), Script(hot="refuse")])
    assert isinstance(error, ChildError) and error.details["worker"] == 2
    assert all(("hot_abort", {}) in c.requests for c in w.fake.workers(1))
    assert not any(op == "hot_commit" for c in w.fake.workers(1) for op, _a in c.requests)


def test_status_shows_a_hot_upgrade_and_its_phase_while_it_runs(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.next = [Script(prepare_for=1), Script(), Script()]

    async def scenario(w: World) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        task = asyncio.ensure_future(w.sup.hot_upgrade(w.ids["2"]))
        await w.until(lambda: (w.sup.status()["upgrade"] or {}).get("phase") == "prepare")
        during = w.sup.status()
        result = await task
        return during, result, w.sup.status()

    (during, result, after), _, w = run(tmp_path, scenario, fake=fake, app=WORKERS)
    assert result["ok"]
    assert during["upgrading"] is True
    upgrade = during["upgrade"]
    assert upgrade["how"] == "hot" and upgrade["release"] == w.ids["2"]
    assert upgrade["elapsed_ms"] >= 0 and upgrade["new_generation"] is None
    assert after["upgrading"] is False and after["upgrade"] is None


def test_a_worker_too_slow_to_apply_is_named_before_the_others_give_up_holding(
    tmp_path: Path,
) -> None:
    # worker 2's __code_change__ runs 15 s; 0 and 1 applied it at once and hold their windows,
    # each for at most HOT_HOLD_TIMEOUT (10 s): the supervisor decides before they give up
    error, w = _hot(tmp_path, [Script(), Script(), Script(commit_for=15)])
    assert isinstance(error, ChildError) and error.code == "hot_upgrade_failed"
    assert error.details["worker"] == 2 and error.details["step"] == "hold"
    assert "did not apply it within 9s" in error.message
    workers = w.fake.workers(1)
    committed = workers[0].heard_at[workers[0].ops.index("hot_commit")]  # 0 applied it then
    decided = [c.heard_at[c.ops.index("hot_decide")] for c in workers]
    assert decided == pytest.approx([committed + 9] * 3, abs=0.05)  # not when 2 was done
    assert all(("hot_decide", {"keep": False}) in c.requests for c in workers)
    assert w.sup.store.read_state()["current"] == w.ids["1"]


def test_a_dead_workers_uptime_stops_at_its_exit(tmp_path: Path) -> None:
    async def scenario(w: World) -> list[dict[str, Any]]:
        assert (await w.sup.upgrade(w.ids["2"]))["ok"]
        await asyncio.sleep(5)
        w.fake.child(2, worker=1).exit(-signal.SIGKILL)
        await w.until(lambda: not serving(w, 1))
        seen = []
        for _ in range(2):  # while its restart waits out its backoff
            active = w.sup.status()["active"]
            seen.append(active["workers"][1])
            await asyncio.sleep(0.4)
        return seen

    (first, second), _, _w = run(tmp_path, scenario, app=WORKERS)
    assert first["pid"] == second["pid"] and first["state"] != GenState.LIVE
    assert first["uptime_s"] == second["uptime_s"] >= 5


def test_a_worker_dying_while_the_others_hold_rolls_every_worker_back_and_is_named(
    tmp_path: Path,
) -> None:
    fake = FakeChildren()
    fake.next = [Script(), Script(), Script(commit_for=5)]

    async def scenario(w: World) -> Any:
        task = asyncio.ensure_future(w.sup.hot_upgrade(w.ids["2"]))
        await w.until(lambda: (w.sup.status()["upgrade"] or {}).get("phase") == "commit")
        await asyncio.sleep(1)
        w.fake.workers(1)[0].exit(-signal.SIGKILL)  # applied, holding its window
        try:
            return await task
        except ChildError as e:
            return e

    error, _, w = run(tmp_path, scenario, fake=fake, app=WORKERS)
    assert isinstance(error, ChildError) and error.code == "hot_upgrade_failed"
    assert error.details["worker"] == 0
    assert "went away" in error.message and "every other worker rolled back" in error.message
    assert all(("hot_decide", {"keep": False}) in c.requests for c in w.fake.workers(1)[1:3])
    assert w.sup.store.read_state()["current"] == w.ids["1"]
