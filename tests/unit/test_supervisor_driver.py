"""The supervisor's imperative shell, in virtual time, against scripted children (no process).

A real :class:`Supervisor` (its driver, restarts, shutdown, signals, the store in ``tmp_path``)
runs on :class:`VirtualClock`'s loop with :class:`FakeChildren` at its one OS seam: a 30 s
drain deadline or a 16 s backoff takes microseconds, and each child does exactly what the
test scripts. The real processes are in ``tests/e2e``.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hotswap.contract import STARTUP_FAILURE
from hotswap.errors import ChildError, HotswapError, ResourceError, UsageError
from hotswap.supervisor.core import Supervisor
from hotswap.supervisor.lifecycle import GenState
from hotswap.supervisor.policy import RestartPolicy
from hotswap.testing import FakeChildren, Script, VirtualClock, fake_release

APP = {"boot_timeout": 3, "health_timeout": 2, "shutdown_timeout": 7, "health_path": "/health"}
Scenario = Callable[["World"], Awaitable[Any]]


class World:
    def __init__(self, sup: Supervisor, fake: FakeChildren, ids: dict[str, str]) -> None:
        self.sup = sup
        self.fake = fake
        self.ids = ids
        self.logs: list[str] = []
        self.loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.logs)

    async def until(self, predicate: Callable[[], object], within: float = 600.0) -> None:
        """Poll (in virtual time, so it costs nothing) with a deadline."""
        deadline = self.now() + within
        while not predicate():
            assert self.now() < deadline, "timed out (virtual time)"
            await asyncio.sleep(0.01)


def run(
    tmp_path: Path,
    scenario: Scenario,
    *,
    fake: FakeChildren | None = None,
    policy: RestartPolicy | None = None,
    stability_window: float = 10.0,
    app: dict[str, Any] | None = None,
) -> tuple[Any, int, World]:
    """Boot v1 under a supervisor, run ``scenario``, stop; its result, the exit status."""
    state = tmp_path / "state"
    ids = {v: fake_release(state, v, **(app or APP)) for v in ("1", "2")}
    children = fake or FakeChildren()

    async def main() -> tuple[Any, int, World]:
        logs: list[str] = []
        sup = Supervisor(
            state,
            [],
            release=ids["1"],
            children=children,
            policy=policy,
            stability_window=stability_window,
            log=logs.append,
            control=False,
        )
        world = World(sup, children, ids)
        world.logs = logs
        task = asyncio.create_task(sup.run())
        await world.until(lambda: (sup.active and not sup.swapping) or task.done())
        result = await scenario(world)
        sup.stop()
        return result, await task, world

    return VirtualClock().run(main())


def active(w: World) -> int | None:
    return w.sup.active.number if w.sup.active is not None else None


def test_restart_backoff_doubles_then_gives_up(tmp_path: Path) -> None:
    fake = FakeChildren(Script(exit_after_ready=5.0, exit_code=1))
    policy = RestartPolicy(initial=1.0, maximum=30.0, max_restarts=5, window=60.0)

    async def scenario(w: World) -> None:
        await w.until(lambda: w.sup.stopping)  # it gives up by itself

    _, code, w = run(tmp_path, scenario, fake=fake, policy=policy)
    assert code == 1
    assert [line for line in w.logs if "restarting the current release in" in line] == [
        f"active generation died: restarting the current release in {d}s"
        for d in ("1", "2", "4", "8", "16")
    ]
    assert w.logged("the app keeps dying: too many restarts, giving up")
    assert len(w.fake.children) == 6  # the first and five restarts
    # each restart comes its backoff after the death (each child lives 0.1 s + 5 s)
    spawned_at = [c.started for c in w.fake.children]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(spawned_at)]
    assert gaps == [6.1, 7.1, 9.1, 13.1, 21.1]


def test_a_child_exiting_with_the_startup_failure_code_is_not_respawned(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.next = [Script(exit_after_ready=1.0, exit_code=1), Script(exit_before_ready=3)]

    async def scenario(w: World) -> None:
        await w.until(lambda: w.sup.stopping)

    _, code, w = run(tmp_path, scenario, fake=fake)
    assert STARTUP_FAILURE == 3
    assert code == 1
    assert len(w.fake.children) == 2  # the restart failed at start-up: no third try
    assert w.logged("failed to start (exit status 3, startup failure): not respawned")


def test_an_active_generation_exiting_with_the_startup_failure_code_is_not_respawned(
    tmp_path: Path,
) -> None:
    async def scenario(w: World) -> None:
        w.fake.child(1).exit(STARTUP_FAILURE)
        await w.until(lambda: w.sup.stopping)

    _, code, w = run(tmp_path, scenario)
    assert code == 1 and len(w.fake.children) == 1


def test_sighup_during_a_swap_is_ignored_and_after_it_restarts_blue_green(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.scripts["2"] = Script(ready_after=2.0)

    async def scenario(w: World) -> dict[str, Any]:
        swap = asyncio.create_task(w.sup.upgrade(w.ids["2"]))
        await w.until(lambda: len(w.fake.children) == 2)
        w.sup.record_signal(signal.SIGHUP)
        result = await swap
        w.sup.record_signal(signal.SIGHUP)
        await w.until(lambda: w.sup.active is not None and w.sup.active.number == 3)
        return result

    result, code, w = run(tmp_path, scenario, fake=fake)
    assert code == 0 and result["ok"]
    assert w.logged("SIGHUP ignored: an upgrade is in progress")
    assert w.logged("SIGHUP: blue-green restart of the current release")
    assert [c.proc.release.id for c in w.fake.children] == [w.ids["1"], w.ids["2"], w.ids["2"]]
    assert w.sup.recent[0]["how"] == "restart"


def test_shutdown_during_a_swap_fails_it_kills_the_new_one_and_drains_the_old(
    tmp_path: Path,
) -> None:
    fake = FakeChildren()
    fake.scripts["2"] = Script(ready_after=None)  # still booting when SIGTERM comes

    async def scenario(w: World) -> HotswapError:
        swap = asyncio.create_task(w.sup.upgrade(w.ids["2"]))
        await w.until(lambda: len(w.fake.children) == 2)
        w.sup.record_signal(signal.SIGTERM)
        with pytest.raises(UsageError) as caught:
            await swap
        return caught.value

    error, code, w = run(tmp_path, scenario, fake=fake)
    assert code == 0
    assert error.code == "not_running" and error.details["phase"] == "boot"
    old, new = w.fake.children
    assert signal.SIGKILL in new.proc.process.signals  # type: ignore[attr-defined]
    assert old.ops[-1] == "drain" and old.proc.returncode == 0  # drained, not killed
    assert w.sup.generations == {}


def test_an_old_generation_ignoring_its_drain_is_killed_at_shutdown_timeout(
    tmp_path: Path,
) -> None:
    fake = FakeChildren()
    fake.scripts["1"] = Script(drain_exit_after=None)

    async def scenario(w: World) -> dict[str, Any]:
        return await w.sup.upgrade(w.ids["2"])

    result, _, w = run(tmp_path, scenario, fake=fake)
    assert result["ok"] and result["drain_killed"] is True
    assert result["timings_ms"]["commit"] + result["timings_ms"]["drain"] == pytest.approx(
        7000, abs=1
    )
    assert w.fake.child(1).proc.returncode == -signal.SIGKILL


def test_shutdown_kills_a_generation_that_does_not_drain_in_time(tmp_path: Path) -> None:
    fake = FakeChildren(Script(drain_exit_after=None))
    stopped: list[float] = []

    async def scenario(w: World) -> None:
        stopped.append(w.now())

    _, code, w = run(tmp_path, scenario, fake=fake)
    assert code == 0
    assert w.fake.child(1).proc.returncode == -signal.SIGKILL
    assert w.logged("generation 1 did not exit in time: killing it")
    assert w.now() - stopped[0] == pytest.approx(7.0, abs=0.05)


def test_boot_timeout_fails_the_swap_and_keeps_the_old_generation(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.scripts["2"] = Script(ready_after=None)

    async def scenario(w: World) -> tuple[ChildError, float]:
        started = w.now()
        with pytest.raises(ChildError) as caught:
            await w.sup.upgrade(w.ids["2"])
        return caught.value, w.now() - started

    (error, took), _, w = run(tmp_path, scenario, fake=fake)
    assert error.code == "not_ready" and error.details["phase"] == "boot"
    assert took == pytest.approx(3.0, abs=0.05)
    assert w.fake.child(2).proc.returncode == -signal.SIGKILL
    assert w.sup.recent[0]["error"]["code"] == "not_ready"


def test_a_new_generation_dying_during_the_old_one_s_drain(tmp_path: Path) -> None:
    """Outside the stability window's reach (0 here) the supervisor restarts the new release;
    the swap itself succeeded."""
    fake = FakeChildren()
    fake.next = [Script(drain_exit_after=None), Script(exit_after_ready=1.0)]

    async def scenario(w: World) -> tuple[dict[str, Any], str]:
        result = await w.sup.upgrade(w.ids["2"])
        await w.until(lambda: w.sup.active is not None and w.sup.active.number == 3)
        assert w.sup.active is not None
        return result, w.sup.active.release.id

    (result, restarted), _, w = run(tmp_path, scenario, fake=fake, stability_window=0.0)
    assert result["ok"] and result["drain_killed"] is True and result["generation"] == 2
    assert restarted == w.ids["2"]


def test_a_protocol_error_from_the_new_generation_after_cutover_is_not_a_failed_swap(
    tmp_path: Path,
) -> None:
    fake = FakeChildren()
    fake.next = [Script(drain_exit_after=2.0), Script(bad_line_after_ready=0.5)]

    async def scenario(w: World) -> dict[str, Any]:
        return await w.sup.upgrade(w.ids["2"])

    result, _, w = run(tmp_path, scenario, fake=fake, stability_window=0.0)
    assert result["ok"]
    assert result["notes"] == ["protocol_error: not a control protocol line: b'garbage'"]
    assert w.fake.child(2).proc.returncode == -signal.SIGKILL  # the supervisor's to restart


def test_spawn_failing_fails_the_swap_in_spawn(tmp_path: Path) -> None:
    async def scenario(w: World) -> tuple[HotswapError, int | None]:
        w.fake.spawn_error = OSError(errno.EMFILE, "Too many open files")
        with pytest.raises(ResourceError) as caught:
            await w.sup.upgrade(w.ids["2"])
        return caught.value, active(w)

    (error, serving), _, _w = run(tmp_path, scenario)
    assert error.code == "io_error" and error.details["phase"] == "spawn"
    assert serving == 1


def test_a_failed_swap_returns_once_the_generation_it_killed_is_gone(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.scripts["2"] = Script(health=503)

    async def scenario(w: World) -> tuple[list[int], float]:
        started = w.now()
        with pytest.raises(ChildError):
            await w.sup.upgrade(w.ids["2"])
        return sorted(w.sup.generations), w.now() - started

    (left, took), _, w = run(tmp_path, scenario, fake=fake)
    assert left == [1]  # no failed generation 2 lingers in status after the error
    assert w.fake.child(2).proc.returncode == -signal.SIGKILL
    assert took < 1.0  # it waited for the exit, not for the 5 s bound


def test_go_never_acknowledged_fails_at_cutover_and_keeps_the_old(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.scripts["2"] = Script(go=False)

    async def scenario(w: World) -> tuple[HotswapError, int | None, list[str]]:
        with pytest.raises(ChildError) as caught:
            await w.sup.upgrade(w.ids["2"])
        return caught.value, active(w), w.fake.child(1).ops

    (error, serving, old_ops), _, w = run(tmp_path, scenario, fake=fake)
    assert error.code == "boot_failed" and error.details["phase"] == "cutover"
    assert "refused go" in error.message
    assert serving == 1
    assert "drain" not in old_ops  # never told to drain
    assert w.fake.child(2).proc.returncode == -signal.SIGKILL


def test_a_commit_failing_after_cutover_says_what_serves_and_finishes_the_drain(
    tmp_path: Path,
) -> None:
    fake = FakeChildren()
    fake.scripts["1"] = Script(drain_exit_after=None)

    async def scenario(w: World) -> tuple[ResourceError, int | None]:
        def full(*_args: Any, **_kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        w.sup.store.set_current = full  # type: ignore[method-assign]
        with pytest.raises(ResourceError) as caught:
            await w.sup.upgrade(w.ids["2"])
        return caught.value, active(w)

    (error, serving), _, w = run(tmp_path, scenario, fake=fake)
    assert error.code == "commit_failed"
    assert error.details["serving"] == w.ids["2"] and error.details["drain_killed"] is True
    assert serving == 2
    assert w.fake.child(1).proc.returncode == -signal.SIGKILL  # the drain was bounded
    assert "after_cutover" in w.fake.child(2).ops
    assert w.sup.recent[0]["error"]["code"] == "commit_failed"
    assert w.sup.store.read_state()["current"] == w.ids["1"]


def test_a_child_of_another_protocol_version_is_refused_at_hello(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.scripts["2"] = Script(protocol=99)

    async def scenario(w: World) -> tuple[HotswapError, int | None]:
        with pytest.raises(ResourceError) as caught:
            await w.sup.upgrade(w.ids["2"])
        return caught.value, active(w)

    (error, serving), _, _w = run(tmp_path, scenario, fake=fake)
    assert error.code == "version_mismatch" and "protocol 99" in error.message
    assert serving == 1


def test_a_release_dying_within_the_stability_window_is_rolled_back(tmp_path: Path) -> None:
    fake = FakeChildren()
    fake.scripts["2"] = Script(exit_after_ready=2.0)

    async def scenario(w: World) -> None:
        assert (await w.sup.upgrade(w.ids["2"]))["ok"]
        await w.until(lambda: w.sup.active is not None and w.sup.active.number == 3)

    _, code, w = run(tmp_path, scenario, fake=fake)
    assert code == 0
    assert [c.proc.release.id for c in w.fake.children] == [w.ids["1"], w.ids["2"], w.ids["1"]]
    assert w.sup.recent[0]["how"] == "auto-rollback" and w.sup.recent[0]["ok"]
    state = w.sup.store.read_state()
    assert state["current"] == w.ids["1"] and state["history"][0]["how"] == "auto-rollback"
    assert w.logged("died within the stability window")


def test_a_release_dying_after_the_stability_window_is_restarted_not_rolled_back(
    tmp_path: Path,
) -> None:
    fake = FakeChildren()
    fake.next = [Script(), Script(exit_after_ready=15.0)]

    async def scenario(w: World) -> None:
        await w.sup.upgrade(w.ids["2"])
        await w.until(lambda: w.sup.active is not None and w.sup.active.number == 3)

    _, _, w = run(tmp_path, scenario, fake=fake)
    assert w.fake.children[2].proc.release.id == w.ids["2"]
    assert w.sup.recent[0]["how"] == "restart"


def test_generation_states_follow_the_lifecycle(tmp_path: Path) -> None:
    async def scenario(w: World) -> list[GenState]:
        old = w.fake.child(1).proc
        before = [old.state]
        await w.sup.upgrade(w.ids["2"])
        return [*before, old.state, w.fake.child(2).proc.state]

    states, _, _w = run(tmp_path, scenario)
    assert states == [GenState.LIVE, GenState.RETIRED, GenState.LIVE]


def test_an_upgrade_to_another_app_is_refused_unless_allowed(tmp_path: Path) -> None:
    async def scenario(w: World) -> tuple[HotswapError, int, dict[str, Any]]:
        other = fake_release(w.sup.state_dir, "9", name="other", **APP)
        with pytest.raises(UsageError) as caught:
            await w.sup.upgrade(other)
        spawned = len(w.fake.children)
        allowed = await w.sup.upgrade(other, allow_other_app=True)
        return caught.value, spawned, allowed

    (error, spawned, allowed), _, w = run(tmp_path, scenario)
    assert error.code == "different_app" and error.details["phase"] == "unpack"
    assert error.details["serving"] == "fake" and error.details["release_app"] == "other"
    assert spawned == 1  # refused before anything was started
    assert allowed["ok"] and w.sup.store.read_state()["current"] == allowed["release"]
