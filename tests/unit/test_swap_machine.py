"""The swap lifecycle as a pure state machine: every transition and error path, no processes."""

from __future__ import annotations

import pytest

from hotswap.supervisor import swap
from hotswap.supervisor.swap import (
    Commit,
    Cutover,
    CutoverDone,
    Deadline,
    Exited,
    Failed,
    Finish,
    Healthy,
    Kill,
    Phase,
    Probe,
    Ready,
    SetDeadline,
    Spawn,
    Spawned,
    Swap,
    SwapProtocolError,
    Unhealthy,
    Unpack,
    Unpacked,
)

UNPACKED = Unpacked("2.0.0-abcdefabcdef", 60.0, 5.0, 30.0, health_check=True)


def booting(old: int | None = 1) -> Swap:
    s = Swap(old=old, started=0.0)
    assert s.begin() == [Unpack()]
    assert s.handle(UNPACKED, 0.1) == [Spawn("2.0.0-abcdefabcdef")]
    assert s.handle(Spawned(2), 0.2) == [SetDeadline(Phase.BOOT, 60.0)]
    return s


def test_happy_path_in_order_with_timings() -> None:
    s = booting()
    assert s.handle(Ready(2), 1.2) == [SetDeadline(Phase.HEALTH, 5.0), Probe(2)]
    assert s.handle(Healthy(2), 1.25) == [Cutover(2, 1)]
    assert s.handle(CutoverDone(), 1.26) == [
        Commit("2.0.0-abcdefabcdef"),
        SetDeadline(Phase.DRAIN, 30.0),
    ]
    assert s.cut_over and not s.finished
    actions = s.handle(Exited(1, 0), 1.5)
    assert actions == [Finish(True, generation=2, details={"drain_killed": False})]
    assert s.phase == Phase.DONE
    assert list(s.timings) == ["unpack", "spawn", "boot", "health", "cutover", "drain"]
    assert s.timings["boot"] == pytest.approx(1000.0)
    assert s.timings["drain"] == pytest.approx(240.0)


def test_first_boot_has_no_drain() -> None:
    s = booting(old=None)
    s.handle(Ready(2), 1.0)
    assert s.handle(Healthy(2), 1.0) == [Cutover(2, None)]
    actions = s.handle(CutoverDone(), 1.0)
    assert actions == [Commit("2.0.0-abcdefabcdef"), Finish(True, generation=2)]


def test_without_health_check_ready_cuts_over() -> None:
    s = Swap(old=1, started=0.0)
    s.handle(Unpacked("x-abcdefabcdef", 60, 5, 30, health_check=False), 0)
    s.handle(Spawned(2), 0)
    assert s.handle(Ready(2), 0) == [Cutover(2, 1)]


@pytest.mark.parametrize(
    "phase_events,event,code",
    [
        ([], Exited(2, 3), "boot_failed"),
        ([], Deadline(Phase.BOOT), "not_ready"),
        ([Ready(2)], Unhealthy(2, "503"), "health_failed"),
        ([Ready(2)], Deadline(Phase.HEALTH), "health_failed"),
        ([Ready(2)], Exited(2, 18), "boot_failed"),
        ([], Failed("version_mismatch", "v2 child"), "version_mismatch"),
    ],
)
def test_failure_before_cutover_kills_the_new_one_and_never_touches_the_old(
    phase_events: list[swap.SwapEvent], event: swap.SwapEvent, code: str
) -> None:
    s = booting()
    for e in phase_events:
        s.handle(e, 1.0)
    actions = s.handle(event, 2.0)
    finish = actions[-1]
    assert isinstance(finish, Finish) and not finish.ok and finish.code == code
    kills = [a for a in actions if isinstance(a, Kill)]
    if isinstance(event, Exited):
        assert kills == []  # already gone
    else:
        assert kills == [Kill(2)]
    assert not any(isinstance(a, Cutover | Commit) for a in actions)
    assert s.phase == Phase.FAILED and s.error == finish
    assert s.handle(Ready(2), 3.0) == []  # a finished swap ignores everything


def test_unpack_failure_fails_without_spawning() -> None:
    s = Swap(old=1, started=0.0)
    actions = s.handle(Failed("checksum_mismatch", "bad", {"expected": "x"}), 0.5)
    assert actions == [Finish(False, "checksum_mismatch", "bad", None, {"expected": "x"})]


def test_drain_deadline_kills_the_old_generation_once() -> None:
    s = booting()
    s.handle(Ready(2), 1)
    s.handle(Healthy(2), 1)
    s.handle(CutoverDone(), 1)
    assert s.handle(Deadline(Phase.DRAIN), 31) == [Kill(1)]
    assert s.handle(Deadline(Phase.DRAIN), 32) == []
    assert s.handle(Exited(1, -9), 31.1)[-1] == Finish(
        True, generation=2, details={"drain_killed": True}
    )


def test_stale_events_are_ignored() -> None:
    s = booting()
    assert s.handle(Deadline(Phase.HEALTH), 1) == []  # a deadline of another phase
    assert s.handle(Ready(7), 1) == []  # another generation
    assert s.handle(Exited(1, 0), 1) == []  # the old one died meanwhile
    s.handle(Ready(2), 1)
    # with the old one gone there is nothing to drain
    assert s.handle(Healthy(2), 1) == [Cutover(2, None)]


def test_new_generation_dying_after_cutover_belongs_to_the_supervisor() -> None:
    s = booting()
    s.handle(Ready(2), 1)
    s.handle(Healthy(2), 1)
    s.handle(CutoverDone(), 1)
    assert s.handle(Exited(2, 1), 2) == []
    assert s.phase == Phase.DRAIN


def test_impossible_event_is_a_driver_bug() -> None:
    s = Swap(old=1, started=0.0)
    with pytest.raises(SwapProtocolError):
        s.handle(CutoverDone(), 0)
    with pytest.raises(SwapProtocolError):
        s.handle(Spawned(2), 0)
