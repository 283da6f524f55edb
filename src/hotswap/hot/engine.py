"""The hot upgrade, end to end: check → prepare → quiesce → commit + migrate (journaled) → resume.

:class:`HotUpgrade` is the transaction; :func:`hot_upgrade` is the one-call form for a process
running a release. The steps that can fail without touching anything (check, prepare, waiting
for quiescence) raise before the window; inside the window any exception replays the journal,
so the process is exactly as before and keeps serving the old code (promise 9).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotswap.errors import ChildError, HotswapError, UsageError
from hotswap.hot import shared
from hotswap.hot.check import Analysis, analyze, check_running_interpreter
from hotswap.hot.commit import Checkpoint, Commit, Replan, plan_paths
from hotswap.hot.heap import HeapIndex
from hotswap.hot.importers import ModuleValues
from hotswap.hot.journal import Journal
from hotswap.hot.plan import Prepared
from hotswap.hot.prepare import (
    code_registries,
    early_values,
    loaded_modules,
    prepare,
    refuse,
)
from hotswap.hot.quiesce import Quiescence, QuiesceTimeout, UpgradeGate, default_quiescence
from hotswap.hot.stats import Counts, HotUpgradeStats
from hotswap.hot.tree import (
    LIB,
    MANIFEST,
    RECORD,
    PathMap,
    ReleaseTree,
    module_name,
    read_manifest,
)
from hotswap.hot.verdict import Reason, Verdict

_one_at_a_time = threading.Lock()
# The tree of the release the last upgrade went to: the next one starts from it, so each
# upgrade reads one RECORD, not two. Used only while RECORD and RELEASE.json are the files it
# was read from (same inode, size and mtime).
_last_tree: list[tuple[tuple[int, ...], ReleaseTree]] = []


def _stamp(root: Path) -> tuple[int, ...]:
    out: list[int] = []
    for name in (RECORD, MANIFEST):
        try:
            st = os.stat(root / name)
        except OSError:
            out += (-1, -1, -1)
        else:
            out += (st.st_ino, st.st_size, st.st_mtime_ns)
    return tuple(out)


def _tree(where: str | os.PathLike[str] | ReleaseTree) -> ReleaseTree:
    if isinstance(where, ReleaseTree):
        return where
    root = Path(where).resolve()
    for stamp, tree in _last_tree:
        if tree.root == root and stamp == _stamp(root) and stamp[0] != -1:
            return tree
    return ReleaseTree.load(root)


@dataclass
class Before:
    """What a prepare takes before its analysis: first what the engine itself imports (a
    release may bundle the same distributions, e.g. packaging), then the snapshot of the app's
    modules and of their namespaces' values; and, for a worker waiting for another one's
    analysis, the heap walked for the functions of all those modules (``heap``)."""

    libs: tuple[Path, Path]
    interpreter_reasons: list[Reason]
    paths: PathMap
    loaded: dict[str, types.ModuleType]
    names: set[str | None]
    values: ModuleValues
    registries: dict[int, list[object]]  # containers of code objects (code_registries)
    heap: HeapIndex | None = None

    @classmethod
    def take(
        cls, old_lib: Path, new_lib: Path, manifest: dict[str, Any], *, heap: bool = False
    ) -> Before:
        reasons = check_running_interpreter(manifest)
        paths = PathMap(old_lib, new_lib, sys.path)
        loaded = loaded_modules(paths)
        names = {module_name(f"{LIB}/{rel}") for rel in loaded}
        values = ModuleValues(loaded)
        registries = code_registries(loaded, values)
        index = None
        if heap:  # and what holds the values the upgrade may rebind, if few and held at all
            entry = str(manifest.get("app", {}).get("entry", ""))
            held, extra = early_values(loaded, values, entry.partition(":")[0].partition(".")[0])
            index = HeapIndex.early((m.__dict__ for m in loaded.values()), held, extra)
        return cls((old_lib, new_lib), reasons, paths, loaded, names, values, registries, index)

    def release(self) -> None:
        if self.heap is not None:
            self.heap.release()


REPLANS = 3  # commits retried when changed modules are imported while preparing


class HotUpgrade:
    """One hot upgrade of this process from the release at ``old`` to the one at ``new``.

    ``prepare()`` does everything that can be done while serving and refuses (raising
    ``ChildError("hot_upgrade_refused")``) what cannot be applied in place; ``commit()`` waits for
    quiescence and applies it, all or nothing. ``checkpoint`` is a test hook called with the name
    of every step of the commit (a test raises from it to prove the rollback).
    """

    def __init__(
        self,
        old: str | os.PathLike[str] | ReleaseTree,
        new: str | os.PathLike[str] | ReleaseTree,
        *,
        extra: Any = None,
        allow_dependency_changes: bool = False,
        checkpoint: Checkpoint | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sharing: shared.Sharing | None = None,
        shared_analysis: shared.SharedAnalysis | None = None,
        before: Before | None = None,
    ) -> None:
        self.old = _tree(old)
        self.new = _tree(new)
        _last_tree[:] = [(_stamp(self.new.root), self.new)]  # the next upgrade's old one
        self.extra = extra
        self.allow_dependency_changes = allow_dependency_changes
        self.checkpoint = checkpoint
        self.clock = clock
        self.prepared: Prepared | None = None
        self.analysis: Analysis | None = None
        self._t0 = clock()
        self._gc_paused = False
        self._replans = 0
        self.sharing = sharing
        self.unfinished: Callable[[], None] | None = None  # a finish_later commit's bookkeeping
        self._shared = shared_analysis  # another worker's analysis of the same pair, if read
        self.analysis_shared = False
        self.heap_walked_early = False
        self._before = before  # taken already (a worker waiting for the first one's analysis)
        # (step, time.perf_counter()): when each step began or ended, for a timeline across
        # the workers of a generation (CLOCK_MONOTONIC on Linux, one clock for every process)
        self.marks: list[tuple[str, float]] = [("start", clock())]

    def prepare(self) -> Verdict:
        """Check and plan (raises a refusal). The cyclic collector stays paused from here to
        the end of the commit (or :meth:`abort`): parsing allocates many short-lived acyclic
        objects, and with a large heap every full collection they trigger walks all of it."""
        t = self.clock()
        if gc.isenabled() and not self._gc_paused:
            gc.disable()
            self._gc_paused = True
        try:
            return self._prepare(t)
        except BaseException:
            self.abort()
            raise

    def _prepare(self, t: float) -> Verdict:
        # First what the engine itself imports (a release may bundle the same distributions,
        # e.g. packaging): the snapshot of the app's modules is taken after.
        before, self._before = self._before, None  # once: a re-plan takes its own
        if before is None or before.libs != (self.old.lib, self.new.lib):
            if before is not None:
                before.release()
            before = Before.take(self.old.lib, self.new.lib, self.new.manifest)
        try:
            return self._plan(t, before)
        finally:
            if self.prepared is None or self.prepared.index is not before.heap:
                before.release()  # not used: refused, or prepare walked the heap itself

    def _plan(self, t: float, before: Before) -> Verdict:
        paths, loaded, names = before.paths, before.loaded, before.names
        blob, self._shared = self._shared, None  # once: a re-plan makes its own
        sharing, self.sharing = self.sharing, None
        self.analysis_shared = blob is not None and shared.agrees(blob, names.__contains__)
        if blob is not None and self.analysis_shared:
            a = blob.analysis
        else:
            asked = shared.Recorder(names.__contains__)
            a = analyze(
                self.old,
                self.new,
                allow_dependency_changes=self.allow_dependency_changes,
                loaded=asked,
            )
            if sharing is not None and sharing.write and not a.reasons:
                shared.write(sharing.path, a, asked.asked)
        a.reasons.extend(before.interpreter_reasons)
        self.analysis = a
        self.marks.append(("analysed", self.clock()))
        if sharing is not None and sharing.write and sharing.on_analyzed and not a.reasons:
            sharing.on_analyzed()
        if a.reasons:
            raise refuse(a.reasons, a.warnings)
        self.prepared = prepare(
            a, paths, loaded, before.values, early=before.heap, registries=before.registries
        )
        self.heap_walked_early = before.heap is not None and self.prepared.index is before.heap
        plan_paths(self.prepared)
        self.marks.append(("prepared", self.clock()))
        self.prepared.prepare_ms = (self.clock() - t) * 1000
        return a.verdict()

    def abort(self) -> None:
        """Release what prepare holds (heap references, the paused collector)."""
        if self.prepared is not None:
            self.prepared.release()
            self.prepared = None
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def commit(
        self,
        quiescence: Quiescence | None = None,
        *,
        suspend_timeout: float = 3.0,
        hold: Callable[[], bool] | None = None,
        finish_later: bool = False,
    ) -> HotUpgradeStats:
        """Wait for quiescence and apply the prepared plan, all or nothing. If a changed module
        was first imported after prepare (a lazy import while serving), nothing is changed, the
        upgrade is prepared again and the commit retried (at most ``REPLANS`` times). Two-phase
        across processes: ``hold`` is called in the window once everything is applied, and
        False (another process could not apply it) rolls this one back before anything runs;
        ``finish_later`` leaves the unchanged modules' file attributes to ``unfinished``."""
        for attempt in range(REPLANS + 1):
            try:
                return self._commit_once(quiescence, suspend_timeout, hold, finish_later)
            except Replan as exc:
                if attempt == REPLANS:
                    raise ChildError(
                        "hot_upgrade_failed",
                        f"modules kept being imported while the upgrade was prepared ({exc}); "
                        "nothing was changed",
                        step="prepare",
                    ) from None
                self._replans += 1
        raise AssertionError("unreachable")

    def _commit_once(
        self,
        quiescence: Quiescence | None,
        suspend_timeout: float,
        hold: Callable[[], bool] | None,
        finish_later: bool,
    ) -> HotUpgradeStats:
        if self.prepared is None:
            self.prepare()
        p = self.prepared
        assert p is not None
        q = quiescence or Quiescence()
        t_wait = self.clock()
        marks: dict[str, float] = {}

        def window() -> tuple[Counts, Commit]:
            marks["in"] = self.clock()
            journal = Journal()
            commit = Commit(p, journal, extra=self.extra, checkpoint=self._step)
            try:
                counts = commit.run()
                if hold is not None:
                    marks["hold"] = self.clock()
                    self._current = "hold"  # applied: now waiting for the others
                    kept = hold()
                    marks["held"] = self.clock()
                    if not kept:
                        raise Withdrawn(
                            "the generation did not keep it: another worker could not apply "
                            "it, or no decision came within the hold timeout"
                        )
            except BaseException as exc:
                errors = journal.rollback()
                marks["out"] = self.clock()
                if not isinstance(exc, Exception) or isinstance(exc, Replan) or _refusal(exc):
                    raise  # a refusal or a re-plan is raised before anything is written
                raise _failure(self._current, exc, errors) from exc
            journal.discard()
            marks["out"] = self.clock()
            return counts, commit

        try:
            counts, commit = q.run(window, suspend_timeout)
        except QuiesceTimeout as exc:
            raise ChildError(
                "hot_upgrade_failed",
                f"could not quiesce within suspend_timeout ({exc}); nothing was changed",
                step="quiesce",
            ) from None
        finally:
            young = p.index.young_scanned
            scanned = p.index.scanned
            walks = p.index.walks
            self.abort()
        if finish_later:
            self.unfinished = commit.finish_paths
        else:
            commit.finish_paths()
        end = self.clock()
        for step in ("in", "hold", "held", "out"):
            if step in marks:
                self.marks.append((step, marks[step]))
        self.marks += [("commit", t_wait), ("end", end)]
        a = p.analysis
        return HotUpgradeStats(
            old_release=a.old.release_id,
            new_release=a.new.release_id,
            modules_changed=tuple(m.name for m in p.modules if m.name not in a.derived),
            modules_added=counts.modules_added,
            modules_removed=counts.modules_removed,
            functions_patched=counts.functions_patched,
            classes_patched=counts.classes_patched,
            statements_run=counts.statements_run,
            names_removed=counts.names_removed,
            importers_rebound=counts.importers_rebound,
            enum_members_added=counts.enum_members_added,
            fields_filled=counts.fields_filled,
            modules_migrated=counts.modules_migrated,
            instances_migrated=counts.instances_migrated,
            prepare_ms=round(p.prepare_ms, 3),
            quiesce_ms=round((marks["in"] - t_wait) * 1000, 3),
            window_ms=round((marks["out"] - marks["in"]) * 1000, 3),
            hold_ms=round((marks.get("held", 0.0) - marks.get("hold", 0.0)) * 1000, 3),
            total_ms=round((end - self._t0) * 1000, 3),
            heap_objects_scanned=scanned,
            young_objects_scanned=young,
            warnings=tuple(p.warnings),
            data_hooks_run=counts.data_hooks_run,
            modules_rederived=tuple(m.name for m in p.modules if m.name in a.derived),
            caches_cleared=counts.caches_cleared,
            replans=self._replans,
            analysis_shared=self.analysis_shared,
            heap_walked_early=self.heap_walked_early,
            heap_walks=walks,
            marks=tuple(sorted(((k, round(v, 6)) for k, v in self.marks), key=lambda m: m[1])),
        )

    _current = "start"

    def _step(self, name: str) -> None:
        self._current = name
        if self.checkpoint is not None:
            self.checkpoint(name)


