"""Restarting what died outside an upgrade: one loop, for the active generation and services.

The :class:`~.policy.RestartPolicy` decides the delay (backoff) or that it is time to give up;
this loop waits it out on the supervisor's clock and tries again. A child that fails with the
startup-failure exit code (``contract.STARTUP_FAILURE``: it could not even start) is not
respawned, as uvicorn does: trying the same thing again would fail the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hotswap.contract import STARTUP_FAILURE
from hotswap.errors import HotswapError
from hotswap.supervisor.clock import Clock
from hotswap.supervisor.logsink import Entry
from hotswap.supervisor.policy import RestartPolicy


async def keep_restarting(
    what: str,
    *,
    policy: RestartPolicy,
    clock: Clock,
    uptime: float,
    settled: Callable[[], bool],
    start: Callable[[], Awaitable[object]],
    give_up: Callable[[], None],
    log: Callable[[str], None],
    idle: Callable[[], Awaitable[object]] | None = None,
    restarting: str = "{what} died: restarting it in {delay:g}s",
    giving_up: str = "{what} keeps dying: too many restarts, giving up (exit status 1)",
) -> None:
    """Restart ``what`` (which died after ``uptime`` seconds) with ``start()`` until it runs.

    ``settled()`` is re-read after every await: something else (an upgrade, a shutdown) may
    have made the restart moot meanwhile. ``idle()``, if given, waits for an upgrade under way
    to end before a restart starts (one upgrade at a time). ``restarting`` and ``giving_up``
    are the log lines (formatted with ``what`` and ``delay``)."""
    while not settled():
        delay = policy.on_exit(clock.now(), uptime)
        if delay is None:
            log(Entry("gave_up", giving_up.format(what=what), level="error", what=what))
            give_up()
            return
        message = restarting.format(what=what, delay=delay)
        log(Entry("restart_scheduled", message, level="warning", what=what, delay_s=delay))
        await clock.sleep(delay)
        if idle is not None:
            await idle()
        if settled():
            return
        try:
            await start()
            return
        except HotswapError as e:
            if e.details.get("returncode") == STARTUP_FAILURE:
                log(
                    f"{what} failed to start (exit status {STARTUP_FAILURE}, startup failure): "
                    "not respawned, giving up (exit status 1)"
                )
                give_up()
                return
            message = f"restarting {what} failed: {e}"
            log(Entry("restart_failed", message, level="error", code=e.code))
            uptime = 0.0
