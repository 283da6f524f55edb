"""The blue-green swap as a pure state machine: events in, actions out. No sockets, no processes.

The driver (``supervisor.core``) performs each action and feeds back what happened. Phases, in
order, with what ends each one::

    unpack  ──Unpacked──▶ spawn ──Spawned──▶ boot ──Ready──▶ health ──Healthy──▶ cutover
    cutover ──CutoverDone──▶ drain ──Exited(old)──▶ done
                                    └─Deadline──▶ Kill(old) … Exited(old) ──▶ done

Two-phase ownership of the new generation (trio's ``Nursery.start``): until cutover, its failure
belongs to this swap, which kills it and fails with a code (``boot_failed``, ``not_ready``,
``health_failed``) while the old generation keeps serving; from cutover on it belongs to the
supervisor, which restarts it if it dies. The old generation is never touched before cutover.

Events that do not apply any more (a deadline of a phase already left, the exit of an
unrelated generation) are ignored; an event that cannot happen in a phase is a bug in the
driver and raises :class:`SwapProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    UNPACK = "unpack"
    SPAWN = "spawn"
    BOOT = "boot"
    HEALTH = "health"
    CUTOVER = "cutover"
    DRAIN = "drain"
    DONE = "done"
    FAILED = "failed"


PRE_CUTOVER = frozenset({Phase.UNPACK, Phase.SPAWN, Phase.BOOT, Phase.HEALTH})


class SwapProtocolError(Exception):
    """The driver fed an event that cannot happen in this phase."""


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpacked:
    release_id: str
    boot_timeout: float
    health_timeout: float
    shutdown_timeout: float
    health_check: bool


@dataclass(frozen=True)
class Spawned:
    generation: int


@dataclass(frozen=True)
class Ready:
    generation: int


@dataclass(frozen=True)
class Healthy:
    generation: int


@dataclass(frozen=True)
class Unhealthy:
    generation: int
    reason: str


@dataclass(frozen=True)
class Exited:
    generation: int
    returncode: int | None


@dataclass(frozen=True)
class Deadline:
    phase: Phase


@dataclass(frozen=True)
class CutoverDone:
    pass


@dataclass(frozen=True)
class Failed:
    """A driver-side step failed before cutover (unpack refused, spawn raised)."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


SwapEvent = (
    Unpacked | Spawned | Ready | Healthy | Unhealthy | Exited | Deadline | CutoverDone | Failed
)

# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpack:
    pass


@dataclass(frozen=True)
class Spawn:
    release_id: str


@dataclass(frozen=True)
class SetDeadline:
    phase: Phase
    seconds: float


@dataclass(frozen=True)
class Probe:
    generation: int


@dataclass(frozen=True)
class Cutover:
    new: int
    old: int | None


@dataclass(frozen=True)
class Kill:
    generation: int


@dataclass(frozen=True)
class Commit:
    release_id: str


@dataclass(frozen=True)
class Finish:
    ok: bool
    code: str | None = None
    message: str | None = None
    generation: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