def _refusal(exc: BaseException) -> bool:
    return isinstance(exc, ChildError) and exc.code == "hot_upgrade_refused"


def _failure(step: str, exc: BaseException, rollback_errors: list[str]) -> ChildError:
    detail = exc.message if isinstance(exc, HotswapError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, Withdrawn):
        detail = f"withdrawn: {exc}"
    if rollback_errors:
        return ChildError(
            "hot_upgrade_failed",
            f"{step} failed ({detail}) and the rollback was incomplete: "
            + "; ".join(rollback_errors),
            step=step,
            error=detail,
            rollback_errors=rollback_errors,
        )
    return ChildError(
        "hot_upgrade_failed",
        f"{step} failed ({detail}); every change was rolled back and the old code still runs",
        step=step,
        error=detail,
    )


# -- the one-call API -------------------------------------------------------------------------


def find_current_release(app: str | None = None) -> Path:
    """The release this process runs: the first ``sys.path`` entry ``<root>/lib`` whose
    ``<root>/RELEASE.json`` exists (and names ``app``, if given)."""
    for entry in sys.path:
        if not entry or os.path.basename(os.path.normpath(entry)) != LIB:
            continue
        root = Path(entry).resolve().parent
        if not (root / MANIFEST).is_file():
            continue
        if app is not None and ReleaseTree.load(root).name != app:
            continue
        return root
    what = f" of {app!r}" if app else ""
    raise UsageError(
        "release_not_found",
        f"this process does not run a release{what} (no <release>/lib on sys.path)",
    )


