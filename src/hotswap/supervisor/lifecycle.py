"""A generation's lifecycle as a small pure machine: its states and the moves between them.

    starting ──ready──▶ ready ──go──▶ live ──drain──▶ draining ──exit──▶ retired
        └──────────────────┴──────exit──┴──────────────────────────▶ failed

A service process goes from starting straight to live (it has no cutover). Retired and failed
are final. A move the table does not allow is a bug of the caller (:class:`LifecycleError`).
"""

from __future__ import annotations

from enum import StrEnum


class GenState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    LIVE = "live"
    DRAINING = "draining"
    RETIRED = "retired"
    FAILED = "failed"


class LifecycleError(Exception):
    """A move the lifecycle does not allow."""


NEXT: dict[GenState, frozenset[GenState]] = {
    GenState.STARTING: frozenset({GenState.READY, GenState.LIVE, GenState.FAILED}),
    GenState.READY: frozenset({GenState.LIVE, GenState.FAILED}),
    GenState.LIVE: frozenset({GenState.DRAINING, GenState.FAILED}),
    GenState.DRAINING: frozenset({GenState.RETIRED}),
    GenState.RETIRED: frozenset(),
    GenState.FAILED: frozenset(),
}


def advance(current: GenState, to: GenState) -> GenState:
    """The state after moving from ``current`` to ``to`` (staying put is always allowed)."""
    if to is not current and to not in NEXT[current]:
        raise LifecycleError(f"a generation cannot go from {current} to {to}")
    return to


def on_exit(current: GenState) -> GenState:
    """Where an exit leads: a draining generation retires, anything else has failed."""
    return GenState.RETIRED if current is GenState.DRAINING else GenState.FAILED
