"""A hot upgrade through the supervisor: the active generation patches itself in place.

The supervisor verifies and unpacks the release, asks the active generation to hot-upgrade to
it (the patching is :mod:`hotswap.hot`, inside the child), and on success records it as
current, so a restarted generation or worker boots the new code. Every attempt, failed or not,
goes into ``recent``.

One worker: one request (``hot_upgrade``). Several workers: two-phase, so the generation never
runs two releases (:mod:`hotswap.child.twophase`): every worker prepares (nothing changes; one
refusal and every worker drops it; the first one's analysis is read by the others rather than
made again, :mod:`hotswap.hot.shared`), then every worker commits and holds its window until every
worker has applied it; if one could not, every worker rolls back and the release does not
become current.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.errors import ChildError, HotswapError, UsageError
from hotswap.supervisor import logsink
from hotswap.supervisor.driver import resolve
from hotswap.supervisor.generation import Generation
from hotswap.supervisor.lifecycle import GenState
from hotswap.supervisor.process import Child

if TYPE_CHECKING:
    from hotswap.supervisor.core import Supervisor

RESERVED = ("release", "sha256", "release_root", "release_id")  # the supervisor sets these
DECIDE_MARGIN = 1.0  # s: the decision reaches a holding worker this long before it gives up


async def hot_upgrade(
    sup: Supervisor, ref: str, sha256: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    gen = sup.active
    assert gen is not None
    loop = asyncio.get_running_loop()
    started = sup.clock.now()
    record: dict[str, Any] = {
        "id": logsink.new_swap_id(),
        "how": "hot",
        "release": None,
        "ref": ref,
        "ok": False,
        "generation": gen.number,
        "pid": gen.pid,
        "at": time.time(),
    }
    scope = logsink.open_swap(record["id"])
    committed: list[Child] = []  # told to finish once the release is current
    sup.log(logsink.swap_started(record["id"], "hot", ref))
    try:
        release = await loop.run_in_executor(None, resolve, sup, ref, sha256)
        record["release"] = release.id
        assert sup.hot is not None
        sup.hot.update(release=release.id, phase="prepare")
        if {c.release.id for c in gen.alive()} == {release.id}:
            raise UsageError(
                "same_release",
                f"generation {gen.number} already runs {release.id}: nothing to hot-upgrade "
                "(hotswap restart starts it again, blue-green)",
            )
        opts = {k: v for k, v in options.items() if k not in RESERVED}
        suspend = float(opts.get("suspend_timeout", contract.SUSPEND_TIMEOUT))
        args = {"release_root": str(release.root), "release_id": release.id, **opts}
        if gen.size > 1:
            result = await _two_phase(sup, gen, args, suspend)
        else:
            sup.hot["phase"] = "apply"  # prepare and commit, in one request
            result = await gen.alive()[0].request(
                contract.OP_HOT_UPGRADE,
                timeout=suspend + contract.HOT_UPGRADE_GRACE,
                finish_later=True,
                **args,
            )
        sup.hot["phase"] = "current"
        # every worker that answered runs the new code; what waits is bookkeeping
        committed = [c for c in gen.alive() if c.worker not in result.get("replaced", [])]
        gen.set_release(release)
        for index in result.get("replaced", []):  # restarted on the release just made current
            child = gen.workers[index]
            if child is not None:
                child.kill()
        protect = sup.releases_in_use()
        await loop.run_in_executor(
            None, lambda: sup.store.set_current(release.id, how="hot", protect=protect)
        )
        record.update(ok=True, stats=result)
        return record
    except HotswapError as e:
        record["error"] = {"code": e.code, "message": e.message}
        e.details["swap"] = record["id"]  # its id, as in recent and the log
        raise
    finally:
        # Only now the bookkeeping each worker left (the unchanged modules' file attributes
        # pointed at the new release): sent earlier, its CPU would be taken from the steps
        # above, which the caller waits for, and nothing waits for it.
        for child in committed:
            child.send_nowait(contract.OP_HOT_FINISH)
        record["total_ms"] = round((sup.clock.now() - started) * 1000, 3)
        sup.recent.appendleft(record)
        sup.log(logsink.swap_finished(record["id"], sup.recent))
        scope.close()


async def _two_phase(
    sup: Supervisor, gen: Generation, args: dict[str, Any], suspend: float
) -> dict[str, Any]:
    """Prepare in every worker, then commit in every worker, all or nothing; the stats of
    worker 0, with every worker's in ``workers``."""
    workers = gen.alive()
    restarting = [
        i
        for i, c in enumerate(gen.workers)
        if c is None or c.exited.is_set() or c.state is not GenState.LIVE
    ]
    if restarting:
        raise UsageError(
            "worker_restarting",
            f"generation {gen.number} has a worker restarting ({', '.join(map(str, restarting))}"
            "); try again once it serves",
        )
    grace = suspend + contract.HOT_UPGRADE_GRACE
    prepare = {k: v for k, v in args.items() if k != "suspend_timeout"}
    prepared = await _prepare_all(sup, workers, prepare, grace)
    refused = _first_error(workers, prepared)
    if refused is not None:
        for child in workers:
            child.send_nowait(contract.OP_HOT_ABORT)
        raise refused
    loop = asyncio.get_running_loop()
    applied = {id(c): loop.create_future() for c in workers}
    assert sup.hot is not None
    sup.hot.update(applied=applied, phase="commit")
    commits = [
        asyncio.ensure_future(
            c.request(contract.OP_HOT_COMMIT, timeout=grace, suspend_timeout=suspend)
        )
        for c in workers
    ]
    waiting: set[asyncio.Future[Any]] = {*applied.values(), *commits}
    deadline = sup.clock.now() + grace
    holding = False
    while not all(f.done() for f in applied.values()):
        if any(f.done() for f in commits) or sup.clock.now() >= deadline:
            break  # a commit answered before every worker applied: it failed
        if not holding and any(f.done() for f in applied.values()):
            # The first worker to apply it holds its window from now on, and gives up after
            # HOT_HOLD_TIMEOUT: decide before it does, or it would look like the worker
            # that failed, and the slow one like a worker withdrawn.
            holding = True
            deadline = min(deadline, sup.clock.now() + contract.HOT_HOLD_TIMEOUT - DECIDE_MARGIN)
        _done, waiting = await asyncio.wait(
            waiting, timeout=deadline - sup.clock.now(), return_when=asyncio.FIRST_COMPLETED
        )
    # the workers whose commit answered before every worker applied it: they failed, the
    # others are only withdrawn because of them
    causes = [i for i, f in enumerate(commits) if f.done()]
    slow = [i for i, c in enumerate(workers) if not applied[id(c)].done()]
    keep = not slow and not causes
    for child in workers:
        child.send_nowait(contract.OP_HOT_DECIDE, keep=keep)
    answers = await asyncio.gather(*commits, return_exceptions=True)
    if not keep and not causes:
        late = workers[slow[0]]
        held = contract.HOT_HOLD_TIMEOUT - DECIDE_MARGIN
        raise ChildError(
            "hot_upgrade_failed",
            f"{late.name} did not apply it within {held:g}s of the first worker that did "
            "(its commit or __code_change__ ran that long, while the others held their "
            "windows); every worker rolled back",
            worker=late.worker,
            step="hold",
        )
    if not keep:
        first = [i for i in causes if isinstance(answers[i], BaseException)]
        order = first + [i for i in range(len(workers)) if i not in first]
        error = _first_error([workers[i] for i in order], [answers[i] for i in order])
        if error is None:
            raise ChildError(
                "hot_upgrade_failed",
                f"generation {gen.number}: not every worker applied it within {grace:g}s; "
                "every worker rolled back",
            )
        if error.code == "protocol_error":  # its channel, not its commit: it died, say
            raise ChildError(
                "hot_upgrade_failed",
                f"{error.message} during the commit; every other worker rolled back, and it "
                "is restarted on the release that stays current",
                worker=error.details.get("worker"),
                step="commit",
            )
        raise error
    # Kept: the decision is the commit. A worker that failed after it (its channel broke, or
    # its hold ran out just before the decision came) does not run what the others run; the
    # caller replaces it, and the replacement boots the new release, as a fresh import would.
    lagging = [c.worker for c, a in zip(workers, answers, strict=True) if not isinstance(a, dict)]
    for index in lagging:
        failure = _first_error([workers[index]], [answers[index]])
        sup.log(f"{workers[index].name} failed after every worker applied it ({failure}): replaced")
    stats = [
        {**a, "worker": c.worker, "pid": c.pid}
        for c, a in zip(workers, answers, strict=True)
        if isinstance(a, dict)
    ]
    return {**(stats[0] if stats else {}), "workers": stats, "replaced": lagging}


