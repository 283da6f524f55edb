"""A worker's side of a two-phase hot upgrade of a generation of several workers.

The supervisor asks every worker to prepare at once (``hot_prepare``: checked and planned, nothing
changed). The first one analyses the upgrade and writes its analysis to ``analysis`` (it says so
with ``hot_analyzed``); the others take meanwhile what needs no analysis (the snapshot of the app's
modules and a walk of the heap for their functions, when the supervisor gives them a turn,
``hot_turn``, on a core the first one leaves idle: one reader per idle core at a time, each saying
``hot_turn_done``), then wait for the supervisor's ``hot_proceed``: read the analysis
(:mod:`hotswap.hot.shared`) and plan, or drop it (``go`` false: the first one refused it). Then the
supervisor asks them to commit (``hot_commit``). Each worker quiesces, applies the upgrade, and
holds in its window (requests still suspended), tells the supervisor (``hot_applied``) and waits
for its decision (``hot_decide``, read on the channel's reader thread while the window may hold the
event loop): keep it, or roll back, as every worker does when one of them could not apply it. A
worker that hears nothing within ``HOT_HOLD_TIMEOUT`` rolls back (and a reader that hears no
``hot_proceed`` drops its prepare). ``hot_abort`` drops a prepared upgrade (another worker refused
it at prepare). ``hot_finish``, once the release is current, runs the bookkeeping that waited (the
unchanged modules' file attributes pointed at the new release): done earlier, its CPU would be
taken from a worker still holding its window, and from the steps the caller waits for.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.errors import UsageError

if TYPE_CHECKING:
    from hotswap.child.runtime import ChildRuntime
    from hotswap.hot.engine import PendingUpgrade


@dataclass
class _Pending:
    upgrade: PendingUpgrade
    root: Path
    release_id: str


class TwoPhase:
    def __init__(self, runtime: ChildRuntime) -> None:
        self.runtime = runtime
        self._pending: _Pending | None = None
        self._lock = threading.Lock()
        self._decided = threading.Event()
        self._keep = False
        self._unfinished: PendingUpgrade | None = None  # committed, its bookkeeping waiting
        self._proceed: dict[str, bool] = {}  # analysis path -> go, from hot_proceed
        self._turns: set[str] = set()  # analysis paths given a turn (hot_turn)
        self._heard = threading.Condition()

    def attach(self) -> None:
        channel = self.runtime.channel
        channel.handle(contract.OP_HOT_PREPARE, self.on_prepare, threaded=True)
        channel.handle(contract.OP_HOT_COMMIT, self.on_commit, threaded=True)
        channel.handle(contract.OP_HOT_DECIDE, self.on_decide)  # not threaded: see above
        channel.handle(contract.OP_HOT_ABORT, self.on_abort)
        channel.handle(contract.OP_HOT_FINISH, self.on_finish)
        channel.handle(contract.OP_HOT_PROCEED, self.on_proceed)
        channel.handle(contract.OP_HOT_TURN, self.on_turn)

    def on_prepare(self, args: dict[str, Any]) -> Any:
        from hotswap.hot.engine import prepare_hot_upgrade
        from hotswap.hot.shared import Sharing

        root = args.get("release_root")
        if not isinstance(root, str):
            raise UsageError("bad_request", "hot_prepare needs release_root")
        self.on_finish({})  # a hot_finish that never came (a supervisor gone in between)
        path, role = args.get("analysis"), args.get("analysis_role")
        sharing = None
        if isinstance(path, str) and role == "write":
            channel = self.runtime.channel
            sharing = Sharing(
                Path(path),
                write=True,
                on_analyzed=lambda: channel.event(contract.EVENT_HOT_ANALYZED),
            )
        elif isinstance(path, str) and role == "read":
            channel = self.runtime.channel
            waits = bool(args.get("analysis_wait"))  # then for a turn first (hot_turn) too
            sharing = Sharing(
                Path(path),
                write=False,
                wait=functools.partial(self._wait_proceed, path) if waits else None,
                turn=functools.partial(self._wait_turn, path) if waits else None,
                turn_done=(lambda: channel.event(contract.EVENT_HOT_TURN_DONE)) if waits else None,
            )
        with self._lock:
            if self._pending is not None:
                raise UsageError("upgrade_in_progress", "a hot upgrade is already prepared")
        with self._heard:  # what was heard for an earlier prepare that never got to wait
            for stale in [k for k in self._proceed if k != path]:
                del self._proceed[stale]
            self._turns.intersection_update({path})
        # not under the lock: a reader waits in here for hot_proceed, and the handlers the
        # channel's reader thread runs meanwhile (hot_abort, hot_finish) take the lock
        upgrade = prepare_hot_upgrade(
            root,
            current=self.runtime.release_root,
            allow_dependency_changes=bool(args.get("allow_dependency_changes", False)),
            no_quiesce=bool(args.get("no_quiesce", False)),
            sharing=sharing,
        )
        release_id = str(args.get("release_id", ""))
        with self._lock:
            self._pending = _Pending(upgrade, Path(root), release_id)
        return {"prepared": True}

    def on_proceed(self, args: dict[str, Any]) -> Any:
        path = args.get("analysis")
        if isinstance(path, str):
            with self._heard:
                self._proceed[path] = bool(args.get("go", False))
                self._heard.notify_all()
        return {}

    def on_turn(self, args: dict[str, Any]) -> Any:
        path = args.get("analysis")
        if isinstance(path, str):
            with self._heard:
                self._turns.add(path)
                self._heard.notify_all()
        return {}

    def _wait_turn(self, path: str) -> bool:
        """Whether a turn came for ``path`` before its ``hot_proceed`` (then take it now)."""
        with self._heard:
            if not self._heard.wait_for(
                lambda: path in self._turns or path in self._proceed,
                timeout=contract.HOT_HOLD_TIMEOUT,
            ):
                self._proceed[path] = False  # nothing heard: dropped, as _wait_proceed would
            if path in self._turns:
                self._turns.discard(path)
                return True
            return False

    def _wait_proceed(self, path: str) -> bool:
        """Whether to go on with the prepare of ``path``, once the supervisor says."""
        with self._heard:
            if not self._heard.wait_for(
                lambda: path in self._proceed, timeout=contract.HOT_HOLD_TIMEOUT
            ):
                return False
            return self._proceed.pop(path)

    def _take(self) -> _Pending:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            raise UsageError("bad_request", "no hot upgrade is prepared here")
        return pending

    def on_commit(self, args: dict[str, Any]) -> Any:
        pending = self._take()
        self._decided.clear()
        self._keep = False

        def hold() -> bool:
            self.runtime.channel.event(contract.EVENT_HOT_APPLIED, release=pending.release_id)
            if not self._decided.wait(contract.HOT_HOLD_TIMEOUT):
                return False  # the supervisor went quiet: what it would decide is unknown
            return self._keep

        suspend = float(args.get("suspend_timeout", contract.SUSPEND_TIMEOUT))
        stats = pending.upgrade.commit(suspend_timeout=suspend, hold=hold, finish_later=True)
        self.finish_later(pending.upgrade)
        self.runtime.release_root = pending.root
        self.runtime.release_id = pending.release_id or self.runtime.release_id
        return stats.to_json()

    def on_decide(self, args: dict[str, Any]) -> Any:
        self._keep = bool(args.get("keep", False))
        self._decided.set()
        return {}

    def finish_later(self, upgrade: PendingUpgrade) -> None:
        """Keep a committed upgrade's bookkeeping for ``hot_finish``."""
        with self._lock:
            self._unfinished = upgrade

    def on_finish(self, _args: dict[str, Any]) -> Any:
        with self._lock:
            upgrade, self._unfinished = self._unfinished, None
        if upgrade is not None:
            upgrade.finish()
        return {"finished": upgrade is not None}

    def on_abort(self, _args: dict[str, Any]) -> Any:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.upgrade.abort()
        return {"aborted": pending is not None}
