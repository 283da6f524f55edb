"""Routing what children say: a worker's news becomes its generation's, and the swap's.

The :class:`~.children.Children` seam reports per process (``on_event(child, ...)``,
``on_exit(child)``). A swap gates whole generations, so this is where N workers' news is
folded into one: the new generation is ``Ready`` once every worker is ready; before cutover
the first worker to exit or break its channel fails the whole generation (it is killed, the
old one serves on); the old generation has ``Exited`` once its last worker has. After cutover
a worker of the active generation that dies goes to :mod:`.recovery`, which restarts it alone;
when the last one goes, the active generation has died. Service processes go to
:class:`~.services.ServiceManager`.
"""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.control.protocol import VERSION
from hotswap.supervisor import logsink
from hotswap.supervisor import swap as swap_machine
from hotswap.supervisor.generation import Generation
from hotswap.supervisor.handoff import BEFORE_CUTOVER_KEY
from hotswap.supervisor.lifecycle import GenState, on_exit
from hotswap.supervisor.process import Child

if TYPE_CHECKING:
    from hotswap.supervisor.core import Supervisor

BEFORE_LIVE = (GenState.STARTING, GenState.READY)


# a hot upgrade's events from a worker -> the key of sup.hot whose futures (by id of the
# worker) they resolve
_HOT_WAITERS = {
    contract.EVENT_HOT_APPLIED: "applied",
    contract.EVENT_HOT_ANALYZED: "analyzed",
    contract.EVENT_HOT_TURN_DONE: "turn_done",
}


def exit_status(code: int | None) -> str:
    """``1``, or ``-9 (killed by SIGKILL)``."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} (killed by {signal.Signals(-code).name})"
    return str(code)


def is_new(sup: Supervisor, gen: Generation) -> bool:
    """Is ``gen`` the new generation of the swap under way (set before its workers spawn)."""
    return sup.swapping is not None and sup.swapping.gen is gen


def post(sup: Supervisor, event: swap_machine.SwapEvent) -> None:
    if sup.swapping is not None:
        sup.swapping.post(event)


def announce_ready(sup: Supervisor, gen: Generation) -> None:
    """Tell the swap its new generation is ready, once, when every worker is."""
    if not gen.announced_ready and gen.state is GenState.READY and is_new(sup, gen):
        gen.announced_ready = True
        post(sup, swap_machine.Ready(gen.number))


def fail_before_cutover(sup: Supervisor, gen: Generation, child: Child) -> None:
    """One worker of a generation that is not live yet failed: the whole generation goes
    (all-or-nothing readiness); the first such worker is the one its error names."""
    if gen.failed_worker is None:
        gen.failed_worker = child.worker
    gen.kill()


def handle_event(sup: Supervisor, child: Child, name: str, data: dict[str, Any]) -> None:
    if child.service is not None:
        sup.services.on_event(child, name, data)
        return
    gen = sup.generations.get(child.number)
    if gen is None or not gen.is_slot(child):
        return
    if name == contract.EVENT_HELLO:
        child.hello = data
        if data.get("protocol") != VERSION:
            message = (
                f"{child.name} speaks control protocol {data.get('protocol')!r} "
                f"(hotswap {data.get('hotswap')}), this supervisor {VERSION}"
            )
            sup.log(message)
            if is_new(sup, gen):
                post(sup, swap_machine.Failed("version_mismatch", message))
            if gen.state in BEFORE_LIVE:
                fail_before_cutover(sup, gen, child)
            child.kill()
    elif name == contract.EVENT_READY:
        startup = data.get("startup")
        if isinstance(startup, dict):
            child.startup = startup
        if child.state is GenState.STARTING:
            child.move(GenState.READY)
        if gen.state is GenState.STARTING and gen.all_ready():
            gen.move(GenState.READY)
            announce_ready(sup, gen)
        elif gen.state is GenState.LIVE:
            sup.recovery.worker_ready(child)
    elif name == contract.EVENT_BEFORE_CUTOVER and gen.state is GenState.DRAINING:
        if child.worker != 0:
            return  # every worker runs the hook; the first one's result is handed over
        try:
            sup.handoff.put(BEFORE_CUTOVER_KEY, data.get("result"), reserved_ok=True)
        except Exception as e:  # refused, or the disk is full: the swap goes on
            sup.log(f"generation {gen.number}'s before_cutover result refused: {e}")
    elif name in _HOT_WAITERS and sup.hot is not None:
        waiter = sup.hot.get(_HOT_WAITERS[name], {}).get(id(child))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
    elif name == contract.EVENT_PROTOCOL_ERROR:
        error = data.get("error") or {}
        sup.log(f"{child.name}: {error.get('message')}")
        if is_new(sup, gen):  # the machine knows whether it still matters
            code = str(error.get("code", "protocol_error"))
            where = f"{child.name}: " if gen.size > 1 else ""
            post(sup, swap_machine.Failed(code, f"{where}{error.get('message')}"))
        if gen.state in BEFORE_LIVE:
            fail_before_cutover(sup, gen, child)
        child.kill()


def handle_exit(sup: Supervisor, child: Child) -> None:
    if child.service is not None:
        sup.services.on_exit(child)
        return
    child.close()
    was = child.state
    child.state = on_exit(child.state)
    child.exited_mono = sup.clock.now()
    child.exited.set()
    message = f"{child.name} (pid {child.pid}) exited with status {exit_status(child.returncode)}"
    fields: dict[str, Any] = {"generation": child.number, "pid": child.pid}
    fields["status"] = child.returncode
    level = "info" if child.returncode == 0 else "warning"
    sup.log(logsink.Entry("generation_exited", message, worker=child.worker, level=level, **fields))
    gen = sup.generations.get(child.number)
    if gen is None:
        return
    if gen.is_slot(child):
        gen.returncode = child.returncode
        if gen.state in BEFORE_LIVE:
            fail_before_cutover(sup, gen, child)
            if is_new(sup, gen):
                worker = child.worker if gen.size > 1 else None
                post(sup, swap_machine.Exited(gen.number, child.returncode, worker))
        elif gen.state is GenState.LIVE and gen is sup.active and not sup.stopping:
            if was in BEFORE_LIVE:
                sup.recovery.worker_failed(child)  # a restart that did not come up
            elif gen.alive():
                sup.recovery.worker_died(gen, child)
    if not gen.alive():
        _generation_gone(sup, gen)


def _generation_gone(sup: Supervisor, gen: Generation) -> None:
    """The last worker of ``gen`` has exited."""
    sup.generations.pop(gen.number, None)
    gen.state = on_exit(gen.state)
    gen.exited.set()
    if len(gen.workers) > 1:
        sup.log(f"generation {gen.number}: every worker has exited")
    if sup.swapping is not None and sup.swapping.involves(gen):
        post(sup, swap_machine.Exited(gen.number, gen.returncode))
    if gen is sup.active:
        sup.active = None
        if not sup.stopping:
            sup.recovery.active_died(gen)
    if not sup.generations:
        sup.none_left.set()