Action = Unpack | Spawn | SetDeadline | Probe | Cutover | Kill | Commit | Finish


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
    drain_killed: bool = False
    error: Finish | None = None
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

    @property
    def cut_over(self) -> bool:
        return self.phase in (Phase.DRAIN, Phase.DONE)

    def _enter(self, phase: Phase, now: float) -> None:
        self.timings[self.phase.value] = round((now - self._phase_started) * 1000, 3)
        self.phase = phase
        self._phase_started = now

    def _fail(self, code: str, message: str, now: float, **details: Any) -> list[Action]:
        actions: list[Action] = []
        if self.new is not None and self.phase in (Phase.BOOT, Phase.HEALTH, Phase.CUTOVER):
            actions.append(Kill(self.new))
        self._enter(Phase.FAILED, now)
        self.error = Finish(False, code, message, self.new, details)
        actions.append(self.error)
        return actions

    def handle(self, event: SwapEvent, now: float) -> list[Action]:
        if self.finished:
            return []
        handler = _TABLE.get((self.phase, type(event)))
        if handler is not None:
            actions: list[Action] = handler(self, event, now)
            return actions
        if isinstance(event, Deadline | Exited | Ready | Healthy | Unhealthy):
            return self._stale(event, now)
        raise SwapProtocolError(f"{type(event).__name__} cannot happen in phase {self.phase}")

    def _stale(self, event: SwapEvent, now: float) -> list[Action]:
        """An event that no longer applies. The one worth noting: the old generation died
        while the new one boots; carry on, there will be nothing to drain. (The new one dying
        after cutover belongs to the supervisor's restart policy, not to this swap.)"""
        if isinstance(event, Exited) and event.generation == self.old:
            self.old_alive = False
        return []

    # -- transitions ---------------------------------------------------------------------

    def _unpacked(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Unpacked)
        self.release_id = event.release_id
        self._config = event
        self._enter(Phase.SPAWN, now)
        return [Spawn(event.release_id)]

    def _failed(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Failed)
        return self._fail(event.code, event.message, now, **event.details)

    def _spawned(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Spawned) and self._config is not None
        self.new = event.generation
        self._enter(Phase.BOOT, now)
        return [SetDeadline(Phase.BOOT, self._config.boot_timeout)]

    def _ready(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Ready) and self._config is not None
        if event.generation != self.new:
            return []
        if self._config.health_check:
            self._enter(Phase.HEALTH, now)
            return [SetDeadline(Phase.HEALTH, self._config.health_timeout), Probe(event.generation)]
        return self._cutover(now)

    def _healthy(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Healthy)
        if event.generation != self.new:
            return []
        return self._cutover(now)

    def _cutover(self, now: float) -> list[Action]:
        assert self.new is not None
        self._enter(Phase.CUTOVER, now)
        return [Cutover(self.new, self.old if self.old_alive else None)]

    def _unhealthy(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Unhealthy)
        if event.generation != self.new:
            return []
        return self._fail(
            "health_failed", f"generation {self.new} failed its health probe: {event.reason}", now
        )

    def _exited_before_cutover(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Exited)
        if event.generation != self.new:
            return self._stale(event, now)
        when = "before it was ready" if self.phase == Phase.BOOT else "during its health probe"
        actions = self._fail(
            "boot_failed",
            f"generation {self.new} exited {when} (exit status {event.returncode})",
            now,
            returncode=event.returncode,
        )
        return [a for a in actions if not isinstance(a, Kill)]  # already gone

    def _deadline(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Deadline) and self._config is not None
        if event.phase != self.phase:
            return []
        if self.phase == Phase.BOOT:
            return self._fail(
                "not_ready",
                f"generation {self.new} was not ready within {self._config.boot_timeout:g}s",
                now,
            )
        if self.phase == Phase.HEALTH:
            return self._fail(
                "health_failed",
                f"generation {self.new} did not pass its health probe within "
                f"{self._config.health_timeout:g}s",
                now,
            )
        assert self.phase == Phase.DRAIN and self.old is not None
        if self.drain_killed:
            return []
        self.drain_killed = True
        return [Kill(self.old)]

    def _cutover_done(self, event: SwapEvent, now: float) -> list[Action]:
        assert self.release_id is not None and self._config is not None
        actions: list[Action] = [Commit(self.release_id)]
        if self.old_alive and self.old is not None:
            self._enter(Phase.DRAIN, now)
            actions.append(SetDeadline(Phase.DRAIN, self._config.shutdown_timeout))
            return actions
        self._enter(Phase.DONE, now)
        actions.append(Finish(True, generation=self.new))
        return actions

    def _drain_exited(self, event: SwapEvent, now: float) -> list[Action]:
        assert isinstance(event, Exited)
        if event.generation != self.old:
            return self._stale(event, now)
        self.old_alive = False
        self._enter(Phase.DONE, now)
        details = {"drain_killed": self.drain_killed}
        return [Finish(True, generation=self.new, details=details)]


_Handler = Any
_TABLE: dict[tuple[Phase, type], _Handler] = {
    (Phase.UNPACK, Unpacked): Swap._unpacked,
    (Phase.UNPACK, Failed): Swap._failed,
    (Phase.SPAWN, Spawned): Swap._spawned,
    (Phase.SPAWN, Failed): Swap._failed,
    (Phase.BOOT, Ready): Swap._ready,
    (Phase.BOOT, Exited): Swap._exited_before_cutover,
    (Phase.BOOT, Deadline): Swap._deadline,
    (Phase.BOOT, Failed): Swap._failed,
    (Phase.HEALTH, Healthy): Swap._healthy,
    (Phase.HEALTH, Unhealthy): Swap._unhealthy,
    (Phase.HEALTH, Exited): Swap._exited_before_cutover,
    (Phase.HEALTH, Deadline): Swap._deadline,
    (Phase.HEALTH, Failed): Swap._failed,
    (Phase.CUTOVER, CutoverDone): Swap._cutover_done,
    (Phase.CUTOVER, Failed): Swap._failed,
    (Phase.DRAIN, Exited): Swap._drain_exited,
    (Phase.DRAIN, Deadline): Swap._deadline,
}
