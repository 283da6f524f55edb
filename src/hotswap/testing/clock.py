"""Virtual time for asyncio tests: an event loop whose clock jumps to the next timer when idle.

``VirtualClock().run(main())`` runs ``main`` on a loop whose ``time()`` starts at 0 and only
moves when nothing can run: then it jumps straight to the next scheduled timer (trio's
``MockClock(autojump_threshold=0)``). ``asyncio.sleep(30)``, ``wait_for(..., 60)`` and the
supervisor's deadlines take no real time, and their order is exactly the one they would have
in real time. Real I/O still works (the loop polls it without waiting before each jump), and
time never jumps while work handed to an executor thread is in flight.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return list(super().select(0))
        if self._clock.in_flight:  # an executor job will wake us: wait for it for real
            return list(super().select(timeout if timeout is None else min(timeout, 0.05)))
        ready = list(super().select(0))
        if ready or timeout is None:
            return ready or list(super().select(None))
        self._clock.jump(timeout)
        return []


class _Loop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_Selector(clock))
        self._virtual = clock

    def time(self) -> float:
        return self._virtual.now

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._virtual.in_flight += 1

        def done(_future: asyncio.Future[T]) -> None:
            self._virtual.in_flight -= 1

        future.add_done_callback(done)
        return future


class VirtualClock:
    """Virtual monotonic time, autojumping. ``now`` is in seconds since the loop started."""

    def __init__(self) -> None:
        self.now = 0.0
        self.in_flight = 0
        self.jumps = 0

    def jump(self, seconds: float) -> None:
        self.now += seconds
        self.jumps += 1

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return _Loop(self)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on a fresh virtual-time loop."""
        with asyncio.Runner(loop_factory=self.new_loop) as runner:
            return runner.run(main)
