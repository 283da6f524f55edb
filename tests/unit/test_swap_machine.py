"""The swap lifecycle as a pure state machine: every transition and error path, no processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.supervisor import swap
from hotswap.supervisor.swap import (
    Commit,
    CommitFailed,
    Committed,
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
        SetDeadline(Phase.DRAIN, 30.0),
        Commit("2.0.0-abcdefabcdef"),
    ]
    assert s.cut_over and not s.finished
    assert s.handle(Committed(), 1.27) == []
    assert s.phase == Phase.DRAIN
    actions = s.handle(Exited(1, 0), 1.5)
    assert actions == [Finish(True, generation=2, details={"drain_killed": False})]
    assert s.phase == Phase.DONE
    assert list(s.timings) == ["unpack", "spawn", "boot", "health", "cutover", "commit", "drain"]
    assert s.timings["boot"] == pytest.approx(1000.0)
    assert s.timings["drain"] == pytest.approx(230.0)


def test_first_boot_has_no_drain() -> None:
    s = booting(old=None)
    s.handle(Ready(2), 1.0)
    assert s.handle(Healthy(2), 1.0) == [Cutover(2, None)]
    assert s.handle(CutoverDone(), 1.0) == [Commit("2.0.0-abcdefabcdef")]
    assert s.handle(Committed(), 1.0) == [Finish(True, generation=2)]


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
    s.handle(Committed(), 1)
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
    s.handle(Committed(), 1)
    assert s.handle(Exited(2, 1), 2) == []
    assert s.phase == Phase.DRAIN


def test_impossible_event_is_a_driver_bug() -> None:
    s = Swap(old=1, started=0.0)
    with pytest.raises(SwapProtocolError):
        s.handle(CutoverDone(), 0)
    with pytest.raises(SwapProtocolError):
        s.handle(Spawned(2), 0)


def cut_over(old: int | None = 1) -> Swap:
    s = booting(old)
    s.handle(Ready(2), 1)
    s.handle(Healthy(2), 1)
    return s


def test_drain_deadline_is_armed_before_the_commit() -> None:
    s = cut_over()
    actions = s.handle(CutoverDone(), 1)
    assert actions == [SetDeadline(Phase.DRAIN, 30.0), Commit("2.0.0-abcdefabcdef")]
    # a commit that hangs past shutdown_timeout: the old generation is killed all the same
    assert s.handle(Deadline(Phase.DRAIN), 31) == [Kill(1)]
    assert s.phase == Phase.COMMIT


def test_commit_failure_after_cutover_still_finishes_the_drain_and_says_what_serves() -> None:
    s = cut_over()
    s.handle(CutoverDone(), 1)
    assert s.handle(CommitFailed("OSError: [Errno 28] No space left on device"), 1.1) == []
    assert s.phase == Phase.DRAIN and not s.finished  # the drain goes on
    assert s.handle(Deadline(Phase.DRAIN), 31) == [Kill(1)]
    [finish] = s.handle(Exited(1, -9), 31.2)
    assert isinstance(finish, Finish) and not finish.ok
    assert finish.code == "commit_failed" and finish.generation == 2
    assert finish.details == {
        "drain_killed": True,
        "phase": "commit",
        "serving": "2.0.0-abcdefabcdef",
    }
    assert "No space left" in (finish.message or "")
    assert s.phase == Phase.FAILED and s.cut_over


def test_commit_failure_with_nothing_to_drain_fails_at_once() -> None:
    s = cut_over(old=None)
    s.handle(CutoverDone(), 1)
    [finish] = s.handle(CommitFailed("disk full"), 1.1)
    assert isinstance(finish, Finish) and finish.code == "commit_failed"
    assert finish.details == {"phase": "commit", "serving": "2.0.0-abcdefabcdef"}


def test_old_generation_exiting_during_the_commit_leaves_nothing_to_drain() -> None:
    s = cut_over()
    s.handle(CutoverDone(), 1)
    assert s.handle(Exited(1, 0), 1.05) == []
    assert s.handle(Committed(), 1.1) == [
        Finish(True, generation=2, details={"drain_killed": False})
    ]
    # its drain ended within the commit: the record still has a drain phase, of no time
    assert list(s.timings)[-2:] == ["commit", "drain"] and s.timings["drain"] == 0.0


def test_spawn_failure_fails_without_a_kill() -> None:
    s = Swap(old=1, started=0.0)
    s.handle(UNPACKED, 0.1)
    actions = s.handle(Failed("io_error", "cannot start generation 2: EMFILE"), 0.2)
    assert actions == [Finish(False, "io_error", "cannot start generation 2: EMFILE", None, {})]
    assert s.phase == Phase.FAILED


def test_go_refused_at_cutover_kills_the_new_one_and_keeps_the_old() -> None:
    s = cut_over()
    actions = s.handle(Failed("boot_failed", "generation 2 refused go"), 1.1)
    assert actions[0] == Kill(2)
    assert isinstance(actions[-1], Finish) and actions[-1].code == "boot_failed"
    assert not s.cut_over and s.phase == Phase.FAILED


@pytest.mark.parametrize("during", [Phase.COMMIT, Phase.DRAIN])
def test_a_failure_of_the_new_generation_after_cutover_is_noted_not_fatal(
    during: Phase,
) -> None:
    s = cut_over()
    s.handle(CutoverDone(), 1)
    if during == Phase.DRAIN:
        s.handle(Committed(), 1)
    assert s.handle(Failed("protocol_error", "generation 2 sent garbage"), 1.2) == []
    assert s.phase == during and s.notes == ["protocol_error: generation 2 sent garbage"]
    if during == Phase.COMMIT:
        s.handle(Committed(), 1.3)
    assert s.handle(Exited(1, 0), 1.4)[-1] == Finish(
        True, generation=2, details={"drain_killed": False}
    )


def test_the_phase_table_in_the_docs_is_the_machine_s() -> None:
    docs = Path(__file__).parents[2] / "docs" / "supervisor.md"
    assert swap.phase_table() in docs.read_text()


def test_every_handler_stays_within_its_row() -> None:
    """Each transition's handler only moves to the phases its row names (or stays)."""
    for (phase, event_type), (targets, _handler) in swap.TRANSITIONS.items():
        assert targets, (phase, event_type)
        assert all(isinstance(t, Phase) for t in targets)
