"""The swap machine's vocabulary: its phases, the events it is fed and the actions it returns
(h11 keeps its events apart from its state machine the same way). Plain frozen data; the
machine is :mod:`.swap`, which re-exports every name here."""

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
    COMMIT = "commit"
    DRAIN = "drain"
    DONE = "done"
    FAILED = "failed"


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
    """A generation's process exited: before cutover, its first worker to exit (``worker``
    names it when the generation has several); after, its last."""

    generation: int
    returncode: int | None
    worker: int | None = None


@dataclass(frozen=True)
class Deadline:
    phase: Phase


@dataclass(frozen=True)
class CutoverDone:
    pass


@dataclass(frozen=True)
class Committed:
    """state.json records the new release (or, for a restart, nothing needed recording)."""


@dataclass(frozen=True)
class CommitFailed:
    """state.json could not record the new release, which already serves."""

    message: str


@dataclass(frozen=True)
class Failed:
    """A driver-side step failed (unpack refused, spawn raised, the new generation broke its
    channel). Before cutover it fails the swap; after, it is noted."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


SwapEvent = (
    Unpacked
    | Spawned
    | Ready
    | Healthy
    | Unhealthy
    | Exited
    | Deadline
    | CutoverDone
    | Committed
    | CommitFailed
    | Failed
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