def _new_release_root(release: str | os.PathLike[str], state_dir: Path | None) -> Path:
    path = Path(release)
    if path.is_dir():
        return path
    if not path.exists():
        raise UsageError("release_not_found", f"no release at {path}", path=str(path))
    # A tarball: verify and unpack it through the release store.
    try:
        from hotswap.release.store import ReleaseStore
    except ImportError:
        raise UsageError(
            "release_not_found",
            f"{path} is a file and the release store is not available to unpack it; "
            "pass an unpacked release directory",
            path=str(path),
        ) from None
    if state_dir is None:
        raise UsageError("bad_config", "state_dir is needed to unpack a release tarball")
    rel = ReleaseStore(state_dir).unpack(path)
    root: Path = rel.root
    return root


class Withdrawn(Exception):
    """A two-phase upgrade applied here is withdrawn (another process could not apply it)."""


@dataclass
class PendingUpgrade:
    """A hot upgrade prepared in this process (nothing changed yet), holding the one-at-a-time
    lock until :meth:`commit` or :meth:`abort`."""

    upgrade: HotUpgrade
    quiescence: Quiescence
    _open: bool = True

    def commit(
        self,
        *,
        suspend_timeout: float = 3.0,
        hold: Callable[[], bool] | None = None,
        finish_later: bool = False,
    ) -> HotUpgradeStats:
        """Apply it, all or nothing. With ``hold``, the applied upgrade waits in the window
        (requests still suspended) for ``hold()``: False rolls it back (two-phase). With
        ``finish_later``, pointing the unchanged modules' files at the new release waits for
        :meth:`finish` (two-phase: until every worker has answered)."""
        try:
            return self.upgrade.commit(
                self.quiescence,
                suspend_timeout=suspend_timeout,
                hold=hold,
                finish_later=finish_later,
            )
        finally:
            self.abort()

    def finish(self) -> None:
        """The bookkeeping a ``finish_later`` commit left (once; nothing if there is none)."""
        work, self.upgrade.unfinished = self.upgrade.unfinished, None
        if work is not None:
            work()

    def abort(self) -> None:
        if self._open:
            self._open = False
            try:
                self.upgrade.abort()
            finally:
                _one_at_a_time.release()


