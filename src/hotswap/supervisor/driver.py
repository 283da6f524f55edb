"""The swap driver: performs the pure :class:`~.swap.Swap` machine's actions, one swap at a time.

It is the machine's imperative shell: it unpacks, spawns through the
:class:`~.children.Children` seam, arms deadlines on the supervisor's clock, probes, cuts
over, kills and commits, and feeds back what happened as events. Whatever an action raises
becomes an event too (the machine's failure path before cutover, a note or ``commit_failed``
after), so no exception unwinds a swap half done. Events from generations reach it through
:meth:`post`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.errors import HotswapError, UsageError
from hotswap.release.store import Release, is_tarball_ref
from hotswap.supervisor import logsink, swap
from hotswap.supervisor.generation import Generation
from hotswap.supervisor.handoff import BEFORE_CUTOVER_KEY
from hotswap.supervisor.lifecycle import GenState
from hotswap.supervisor.process import Child

if TYPE_CHECKING:
    from hotswap.supervisor.core import Supervisor

Progress = Callable[[dict[str, Any]], None]
PROBE_EXIT_GRACE = 0.5  # a probe that broke: how long to wait for the child's exit to explain it
FAILED_EXIT_WAIT = 5.0  # a failed swap returns once the new generation it killed is gone
GONE = "gone"  # a worker whose probe broke because it exited: its exit fails the swap


class SwapDriver:
    """One swap of ``sup`` to the release ``ref``; :meth:`run` returns its record or raises."""

    def __init__(
        self,
        sup: Supervisor,
        ref: str,
        how: str,
        sha256: str | None,
        *,
        allow_other_app: bool = False,
    ) -> None:
        self.sup = sup
        self.id = logsink.new_swap_id()  # in its log lines and its record
        self.allow_other_app = allow_other_app
        self.ref = ref
        self.how = how
        self.sha256 = sha256
        self.started_at = time.time()
        old = sup.active.number if sup.active is not None else None
        self.machine = swap.Swap(old=old, started=sup.clock.now())
        self.release: Release | None = None
        # the new generation stays readable, with its output, after it has left sup.generations
        self.gen: Generation | None = None
        self._queue: asyncio.Queue[swap.SwapEvent] = asyncio.Queue()
        self._timers: list[asyncio.Handle] = []

    def post(self, event: swap.SwapEvent) -> None:
        self._queue.put_nowait(event)

    def involves(self, gen: Generation) -> bool:
        return gen.number in (self.machine.new, self.machine.old)

    async def run(self, progress: Progress | None = None) -> dict[str, Any]:
        scope = logsink.open_swap(self.id)
        self.sup.log(logsink.swap_started(self.id, self.how, self.ref))
        try:
            return await self._drive(progress or (lambda _event: None))
        finally:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self.sup.log(logsink.swap_finished(self.id, self.sup.recent))
            scope.close()

    async def _drive(self, say: Progress) -> dict[str, Any]:
        machine = self.machine
        actions = machine.begin()
        last_phase = machine.phase
        say({"phase": last_phase.value, "state": "started"})
        while True:
            for action in actions:
                await self._perform(action)
            if machine.phase != last_phase:
                failed = machine.phase == swap.Phase.FAILED or (
                    last_phase == swap.Phase.COMMIT and machine.commit_error is not None
                )
                say(
                    {
                        "phase": last_phase.value,
                        "state": "failed" if failed else "done",
                        "ms": machine.timings.get(last_phase.value),
                    }
                )
                last_phase = machine.phase
                if not machine.finished:
                    say({"phase": last_phase.value, "state": "started"})
            if machine.finished:
                break
            event = await self._queue.get()
            actions = machine.handle(event, self.sup.clock.now())
        gen = self.gen
        killed = machine.phase == swap.Phase.FAILED and not machine.cut_over
        # the machine killed it: when the swap says it failed, nothing of it is left
        if (
            killed
            and gen is not None
            and not await self.sup.clock.wait(gen.exited, FAILED_EXIT_WAIT)
        ):
            self.sup.log(f"generation {gen.number} was killed but is not reported gone")
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        machine, sup = self.machine, self.sup
        record: dict[str, Any] = {
            "id": self.id,
            "how": self.how,
            "release": machine.release_id,
            "ref": self.ref,
            "ok": machine.phase == swap.Phase.DONE,
            "generation": machine.new,
            "from_generation": machine.old,
            "timings_ms": dict(machine.timings),
            "total_ms": round((sup.clock.now() - machine.started) * 1000, 3),
            "at": self.started_at,
        }
        if machine.notes:
            record["notes"] = list(machine.notes)
        if machine.cut_over:
            # not sup.active: the new generation may have died during the drain (after
            # cutover it is the restart policy's); the swap itself happened
            new = self.gen
            assert new is not None
            record["pid"] = new.pid
            if new.size > 1:
                record["pids"] = new.pids
            record["drain_killed"] = machine.drain_killed
            if machine.old is not None:
                new.send_nowait(
                    contract.OP_AFTER_CUTOVER, handoff=sup.handoff.get(BEFORE_CUTOVER_KEY)
                )
        sup.recent.appendleft(record)
        if machine.phase == swap.Phase.DONE:
            return record
        error = machine.error
        assert error is not None and error.code is not None
        output = self.gen.tail() if self.gen is not None else []
        details = {"phase": _failed_phase(machine), **error.details, "output": output}
        details["swap"] = self.id  # its id, as in recent and the log
        if self.gen is not None and self.gen.size > 1 and self.gen.failed_worker is not None:
            details.setdefault("worker", self.gen.failed_worker)
        record["error"] = {"code": error.code, "message": error.message}
        raise HotswapError.from_json(
            {"code": error.code, "message": error.message, "details": details}
        )

    async def _perform(self, action: swap.Action) -> None:
        """Perform one action; whatever it raises becomes an event of the machine."""
        try:
            await self._perform_one(action)
        except Exception as e:  # a bug or a broken resource, reported as such
            if isinstance(action, swap.Commit):
                self.post(swap.CommitFailed(f"{type(e).__name__}: {e}"))
            else:
                self.sup.log(f"{type(action).__name__} failed: {e!r}")
                self.post(_failure(e))

    async def _perform_one(self, action: swap.Action) -> None:
        sup = self.sup
        loop = asyncio.get_running_loop()
        match action:
            case swap.Unpack():
                release = await loop.run_in_executor(None, resolve, sup, self.ref, self.sha256)
                self._check_app(release)
                config = release.manifest.app_config()
                self.release = release
                self.post(
                    swap.Unpacked(
                        release.id,
                        boot_timeout=config.boot_timeout,
                        health_timeout=config.health_timeout,
                        shutdown_timeout=config.shutdown_timeout,
                        health_check=config.health_path is not None,
                    )
                )
            case swap.Spawn():
                target = self.release
                assert target is not None
                number = sup.next_generation
                sup.next_generation += 1
                if self.machine.old is not None:
                    # the old generation's before_cutover fills this in; no stale value may
                    # reach the new one (reset here, not between go and drain: a write + fsync)
                    sup.handoff.put(BEFORE_CUTOVER_KEY, None, reserved_ok=True)
                await self._spawn(number, target)
            case swap.SetDeadline(phase=phase, seconds=seconds):
                self._timers.append(sup.clock.call_later(seconds, self.post, swap.Deadline(phase)))
            case swap.Probe(generation=number):
                sup.spawn_task(self._probe(number))
            case swap.Cutover():
                await self._cutover(action)
            case swap.Kill(generation=number):
                victim = sup.generations.get(number)
                if victim is not None and victim.alive():
                    pids = ", ".join(str(c.pid) for c in victim.alive())
                    sup.log(f"killing generation {number} (pid {pids})")
                    victim.kill()
            case swap.Commit(release_id=release_id):
                if self.how != "restart":  # a restart serves what state.json already names
                    how = "blue-green" if self.how == "initial" else self.how
                    protect = sup.releases_in_use()
                    await loop.run_in_executor(
                        None,
                        lambda: sup.store.set_current(release_id, how=how, protect=protect),
                    )
                self.post(swap.Committed())
            case swap.Finish():
                pass  # read from the machine by _finish

    def _check_app(self, release: Release) -> None:
        """A blue-green upgrade to another app is a mistake more often than not: refused
        unless the caller says it means it."""
        serving = self.sup.active.release.manifest.name if self.sup.active else None
        name = release.manifest.name
        if self.how == "blue-green" and serving not in (None, name) and not self.allow_other_app:
            raise UsageError(
                "different_app",
                f"{release.id} is a release of {name!r}, and {serving!r} serves here: "
                "pass allow_other_app (hotswap upgrade --allow-other-app) to swap to it",
                serving=serving,
                release_app=name,
            )

    async def _spawn(self, number: int, release: Release) -> None:
        """Start every worker of generation ``number`` in parallel. What its workers say
        while they are spawned may reach the machine before ``Spawned`` does, where it does
        not apply yet: an exit or a readiness it missed is posted again after it."""
        sup = self.sup
        size = sup.worker_count(release)
        gen = Generation(
            number=number,
            release=release,
            size=size,
            started_mono=sup.clock.now(),
            started_wall=time.time(),
        )
        gen.arm_policies(sup.policy)
        sup.generations[number] = gen
        self.gen = gen  # its workers' news reaches the machine from now on
        outgoing = sup.active.info() if sup.active is not None else None

        async def one(index: int) -> None:
            child = await sup.children.spawn_worker(number, index, size, release, outgoing)
            gen.workers[index] = child  # before its first event can be read

        results = await asyncio.gather(*(one(i) for i in range(size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            gen.kill()
            if not gen.children():
                sup.generations.pop(number, None)
                gen.exited.set()
            raise errors[0]
        pids = ", ".join(map(str, gen.pids))
        workers = f"{size} workers, pids" if size > 1 else "pid"
        message = f"generation {number} started ({workers} {pids}) from {release.id}"
        sup.log(logsink.Entry("generation_started", message, generation=number, pids=gen.pids))
        self.post(swap.Spawned(number))
        gone = next((c for c in gen.children() if c.exited.is_set()), None)
        if gone is not None:  # a worker died before the machine could hear of it
            worker = gone.worker if size > 1 else None
            self.post(swap.Exited(number, gone.returncode, worker))
        elif gen.state is GenState.READY:  # every worker was ready before it was ours
            gen.announced_ready = True
            self.post(swap.Ready(number))

    async def _cutover(self, action: swap.Cutover) -> None:
        """Every worker of the new generation starts accepting (``go``), then every worker
        of the old one drains."""
        sup = self.sup
        new = sup.generations.get(action.new)
        if new is None or len(new.alive()) < new.size:
            self.post(swap.Failed("boot_failed", f"generation {action.new} is gone"))
            return
        workers = new.alive()
        answers = await asyncio.gather(
            *(c.request(contract.OP_GO, timeout=contract.GO_TIMEOUT) for c in workers),
            return_exceptions=True,
        )
        for child, answer in zip(workers, answers, strict=True):
            if isinstance(answer, BaseException):
                new.failed_worker = child.worker
                self.post(swap.Failed("boot_failed", f"{child.name} refused go: {answer}"))
                return
        new.move(GenState.LIVE)
        old = sup.active
        sup.activate(new)
        if action.old is not None and old is not None and old.number == action.old:
            old.move(GenState.DRAINING)
            old.send_nowait(contract.OP_DRAIN, incoming=new.info())
        self.post(swap.CutoverDone())

    async def _probe(self, number: int) -> None:
        """Probe every worker's private socket at once: Healthy when all pass, Unhealthy
        (naming the worker) at the first that does not."""
        sup = self.sup
        gen = sup.generations.get(number)
        if gen is None:
            return
        app = gen.release.manifest.app_config()
        path = app.health_path or "/"
        results = await asyncio.gather(
            *(self._probe_one(c, path, app.health_host) for c in gen.alive())
        )
        if any(why is GONE for _child, why in results):
            return
        failures = [(child, why) for child, why in results if why is not None]
        if not failures and len(results) == gen.size:
            self.post(swap.Healthy(number))
        elif failures:
            child, why = failures[0]
            if gen.failed_worker is None:
                gen.failed_worker = child.worker
            where = f"worker {child.worker}: " if gen.size > 1 else ""
            self.post(swap.Unhealthy(number, f"{where}{why}"))

    async def _probe_one(self, child: Child, path: str, host: str) -> tuple[Child, str | None]:
        """``(child, None)`` if its probe passed, else why not; a worker whose connection
        broke because it died is left to its exit (boot_failed, with its status)."""
        sup = self.sup
        try:
            status = await sup.children.probe(child, path, host)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            if await sup.clock.wait(child.exited, PROBE_EXIT_GRACE):
                return child, GONE
            return child, f"GET {path}: {type(e).__name__}: {e}"
        if 200 <= status < 300:
            return child, None
        hint = (
            f" (the probe sends Host: {host}: allow it, e.g. Django's "
            "ALLOWED_HOSTS or a trusted-host middleware, or set health_host)"
            if status == 400
            else ""
        )
        return child, f"GET {path} answered {status}{hint}"


def resolve(sup: Supervisor, ref: str, sha256: str | None) -> Release:
    """The release ``ref`` names: a tarball (verified and unpacked) or an id in the store."""
    if not is_tarball_ref(ref):
        return sup.store.get(ref)
    return sup.store.unpack(Path(ref), expected_sha256=sha256)


def _failure(e: Exception) -> swap.Failed:
    """The machine's failure event for an exception an action raised."""
    if isinstance(e, HotswapError):
        return swap.Failed(e.code, e.message, e.details)
    code = "io_error" if isinstance(e, OSError) else "supervisor_failed"
    return swap.Failed(code, f"{type(e).__name__}: {e}")


def _failed_phase(machine: swap.Swap) -> str:
    finished = list(machine.timings)
    return finished[-1] if finished else swap.Phase.UNPACK.value
