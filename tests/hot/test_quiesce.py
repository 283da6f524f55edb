"""Quiescence: the commit never interleaves with request code.

Threads pass an :class:`UpgradeGate`: in-flight requests finish (on the old code), new ones wait,
and an upgrade that cannot drain within ``suspend_timeout`` aborts with nothing changed. On an
event loop the commit is one callback on the loop thread, so no task takes a step during it.
No test sleeps: every wait is on an event, a gate condition or a loop round-trip, with a deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from hotswap.errors import ChildError
from hotswap.hot import HotUpgrade, UpgradeGate, hot_upgrade, hot_upgrade_async
from hotswap.hot.quiesce import Quiescence, run_on_loop
from tests.hot import snapshot
from tests.hot.conftest import Hot

HANDLER_V1 = """
    def version():
        return "v1"

    def handle(started, proceed):
        started.set()
        proceed.wait(10)
        return version() + "-handled"
"""


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, name="test-loop")
    thread.start()
    try:
        yield lp
    finally:
        lp.call_soon_threadsafe(lp.stop)
        thread.join(10)
        lp.close()


def _thread(target: object) -> tuple[threading.Thread, Future[object]]:
    fut: Future[object] = Future()

    def run() -> None:
        try:
            fut.set_result(target())  # type: ignore[operator]
        except BaseException as exc:
            fut.set_exception(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, fut


def test_gate_drains_in_flight_requests_and_holds_new_ones(hot: Hot) -> None:
    v2 = HANDLER_V1.replace('"v1"', '"v2"')
    r1, r2, (h,) = hot.v1_v2({"h.py": HANDLER_V1}, {"h.py": v2}, "h")
    gate = UpgradeGate()
    started, proceed = threading.Event(), threading.Event()

    def in_flight() -> object:
        with gate:
            return h.handle(started, proceed)

    t1, first = _thread(in_flight)
    assert started.wait(5)
    t2, upgrade = _thread(lambda: hot_upgrade(r2, current=r1, gate=gate, suspend_timeout=10))
    assert gate.wait_until(lambda g: g.closed, 5)

    def new_request() -> object:
        with gate:
            return h.version()

    t3, later = _thread(new_request)
    assert gate.wait_until(lambda g: g.waiting == 1, 5)  # held at the gate
    assert h.version() == "v1" and not upgrade.done()  # nothing committed while one is in flight
    proceed.set()
    assert first.result(5) == "v1-handled"  # the in-flight request finished on the old code
    stats = upgrade.result(10)
    assert later.result(5) == "v2"  # the held request ran after the commit
    assert stats.window_ms < 1000 and stats.quiesce_ms > 0
    for t in (t1, t2, t3):
        t.join(5)


def test_gate_timeout_aborts_with_nothing_changed(hot: Hot) -> None:
    v2 = HANDLER_V1.replace('"v1"', '"v2"')
    r1, r2, (h,) = hot.v1_v2({"h.py": HANDLER_V1}, {"h.py": v2}, "h")
    gate = UpgradeGate()
    started, proceed = threading.Event(), threading.Event()

    def stuck() -> object:
        with gate:
            return h.handle(started, proceed)

    t, _ = _thread(stuck)
    assert started.wait(5)
    before = snapshot.take(hot.pkg)
    with pytest.raises(ChildError) as err:
        hot_upgrade(r2, current=r1, gate=gate, suspend_timeout=0.2)
    assert err.value.code == "hot_upgrade_failed" and err.value.details["step"] == "quiesce"
    assert "nothing was changed" in err.value.message
    assert before == snapshot.take(hot.pkg)
    assert not gate.closed
    with gate:  # new requests are admitted again
        assert h.version() == "v1"
    proceed.set()
    t.join(5)
    hot.upgrade(r2)  # and the same upgrade succeeds once it can drain
    assert h.version() == "v2"


def test_upgrade_started_inside_a_gated_request_does_not_deadlock(hot: Hot) -> None:
    r1, r2, (h,) = hot.v1_v2({"h.py": HANDLER_V1}, {"h.py": HANDLER_V1.replace("v1", "v2")}, "h")
    gate = UpgradeGate()
    with gate:
        hot_upgrade(r2, current=r1, gate=gate, suspend_timeout=5)
    assert h.version() == "v2"


PAIR_V1 = {
    "a.py": "def ver():\n    return 'v1'\n",
    "b.py": "def ver():\n    return 'v1'\n",
}
PAIR_V2 = {
    "a.py": "def ver():\n    return 'v2'\n",
    "b.py": "def ver():\n    return 'v2'\n",
}


def test_asyncio_commit_runs_on_the_loop_as_one_step(
    hot: Hot, loop: asyncio.AbstractEventLoop
) -> None:
    r1, r2, (a, b) = hot.v1_v2(PAIR_V1, PAIR_V2, "a", "b")
    state = {"steps": 0, "stop": False}
    mixed: list[tuple[str, str]] = []
    seen_v2 = threading.Event()

    async def worker() -> None:
        while not state["stop"]:
            pair = (a.ver(), b.ver())  # no await between the two calls
            if pair[0] != pair[1]:
                mixed.append(pair)
            if pair == ("v2", "v2"):
                seen_v2.set()
            state["steps"] += 1
            await asyncio.sleep(0)

    tasks = [asyncio.run_coroutine_threadsafe(worker(), loop) for _ in range(4)]
    loop_thread = run_on_loop(loop, threading.get_ident, 5)
    marks: list[tuple[int, object]] = []
    up = HotUpgrade(
        r1, r2, checkpoint=lambda s: marks.append((threading.get_ident(), state["steps"]))
    )
    up.prepare()
    up.commit(Quiescence(loop=loop), suspend_timeout=5)
    assert seen_v2.wait(5)
    state["stop"] = True
    for t in tasks:
        t.result(5)
    assert {ident for ident, _ in marks} == {loop_thread}  # every step ran on the loop thread
    assert len({steps for _, steps in marks}) == 1  # and no task took a step in between
    assert mixed == []


def test_blocked_loop_aborts_and_the_commit_never_runs_later(
    hot: Hot, loop: asyncio.AbstractEventLoop
) -> None:
    r1, r2, (a, _b) = hot.v1_v2(PAIR_V1, PAIR_V2, "a", "b")
    unblock = threading.Event()
    loop.call_soon_threadsafe(unblock.wait, 10)  # a handler hogging the loop
    before = snapshot.take(hot.pkg)
    with pytest.raises(ChildError) as err:
        hot_upgrade(r2, current=r1, loop=loop, suspend_timeout=0.2)
    assert err.value.details["step"] == "quiesce"
    unblock.set()
    assert run_on_loop(loop, lambda: "round-trip", 5) == "round-trip"  # the loop ran its queue
    assert before == snapshot.take(hot.pkg) and a.ver() == "v1"


def test_async_gate_drains_in_flight_coroutines(hot: Hot, loop: asyncio.AbstractEventLoop) -> None:
    r1, r2, (a, _b) = hot.v1_v2(PAIR_V1, PAIR_V2, "a", "b")
    gate = UpgradeGate()
    proceed = asyncio.Event()
    entered = threading.Event()

    async def in_flight() -> str:
        async with gate:
            entered.set()
            await proceed.wait()
            return a.ver()

    async def later() -> str:
        async with gate:
            return a.ver()

    first = asyncio.run_coroutine_threadsafe(in_flight(), loop)
    assert entered.wait(5)
    t, upgrade = _thread(
        lambda: hot_upgrade(r2, current=r1, gate=gate, loop=loop, suspend_timeout=10)
    )
    assert gate.wait_until(lambda g: g.closed, 5)
    second = asyncio.run_coroutine_threadsafe(later(), loop)
    assert gate.wait_until(lambda g: g.waiting == 1, 5)
    loop.call_soon_threadsafe(proceed.set)
    assert first.result(5) == "v1"
    upgrade.result(10)
    assert second.result(5) == "v2"
    t.join(5)


def test_hot_upgrade_async_commits_on_the_running_loop(hot: Hot) -> None:
    v2 = {
        **PAIR_V2,
        "a.py": PAIR_V2["a.py"]
        + "import threading\nTHREADS = []\n"
        + "def __code_change__(old, extra):\n    THREADS.append(threading.get_ident())\n",
    }
    r1, r2, (a, _b) = hot.v1_v2(PAIR_V1, v2, "a", "b")

    async def main() -> int:
        stats = await hot_upgrade_async(r2, current=r1)
        assert stats.modules_migrated == 1
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert a.ver() == "v2" and [loop_thread] == a.THREADS
