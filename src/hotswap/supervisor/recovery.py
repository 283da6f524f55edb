"""What the supervisor does when the active generation's processes die outside an upgrade.

- A worker dies while the others serve: it is restarted alone, from its generation's release,
  on its own backoff (:func:`~.restarts.keep_restarting`). Its replacement is gated as a swap
  gates a generation (ready, then its health probe on its private socket, then ``go``) before
  it accepts a public connection.
- The last worker dies (with one worker: the generation dies): if that happens within
  ``stability_window`` seconds of the cutover that made it active, the release it replaced is
  brought back (an automatic rollback, ``how: auto-rollback``); otherwise the current release
  is restarted blue-green, with backoff.
- A worker that exits with the startup-failure status (``contract.STARTUP_FAILURE``) is not
  respawned, as uvicorn does: the supervisor gives up (exit status 1, so systemd or the like
  restarts the whole supervisor). So does it after too many restarts in a window.
- A worker that crashes (an exit status, a segfault: not SIGKILL or SIGTERM from outside, as
  the OOM killer or an operator sends) within the stability window of a blue-green cutover
  rolls the whole generation back, as the death of the generation would; one killed from
  outside is restarted alone.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.errors import ChildError, HotswapError
from hotswap.supervisor.generation import Generation
from hotswap.supervisor.lifecycle import GenState
from hotswap.supervisor.logsink import Entry
from hotswap.supervisor.process import Child
from hotswap.supervisor.restarts import keep_restarting

if TYPE_CHECKING:
    from hotswap.supervisor.core import Supervisor


KILLED_FROM_OUTSIDE = (signal.SIGKILL, signal.SIGTERM)  # the OOM killer, an operator


def crashed(returncode: int | None) -> bool:
    """Did the app die by itself (an exit status, a segfault, an abort), rather than being
    killed from outside? Only the first says something about the release."""
    return returncode is None or returncode >= 0 or -returncode not in KILLED_FROM_OUTSIDE


class Recovery:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self._task: asyncio.Task[None] | None = None  # a generation restart or rollback
        self._workers: dict[tuple[int, int], asyncio.Task[None]] = {}  # (gen, index)
        self._waiting: dict[int, asyncio.Future[None]] = {}  # id(child): its readiness
        self._cutover: tuple[int, float, str, str | None] | None = None  # gen, at, how, from

    def cutover(self, gen: Generation, how: str, previous: str | None) -> None:
        """``gen`` became active (a swap of kind ``how`` from release ``previous``)."""
        self._cutover = (gen.number, self.sup.clock.now(), how, previous)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in self._workers.values():
            task.cancel()

    # -- one worker ----------------------------------------------------------------------

    def worker_died(self, gen: Generation, child: Child) -> None:
        """A live worker of the active generation died; the others still serve."""
        sup = self.sup
        if self._startup_failure(child.name, child.returncode):
            return
        previous = self._rollback_target(gen)
        if previous is not None and crashed(child.returncode):
            self._start(self._auto_rollback(gen, previous, why=child.name))
            return
        key = (gen.number, child.worker)
        if key in self._workers and not self._workers[key].done():
            return
        uptime = sup.clock.now() - child.started_mono
        task = asyncio.create_task(self._restart_worker(gen, child.worker, uptime))
        self._workers[key] = task
        task.add_done_callback(lambda _t: self._workers.pop(key, None))

    def worker_ready(self, child: Child) -> None:
        waiter = self._waiting.get(id(child))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def worker_failed(self, child: Child) -> None:
        waiter = self._waiting.get(id(child))
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                ChildError(
                    "boot_failed",
                    f"{child.name} exited before it was ready (exit status {child.returncode})",
                    returncode=child.returncode,
                    output=child.tail(),
                )
            )

    async def _restart_worker(self, gen: Generation, index: int, uptime: float) -> None:
        sup = self.sup
        name = f"generation {gen.number} worker {index}"
        await keep_restarting(
            name,
            restarting="{what} died: restarting it in {delay:g}s",
            giving_up="{what} keeps dying: too many restarts, giving up (exit status 1)",
            policy=gen.policies[index],
            clock=sup.clock,
            uptime=uptime,
            settled=lambda: self._settled(gen, index),
            start=lambda: self._start_worker(gen, index),
            give_up=lambda: sup.stop(exit_code=contract.GIVE_UP),
            log=sup.log,
            idle=sup.idle.wait,
        )

    def _settled(self, gen: Generation, index: int) -> bool:
        current = gen.workers[index]
        serving = current is not None and current.state is GenState.LIVE
        return self.sup.stopping or gen is not self.sup.active or serving

    async def _start_worker(self, gen: Generation, index: int) -> None:
        """Spawn worker ``index`` of ``gen`` again and gate it: ready, healthy, then go."""
        sup = self.sup
        app = gen.release.manifest.app_config()
        loop = asyncio.get_running_loop()
        child = await sup.children.spawn_worker(gen.number, index, gen.size, gen.release, None)
        gen.workers[index] = child
        started = f"{child.name} started (pid {child.pid}) from {gen.release.id}"
        sup.log(
            Entry(
                "worker_started",
                started,
                worker=index,
                generation=gen.number,
                pid=child.pid,
                release=gen.release.id,
            )
        )
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting[id(child)] = waiter
        try:
            try:
                await sup.clock.wait_for(waiter, app.boot_timeout)
            except TimeoutError:
                raise ChildError(
                    "not_ready", f"{child.name} was not ready within {app.boot_timeout:g}s"
                ) from None
            if app.health_path is not None:
                await self._probe(child, app.health_path, app.health_host, app.health_timeout)
            if gen is not sup.active or gen.state is not GenState.LIVE:
                raise ChildError("not_running", f"generation {gen.number} is not active any more")
            await child.request(contract.OP_GO, timeout=contract.GO_TIMEOUT)
        except BaseException:
            child.kill()
            raise
        finally:
            self._waiting.pop(id(child), None)
        child.move(GenState.LIVE)
        gen.restarts[index] += 1
        again = f"{child.name} serves again (restart {gen.restarts[index]})"
        restarts = gen.restarts[index]
        sup.log(
            Entry("worker_serving", again, worker=index, generation=gen.number, restarts=restarts)
        )

    async def _probe(self, child: Child, path: str, host: str, timeout: float) -> None:
        try:
            status = await self.sup.clock.wait_for(
                asyncio.ensure_future(self.sup.children.probe(child, path, host)), timeout
            )
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as e:
            raise ChildError(
                "health_failed", f"{child.name} failed its health probe: {type(e).__name__}: {e}"
            ) from None
        if not 200 <= status < 300:
            raise ChildError(
                "health_failed",
                f"{child.name} failed its health probe: GET {path} answered {status}",
            )

    # -- the whole generation ------------------------------------------------------------

    def active_died(self, dead: Generation) -> None:
        """The active generation's last worker exited."""
        sup = self.sup
        for (number, _index), task in list(self._workers.items()):
            if number == dead.number:
                task.cancel()
        if self._task is not None and not self._task.done():
            return
        uptime = sup.clock.now() - dead.started_mono
        if self._startup_failure(f"generation {dead.number}", dead.returncode):
            return
        previous = self._rollback_target(dead)
        if previous is not None:
            self._start(self._auto_rollback(dead, previous))
        else:
            self._start(self._restart(uptime))

    def _startup_failure(self, who: str, returncode: int | None) -> bool:
        """A process that exited with the startup-failure status is not respawned: give up."""
        if returncode != contract.STARTUP_FAILURE:
            return False
        self.sup.log(
            f"{who} exited with the startup-failure status "
            f"({contract.STARTUP_FAILURE}): not respawned, giving up (exit status 1)"
        )
        self.sup.stop(exit_code=contract.GIVE_UP)
        return True

    def _start(self, coro: Any) -> None:
        if self._task is not None and not self._task.done():
            coro.close()
            return
        self._task = asyncio.create_task(coro)

    def _rollback_target(self, dead: Generation) -> str | None:
        """The release to go back to if ``dead`` died within the stability window of the
        cutover that brought it in (never for a restart or a rollback of its own)."""
        if self._cutover is None:
            return None
        number, at, how, previous = self._cutover
        if number != dead.number or how not in ("blue-green", "rollback") or previous is None:
            return None
        if self.sup.clock.now() - at >= self.sup.stability_window:
            return None
        return None if previous == dead.release.id else previous

    async def _auto_rollback(self, dead: Generation, previous: str, why: str = "") -> None:
        sup = self.sup
        who = why or f"generation {dead.number}"
        message = (
            f"{who} ({dead.release.id}) died within the stability window "
            f"({sup.stability_window:g}s after its cutover): rolling back to {previous}"
        )
        sup.log(Entry("auto_rollback", message, level="warning", generation=dead.number))
        await sup.idle.wait()
        if sup.stopping or (sup.active is not None and sup.active is not dead):
            return
        try:
            await sup.upgrade(previous, how="auto-rollback")
        except HotswapError as e:
            sup.log(f"automatic rollback failed: {e}")
            if sup.active is None:
                await self._restart(0.0)

    async def _restart(self, uptime: float) -> None:
        sup = self.sup

        async def start() -> None:
            await sup.upgrade(str(sup.store.read_state()["current"]), how="restart")

        await keep_restarting(
            "the active generation",
            restarting="active generation died: restarting the current release in {delay:g}s",
            giving_up="the app keeps dying: too many restarts, giving up (exit status 1)",
            policy=sup.policy,
            clock=sup.clock,
            uptime=uptime,
            settled=lambda: sup.active is not None or sup.stopping,
            start=start,
            give_up=lambda: sup.stop(exit_code=contract.GIVE_UP),
            log=sup.log,
            idle=sup.idle.wait,
        )
