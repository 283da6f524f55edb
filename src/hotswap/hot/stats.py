"""What a hot upgrade did and how long the process was held (JSON-able, like BeamDeploy's stats)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Counts:
    """What one commit did (counted as it goes; copied into :class:`HotUpgradeStats`)."""

    functions_patched: int = 0
    classes_patched: int = 0
    statements_run: int = 0
    names_removed: int = 0
    importers_rebound: int = 0
    enum_members_added: int = 0
    fields_filled: int = 0
    modules_migrated: int = 0
    data_hooks_run: int = 0
    instances_migrated: int = 0
    caches_cleared: int = 0
    modules_added: tuple[str, ...] = ()
    modules_removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class HotUpgradeStats:
    """The result of a successful :func:`hotswap.hot.hot_upgrade`.

    ``window_ms`` is the suspension window: from the moment the process was quiescent (gate
    drained, or the event loop running our callback) to the end of the commit and migration.
    ``quiesce_ms`` is the wait before it; ``prepare_ms`` is the work done while still serving.
    ``hold_ms`` is the part of the window a worker of several spent applied, waiting for the
    others and the supervisor's decision (two-phase; 0 otherwise).
    """

    old_release: str
    new_release: str
    modules_changed: tuple[str, ...]
    modules_added: tuple[str, ...]
    modules_removed: tuple[str, ...]
    functions_patched: int
    classes_patched: int
    statements_run: int
    names_removed: int
    importers_rebound: int
    enum_members_added: int
    fields_filled: int
    modules_migrated: int
    instances_migrated: int
    prepare_ms: float
    quiesce_ms: float
    window_ms: float
    total_ms: float
    heap_objects_scanned: int  # found by the one walk of the heap at prepare (see heap.py)
    young_objects_scanned: int  # listed in the window: what was allocated since
    warnings: tuple[str, ...] = ()
    data_hooks_run: int = 0  # packages whose __data_change__ reloaded changed data files
    replans: int = 0  # times the plan was made again (modules imported while preparing)
    # unchanged modules whose statements read a name a changed one rebinds, re-derived
    modules_rederived: tuple[str, ...] = ()
    caches_cleared: int = 0  # functools.lru_cache/cache wrappers emptied (results of old code)
    hold_ms: float = 0.0  # of the window, waiting for the other workers (two-phase)
    analysis_shared: bool = False  # the analysis another worker made was used (two-phase)
    heap_walked_early: bool = False  # ... and the heap walked while that worker analysed it
    # whole-heap walks of the prepare: one, or two where the heap was walked before the
    # analysis and a value the upgrade rebinds is held outside the module namespaces that
    # that walk did not look for (see prepare.early_values)
    heap_walks: int = 0
    # (step, seconds of time.perf_counter) in order: start, analysed, prepared, commit, in,
    # hold, held, out, end (and called, turn, taken, proceed for a worker reading another's
    # analysis); on Linux one clock for every process, so the workers' timelines line up
    marks: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out