def prepare_hot_upgrade(
    release: str | os.PathLike[str],
    *,
    app: str | None = None,
    current: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    gate: UpgradeGate | None = None,
    extra: Any = None,
    allow_dependency_changes: bool = False,
    no_quiesce: bool = False,
    sharing: shared.Sharing | None = None,
) -> PendingUpgrade:
    """Check and plan a hot upgrade of this process to ``release`` without changing anything
    (see :func:`hot_upgrade`); raises what it raises before its commit. ``sharing``: one
    analysis for every worker of a generation (:mod:`hotswap.hot.shared`)."""
    if not _one_at_a_time.acquire(blocking=False):
        raise UsageError("upgrade_in_progress", "a hot upgrade is already running")
    before: Before | None = None
    try:
        old_root = Path(current) if current is not None else find_current_release(app)
        if state_dir is not None:
            sdir: Path | None = Path(state_dir)
        elif old_root.parent.name == "releases":
            sdir = old_root.parent.parent
        else:
            sdir = None
        new_root = _new_release_root(release, sdir)
        blob = None
        marks = [("called", time.perf_counter())]
        if sharing is not None and not sharing.write:
            if sharing.wait is not None:
                # the first worker is still analysing: take meanwhile what needs no analysis
                # (with turns on the idle cores: the heap walk as well, for every module)
                if sharing.turn is None or sharing.turn():
                    marks.append(("turn", time.perf_counter()))
                    old_lib, new_lib = old_root.resolve() / LIB, new_root.resolve() / LIB
                    before = Before.take(
                        old_lib,
                        new_lib,
                        read_manifest(new_lib.parent),
                        heap=sharing.turn is not None,
                    )
                    marks.append(("taken", time.perf_counter()))
                    if sharing.turn_done is not None:
                        sharing.turn_done()
                if not sharing.wait():
                    raise ChildError(
                        "hot_upgrade_refused",
                        "withdrawn before its analysis: the worker that analyses it refused it "
                        "(or nothing was heard within the hold timeout)",
                    )
                marks.append(("proceed", time.perf_counter()))
            blob = shared.read(sharing.path, old_root, new_root)
        up = HotUpgrade(
            blob.analysis.old if blob else old_root,
            blob.analysis.new if blob else new_root,
            extra=extra,
            allow_dependency_changes=allow_dependency_changes,
            sharing=sharing,
            shared_analysis=blob,
            before=before,
        )
        up.marks[:0] = marks
        if app is not None and up.new.name != app:
            raise UsageError(
                "release_not_found", f"{new_root} is a release of {up.new.name!r}, not {app!r}"
            )
        q = Quiescence(loop=loop, gate=gate) if loop or gate else default_quiescence()
        if q.loop is None and q.gate is None and not no_quiesce:
            raise refuse([NO_QUIESCENCE])
        pending = PendingUpgrade(up, q)
    except BaseException:
        if before is not None:
            before.release()
        _one_at_a_time.release()
        raise
    try:
        up.prepare()
    except BaseException:
        pending.abort()
        raise
    return pending


