"""The supervisor's clock: a monotonic ``now()`` and timers, read from the running event loop.

Every deadline and delay in the supervisor goes through a :class:`Clock` (no ``time.monotonic()``
and no ``loop.call_later`` of its own), so a test that runs the supervisor on
:class:`hotswap.testing.VirtualClock`'s loop drives time explicitly, as trio's
``MockClock(autojump_threshold=0)`` does: when nothing is runnable, time jumps to the next
timer, and a 30 s drain deadline passes in microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Clock:
    """Monotonic seconds and timers of the running loop."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; whether it was set."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_for(self, awaitable: asyncio.Future[T], timeout: float | None) -> T:
        """``awaitable``'s result, or TimeoutError after ``timeout`` seconds (it is then
        cancelled)."""
        return await asyncio.wait_for(awaitable, timeout)
