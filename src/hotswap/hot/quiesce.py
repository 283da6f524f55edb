"""Quiescence: Python's answer to ``sys:suspend`` — a moment when no request runs app code.

CPython cannot pause a thread from outside, and an asyncio task pauses only at ``await``. So:

- **asyncio servers**: the commit runs *on the event-loop thread*, as one callback
  (``loop.call_soon_threadsafe`` + wait). While it runs no task can take a step, so no task sees
  a half-applied upgrade. A task suspended at an ``await`` inside a handler resumes in the code it
  started with and runs new code from its next call.
- **threaded servers**: request handlers pass through an :class:`UpgradeGate` (``with gate:``
  or ``async with gate:``). The upgrade closes it: new requests wait at the gate, requests inside
  finish; when none is left the commit runs, then the gate reopens. The gate works for
  coroutines too, so an asyncio server can also drain in-flight requests before the loop step.

Either way, if quiescence is not reached within ``suspend_timeout`` the upgrade is aborted with
nothing changed (:class:`QuiesceTimeout`). During the commit the interpreter's switch interval is
raised so threads that do not use the gate (background workers) are very unlikely to be scheduled
mid-commit; they are not stopped, and a thread blocked in I/O may still run when it wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("hotswap_gate_depth", default=0)


class QuiesceTimeout(Exception):
    """In-flight work did not finish (or the loop did not answer) within ``suspend_timeout``."""


class UpgradeGate:
    """An admission gate request handlers pass through; a hot upgrade closes it to drain them.

    ``with gate:`` in a thread, ``async with gate:`` in a coroutine. Re-entering inside a unit of
    work never waits (a handler calling another gated function, or the upgrade being started from
    inside a gated request, cannot deadlock).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._waiting = 0
        self._closed = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def in_flight(self) -> int:
        return self._active

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        """Units of work held at the gate while it is closed."""
        return self._waiting

    def wait_until(self, predicate: Callable[[UpgradeGate], bool], timeout: float) -> bool:
        """Block until ``predicate(gate)`` holds (re-checked on every change of the gate's state)
        or ``timeout`` seconds pass; returns whether it holds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    # -- handlers -------------------------------------------------------------------------------

    def enter(self) -> None:
        depth = _DEPTH.get()
        with self._cond:
            if depth == 0 and self._closed:
                self._waiting += 1
                self._cond.notify_all()
                self._cond.wait_for(lambda: not self._closed)
                self._waiting -= 1
            self._active += 1
            self._cond.notify_all()
        _DEPTH.set(depth + 1)

    def exit(self) -> None:
        _DEPTH.set(max(_DEPTH.get() - 1, 0))
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def __enter__(self) -> UpgradeGate:
        self.enter()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exit()

    async def __aenter__(self) -> UpgradeGate:
        depth = _DEPTH.get()
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if depth > 0 or not self._closed:
                    self._active += 1
                    self._cond.notify_all()
                    break
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
                self._waiting += 1
                self._cond.notify_all()
            try:
                await fut
            finally:
                with self._cond:
                    self._waiting -= 1
        _DEPTH.set(depth + 1)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exit()

    # -- the upgrade ----------------------------------------------------------------------------

    @contextmanager
    def closed_for(
        self, timeout: float, *, clock: Callable[[], float] = time.monotonic
    ) -> Iterator[None]:
        """Close the gate and wait until nothing is in flight (but the caller's own units), for at
        most ``timeout`` seconds; reopen on exit. Raises :class:`QuiesceTimeout` (gate reopened)."""
        own = _DEPTH.get()
        deadline = clock() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            try:
                while self._active > own:
                    left = deadline - clock()
                    if left <= 0:
                        raise QuiesceTimeout(
                            f"{self._active - own} request(s) still in flight after {timeout:g}s"
                        )
                    self._cond.wait(left)
            except BaseException:
                self._open_locked()
                raise
        try:
            yield
        finally:
            with self._cond:
                self._open_locked()

    def _open_locked(self) -> None:
        self._closed = False
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(_wake, fut)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def run_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` on ``loop``'s thread as one callback and return its result.

    If the loop does not start the callback within ``timeout`` (blocked, stopped), the callback
    is cancelled so that it can never run later, and :class:`QuiesceTimeout` is raised. Called
    from the loop's own thread, ``fn`` simply runs (nothing else can run meanwhile anyway).
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return fn()
    lock = threading.Lock()
    state = {"phase": "pending"}
    started = threading.Event()
    done = threading.Event()
    box: dict[str, Any] = {}

    def callback() -> None:
        with lock:
            if state["phase"] != "pending":
                return
            state["phase"] = "running"
        started.set()
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError as exc:  # closed loop
        raise QuiesceTimeout(f"event loop unavailable: {exc}") from None
    if not started.wait(timeout):
        with lock:
            if state["phase"] == "pending":
                state["phase"] = "cancelled"
                raise QuiesceTimeout(f"event loop did not run the upgrade within {timeout:g}s")
    done.wait()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


@contextmanager
def sticky_gil(seconds: float = 0.5) -> Iterator[None]:
    """Raise the switch interval so other threads are not scheduled mid-commit."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(max(old, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class Quiescence:
    """How this process reaches quiescence: an event loop, a gate, both, or neither."""

    def __init__(
        self, *, loop: asyncio.AbstractEventLoop | None = None, gate: UpgradeGate | None = None
    ) -> None:
        self.loop = loop
        self.gate = gate

    def run(
        self, fn: Callable[[], T], timeout: float, *, clock: Callable[[], float] = time.monotonic
    ) -> T:
        """Run ``fn`` once the process is quiescent; ``timeout`` bounds the wait, not ``fn``."""
        start = clock()
        if self.gate is not None:
            with self.gate.closed_for(timeout, clock=clock):
                return self._run_loop(fn, max(timeout - (clock() - start), 0.0))
        return self._run_loop(fn, timeout)

    def _run_loop(self, fn: Callable[[], T], timeout: float) -> T:
        def guarded() -> T:
            with sticky_gil():
                return fn()

        if self.loop is not None:
            return run_on_loop(self.loop, guarded, timeout)
        return guarded()


_default = Quiescence()


def set_quiescence(
    *, loop: asyncio.AbstractEventLoop | None = None, gate: UpgradeGate | None = None
) -> None:
    """Tell the hot upgrader how this process quiesces (called by server adapters at start-up);
    used by :func:`hotswap.hot.hot_upgrade` when the caller passes neither ``loop`` nor ``gate``."""
    global _default
    _default = Quiescence(loop=loop, gate=gate)


def default_quiescence() -> Quiescence:
    return _default