def hot_upgrade(
    release: str | os.PathLike[str],
    *,
    app: str | None = None,
    suspend_timeout: float = 3.0,
    current: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    gate: UpgradeGate | None = None,
    extra: Any = None,
    allow_dependency_changes: bool = False,
    no_quiesce: bool = False,
) -> HotUpgradeStats:
    """Upgrade the code of this running process in place to ``release``.

    ``release`` is a release tarball (verified and unpacked into ``state_dir``'s store) or an
    unpacked release directory. ``current`` is the release the process runs (default: found on
    ``sys.path``; ``app`` picks it by name). Quiescence comes from ``loop`` and/or ``gate``, else
    from :func:`~hotswap.hot.quiesce.set_quiescence`. A process that registered neither is
    refused (``no_quiescence``: the code would change under running requests) unless
    ``no_quiesce`` says so; the commit then runs on the calling thread.

    Raises ``UsageError("release_not_found")``, ``UsageError("upgrade_in_progress")``,
    ``ChildError("hot_upgrade_refused")`` (nothing touched; use a blue-green upgrade) or
    ``ChildError("hot_upgrade_failed")`` (rolled back; the old code still runs).
    """
    pending = prepare_hot_upgrade(
        release,
        app=app,
        current=current,
        state_dir=state_dir,
        loop=loop,
        gate=gate,
        extra=extra,
        allow_dependency_changes=allow_dependency_changes,
        no_quiesce=no_quiesce,
    )
    return pending.commit(suspend_timeout=suspend_timeout)


NO_QUIESCENCE = Reason(
    "no_quiescence",
    "this process registered no quiescence (no event loop, no UpgradeGate: see "
    "hotswap.set_quiescence), so the code would change while requests run; register one, or "
    "pass no_quiesce=True (--no-quiesce) if nothing runs concurrently",
)


async def hot_upgrade_async(release: str | os.PathLike[str], **kwargs: Any) -> HotUpgradeStats:
    """:func:`hot_upgrade` for coroutines: prepares in a worker thread and commits on the
    running event loop (the default ``loop``) as one step."""
    kwargs.setdefault("loop", asyncio.get_running_loop())
    return await asyncio.to_thread(hot_upgrade, release, **kwargs)