async def _prepare_all(
    sup: Supervisor, workers: list[Child], prepare: dict[str, Any], grace: float
) -> list[Any]:
    """Every worker's answer to ``hot_prepare``, asked of all at once. The first worker makes
    the analysis and writes it (``hot_analyzed``) for the others to read
    (:mod:`hotswap.hot.shared`); they take meanwhile what needs no analysis (the snapshot of
    the app's modules, a walk of the heap) in turns on the cores it leaves idle, one reader
    per idle core at a time (``hot_turn``, ``hot_turn_done``): all at once, they would take
    those cores from the first one, whose analysis everyone waits for. Then ``hot_proceed``:
    go once the file is written or the first one has prepared, drop it if the first one
    failed (a reader whose turn had not come takes its part after). A refusal by the first
    worker is the answer of all."""
    loop = asyncio.get_running_loop()
    leader, rest = workers[0], workers[1:]
    path = sup.state_dir / "run" / f"hot-analysis-{secrets.token_hex(8)}"
    analyzed = loop.create_future()
    turn_done = {id(c): loop.create_future() for c in rest}
    assert sup.hot is not None
    sup.hot["analyzed"] = {id(leader): analyzed}
    sup.hot["turn_done"] = turn_done
    idle = idle_cores()
    common = {"timeout": grace, "analysis": str(path), **prepare}
    first = asyncio.ensure_future(
        leader.request(contract.OP_HOT_PREPARE, analysis_role="write", **common)
    )
    others = [
        asyncio.ensure_future(
            c.request(
                contract.OP_HOT_PREPARE,
                analysis_role="read",
                analysis_wait=True,  # and for a turn: with no idle core, none comes
                **common,
            )
        )
        for c in rest
    ]
    try:
        queue = list(range(len(rest)))
        taking: dict[int, set[asyncio.Future[Any]]] = {}  # reader -> what ends its turn
        while True:
            while queue and len(taking) < idle:
                i = queue.pop(0)
                rest[i].send_nowait(contract.OP_HOT_TURN, analysis=str(path))
                taking[i] = {turn_done[id(rest[i])], others[i]}
            ends: set[asyncio.Future[Any]] = {first, analyzed, *chain(*taking.values())}
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            if analyzed.done() or first.done():
                break
            for i in [i for i, fs in taking.items() if any(f.done() for f in fs)]:
                del taking[i]
        go = analyzed.done() or first.exception() is None
        for child in rest:
            child.send_nowait(contract.OP_HOT_PROCEED, analysis=str(path), go=go)
        answers = await asyncio.gather(first, *others, return_exceptions=True)
        if not go:  # the others only dropped it: the first one's answer is the answer
            return [answers[0], *(None for _ in rest)]
        return list(answers)
    finally:
        for f in (first, *others):
            f.cancel()  # the prepare was cancelled: no answer is waited for any more
        for waiter in (analyzed, *turn_done.values()):
            waiter.cancel()
        sup.hot.pop("analyzed", None)
        sup.hot.pop("turn_done", None)
        # off the event loop, as every other file the supervisor touches during an upgrade
        await loop.run_in_executor(None, _remove_analysis, path)


def idle_cores() -> int:
    """The cores the first worker leaves to the others while it analyses: all it may use but
    its own."""
    return max(0, len(os.sched_getaffinity(0)) - 1)


def _remove_analysis(path: Path) -> None:
    """The shared analysis file and a writer's temporary file, if one was left."""
    for leftover in (path, *path.parent.glob(f".{path.name}.*")):
        with contextlib.suppress(OSError):
            leftover.unlink(missing_ok=True)


def _first_error(workers: list[Child], results: list[Any]) -> HotswapError | None:
    """The first worker's failure among ``results``, naming the worker, or None."""
    for child, result in zip(workers, results, strict=True):
        if isinstance(result, HotswapError):
            message = f"{child.name}: {result.message}"
            details = {**result.details, "worker": child.worker}
            return HotswapError.from_json(
                {"code": result.code, "message": message, "details": details}
            )
        if isinstance(result, BaseException):
            message = f"{child.name}: {result!r}"
            return ChildError("hot_upgrade_failed", message, worker=child.worker)
    return None
