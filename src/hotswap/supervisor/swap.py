"""The blue-green swap as a pure state machine: events in, actions out. No sockets, no processes.

The driver (``supervisor.driver``) performs each action and feeds back what happened. The
transitions are data (:data:`TRANSITIONS`, h11's style): ``(phase, event type)`` gives the phases
that event may lead to and the handler that computes the actions. :func:`phase_table` renders it
(``docs/supervisor.md`` shows it, and a test keeps the two equal). In order::

    unpack  ──Unpacked──▶ spawn ──Spawned──▶ boot ──Ready──▶ health ──Healthy──▶ cutover
    cutover ──CutoverDone──▶ commit ──Committed──▶ drain ──Exited(old)──▶ done
                                    └─CommitFailed──▶ drain ──Exited(old)──▶ failed (commit_failed)
    drain   ──Deadline──▶ Kill(old) … Exited(old) ──▶ done

Two-phase ownership of the new generation (trio's ``Nursery.start``): until cutover, its failure
belongs to this swap, which kills it and fails with a code (``boot_failed``, ``not_ready``,
``health_failed``) while the old generation keeps serving; from cutover on it belongs to the
supervisor, which restarts it if it dies, and a ``Failed`` it causes is noted, not fatal to the
swap. The old generation is never touched before cutover.

At cutover the drain deadline is armed *before* the commit (state.json), so the old generation
is killed at ``shutdown_timeout`` whatever the disk does. A commit that fails after cutover is
its own outcome, ``commit_failed``: the new release serves, state.json could not record it, and
the drain still runs to its end.

Events that do not apply any more (a deadline of a phase already left, the exit of an
unrelated generation) are ignored; an event that cannot happen in a phase is a bug in the
driver and raises :class:`SwapProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hotswap.supervisor.swap_events import (
    Action,
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
    SwapEvent,
    SwapProtocolError,
    Unhealthy,
    Unpack,
    Unpacked,
)

__all__ = [
    "TRANSITIONS",
    "Action",
    "Commit",
    "CommitFailed",
    "Committed",
    "Cutover",
    "CutoverDone",
    "Deadline",
    "Exited",
    "Failed",
    "Finish",
    "Healthy",
    "Kill",
    "Phase",
    "Probe",
    "Ready",
    "SetDeadline",
    "Spawn",
    "Spawned",
    "Swap",
    "SwapEvent",
    "SwapProtocolError",
    "Unhealthy",
    "Unpack",
    "Unpacked",
    "phase_table",
]


@dataclass
class Swap:
    """One swap from generation ``old`` (None at first boot) to a new one.

    ``handle(event, now)`` returns the actions to perform, in order. ``timings`` holds the
    milliseconds spent in each finished phase; ``now`` is a monotonic clock reading in seconds,
    so tests drive time explicitly.
    """

    old: int | None
    started: float
    phase: Phase = Phase.UNPACK
    release_id: str | None = None
    new: int | None = None
    old_alive: bool = True
    cut_over: bool = False
    drain_killed: bool = False
    error: Finish | None = None
    commit_error: str | None = None
    notes: list[str] = field(default_factory=list)  # failures after cutover, not fatal
    timings: dict[str, float] = field(default_factory=dict)
    _phase_started: float = 0.0
    _config: Unpacked | None = None

    def __post_init__(self) -> None:
        self._phase_started = self.started
        if self.old is None:
            self.old_alive = False

    def begin(self) -> list[Action]:
        return [Unpack()]

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.FAILED)

    def handle(self, event: SwapEvent, now: float) -> list[Action]:
        if self.finished:
            return []
        transition = TRANSITIONS.get((self.phase, type(event)))
        if transition is None:
            if isinstance(event, Deadline | Exited | Ready | Healthy | Unhealthy):
                self._stale(event)
                return []
            raise SwapProtocolError(f"{type(event).__name__} cannot happen in phase {self.phase}")
        targets, handler = transition
        step: _Step = handler(self, event)
        following, actions = step
        if following is not self.phase:
            if following not in targets:  # the table is the truth: a handler cannot stray
                raise SwapProtocolError(
                    f"{type(event).__name__} in phase {self.phase} cannot lead to {following}"
                )
            self._enter(following, now)
            if following in (Phase.DONE, Phase.FAILED) and self.cut_over and self.old is not None:
                # the old generation was gone before the commit ended: a drain of no time
                # left, every swap that replaced one has its drain phase
                self.timings.setdefault(Phase.DRAIN.value, 0.0)
        return actions

    def _enter(self, phase: Phase, now: float) -> None:
        self.timings[self.phase.value] = round((now - self._phase_started) * 1000, 3)
        self.phase = phase
        self._phase_started = now

    def _stay(self) -> _Step:
        return self.phase, []

    def _stale(self, event: SwapEvent) -> _Step:
        """An event that no longer applies. The one worth noting: the old generation died
        (while the new one boots, or during the commit); there will be nothing to drain. (The
        new one dying after cutover belongs to the supervisor's restart policy.)"""
        if isinstance(event, Exited) and event.generation == self.old:
            self.old_alive = False
        return self._stay()

    def _fail(self, code: str, message: str, **details: Any) -> _Step:
        actions: list[Action] = []
        if self.new is not None and self.phase in (Phase.BOOT, Phase.HEALTH, Phase.CUTOVER):
            actions.append(Kill(self.new))
        self.error = Finish(False, code, message, self.new, details)
        actions.append(self.error)
        return Phase.FAILED, actions

    def _finish(self) -> _Step:
        """The end of a swap that cut over: done, or ``commit_failed`` if state.json could not
        record it (the new release serves either way)."""
        details: dict[str, Any] = {"drain_killed": self.drain_killed} if self.old else {}
        if self.commit_error is None:
            return Phase.DONE, [Finish(True, generation=self.new, details=details)]
        self.error = Finish(
            False,
            "commit_failed",
            f"release {self.release_id} serves as generation {self.new}, but state.json could "
            f"not record it ({self.commit_error}): a restart would boot the release before it",
            self.new,
            {**details, "phase": Phase.COMMIT.value, "serving": self.release_id},
        )
        return Phase.FAILED, [self.error]

    # -- handlers, one per row of TRANSITIONS ----------------------------------------------

    def _unpacked(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Unpacked)
        self.release_id = event.release_id
        self._config = event
        return Phase.SPAWN, [Spawn(event.release_id)]

    def _failed(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Failed)
        return self._fail(event.code, event.message, **event.details)

    def _spawned(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Spawned) and self._config is not None
        self.new = event.generation
        return Phase.BOOT, [SetDeadline(Phase.BOOT, self._config.boot_timeout)]

    def _ready(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Ready) and self._config is not None
        if event.generation != self.new:
            return self._stay()
        if self._config.health_check:
            return Phase.HEALTH, [
                SetDeadline(Phase.HEALTH, self._config.health_timeout),
                Probe(event.generation),
            ]
        return self._cutover()

    def _healthy(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Healthy)
        if event.generation != self.new:
            return self._stay()
        return self._cutover()

    def _cutover(self) -> _Step:
        assert self.new is not None
        return Phase.CUTOVER, [Cutover(self.new, self.old if self.old_alive else None)]

    def _unhealthy(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Unhealthy)
        if event.generation != self.new:
            return self._stay()
        return self._fail(
            "health_failed", f"generation {self.new} failed its health probe: {event.reason}"
        )

    def _exited_before_cutover(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Exited)
        if event.generation != self.new:
            return self._stale(event)
        when = "before it was ready" if self.phase == Phase.BOOT else "during its health probe"
        who = f"generation {self.new}"
        details: dict[str, Any] = {"returncode": event.returncode}
        if event.worker is not None:
            who += f" worker {event.worker}"
            details["worker"] = event.worker
        following, actions = self._fail(
            "boot_failed", f"{who} exited {when} (exit status {event.returncode})", **details
        )
        if event.worker is not None:  # its other workers are killed with it
            return following, actions
        return following, [a for a in actions if not isinstance(a, Kill)]  # already gone

    def _deadline(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Deadline) and self._config is not None
        if event.phase != self.phase:
            return self._stay()
        if self.phase == Phase.BOOT:
            return self._fail(
                "not_ready",
                f"generation {self.new} was not ready within {self._config.boot_timeout:g}s",
            )
        return self._fail(
            "health_failed",
            f"generation {self.new} did not pass its health probe within "
            f"{self._config.health_timeout:g}s",
        )

    def _cutover_done(self, event: SwapEvent) -> _Step:
        assert self.release_id is not None and self._config is not None
        self.cut_over = True
        actions: list[Action] = []
        if self.old_alive:  # armed before the commit: the drain is bounded whatever the disk does
            actions.append(SetDeadline(Phase.DRAIN, self._config.shutdown_timeout))
        actions.append(Commit(self.release_id))
        return Phase.COMMIT, actions

    def _committed(self, event: SwapEvent) -> _Step:
        if isinstance(event, CommitFailed):
            self.commit_error = event.message
        if self.old_alive:
            return Phase.DRAIN, []
        return self._finish()

    def _drain_deadline(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Deadline)
        if event.phase != Phase.DRAIN or self.drain_killed or not self.old_alive:
            return self._stay()
        assert self.old is not None
        self.drain_killed = True
        return self.phase, [Kill(self.old)]

    def _drain_exited(self, event: SwapEvent) -> _Step:
        assert isinstance(event, Exited)
        if event.generation != self.old:
            return self._stale(event)
        self.old_alive = False
        return self._finish()

    def _noted(self, event: SwapEvent) -> _Step:
        """A failure after cutover (the new generation broke its channel): the swap stands,
        the new generation is the supervisor's now; keep the reason for the record."""
        assert isinstance(event, Failed)
        self.notes.append(f"{event.code}: {event.message}")
        return self._stay()


_Step = tuple[Phase, list[Action]]
_Handler = Callable[[Swap, SwapEvent], _Step]
_FAILED = (Phase.FAILED,)

#: ``(phase, event type) -> (phases it may lead to, handler)``. A handler may also stay in its
#: phase when the event does not apply (another generation's, a deadline of another phase).
TRANSITIONS: dict[tuple[Phase, type], tuple[tuple[Phase, ...], _Handler]] = {
    (Phase.UNPACK, Unpacked): ((Phase.SPAWN,), Swap._unpacked),
    (Phase.UNPACK, Failed): (_FAILED, Swap._failed),
    (Phase.SPAWN, Spawned): ((Phase.BOOT,), Swap._spawned),
    (Phase.SPAWN, Failed): (_FAILED, Swap._failed),
    (Phase.BOOT, Ready): ((Phase.HEALTH, Phase.CUTOVER), Swap._ready),
    (Phase.BOOT, Exited): (_FAILED, Swap._exited_before_cutover),
    (Phase.BOOT, Deadline): (_FAILED, Swap._deadline),
    (Phase.BOOT, Failed): (_FAILED, Swap._failed),
    (Phase.HEALTH, Healthy): ((Phase.CUTOVER,), Swap._healthy),
    (Phase.HEALTH, Unhealthy): (_FAILED, Swap._unhealthy),
    (Phase.HEALTH, Exited): (_FAILED, Swap._exited_before_cutover),
    (Phase.HEALTH, Deadline): (_FAILED, Swap._deadline),
    (Phase.HEALTH, Failed): (_FAILED, Swap._failed),
    (Phase.CUTOVER, CutoverDone): ((Phase.COMMIT,), Swap._cutover_done),
    (Phase.CUTOVER, Failed): (_FAILED, Swap._failed),
    (Phase.COMMIT, Committed): ((Phase.DRAIN, Phase.DONE), Swap._committed),
    (Phase.COMMIT, CommitFailed): ((Phase.DRAIN, Phase.FAILED), Swap._committed),
    (Phase.COMMIT, Deadline): ((Phase.COMMIT,), Swap._drain_deadline),
    (Phase.COMMIT, Failed): ((Phase.COMMIT,), Swap._noted),
    (Phase.DRAIN, Exited): ((Phase.DONE, Phase.FAILED), Swap._drain_exited),
    (Phase.DRAIN, Deadline): ((Phase.DRAIN,), Swap._drain_deadline),
    (Phase.DRAIN, Failed): ((Phase.DRAIN,), Swap._noted),
}


def phase_table() -> str:
    """The transitions as a Markdown table (the one in ``docs/supervisor.md``)."""
    rows = ["| phase | event | next phase |", "|---|---|---|"]
    for (phase, event), (targets, _handler) in TRANSITIONS.items():
        rows.append(f"| {phase} | `{event.__name__}` | {' or '.join(targets)} |")
    return "\n".join(rows)
