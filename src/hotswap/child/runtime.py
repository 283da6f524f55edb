"""What a running generation knows about itself, shared by the bootstrap, adapters and API.

Lifecycle seen from inside a generation::

    boot ─▶ app imported ─▶ started on the private probe socket only ─▶ ready (reported)
         ─▶ "go": accept on the public listeners ─▶ "drain": stop accepting, finish, stop app
         ─▶ before_cutover (when a successor is named) ─▶ exit

``go`` and ``drain`` arrive on the channel's reader thread; adapters register a waker so their
event loop notices at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotswap import contract
from hotswap.child import startup
from hotswap.child.channel import Channel
from hotswap.child.twophase import TwoPhase
from hotswap.contract import STARTUP_FAILURE as STARTUP_FAILURE  # the adapters import it here
from hotswap.contract import SUSPEND_TIMEOUT
from hotswap.errors import UsageError
from hotswap.release.config import AppConfig


def import_target(target: str) -> Any:
    """Resolve ``module:attr.attr``."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def log(message: str) -> None:
    """A line on stderr (the supervisor's log). Never raises: a dead supervisor must not turn
    logging into an exception in the middle of a drain."""
    with contextlib.suppress(OSError, ValueError):
        print(f"hotswap: {message}", file=sys.stderr, flush=True)


@dataclass
class ChildRuntime:
    generation: int
    release_id: str
    release_root: Path
    config: AppConfig
    listeners: list[tuple[str, socket.socket]]
    probe: socket.socket
    channel: Channel
    outgoing: dict[str, Any] | None = None
    incoming: dict[str, Any] | None = None
    worker: int = 0  # its index among its generation's workers
    workers: int = 1  # how many workers its generation runs
    go: threading.Event = field(default_factory=threading.Event)
    drain: threading.Event = field(default_factory=threading.Event)
    ready_reported: bool = False
    _wakers: list[Callable[[], None]] = field(default_factory=list)
    twophase: TwoPhase = field(init=False)

    def __post_init__(self) -> None:
        self.twophase = TwoPhase(self)

    @property
    def name(self) -> str:
        """``generation 4``, or ``generation 4 worker 1`` when it has several workers."""
        if self.workers > 1:
            return f"generation {self.generation} worker {self.worker}"
        return f"generation {self.generation}"

    @property
    def draining(self) -> bool:
        return self.drain.is_set()

    def add_waker(self, waker: Callable[[], None]) -> None:
        self._wakers.append(waker)

    def _wake(self) -> None:
        for waker in list(self._wakers):
            waker()

    async def wait_draining(self) -> None:
        """Return once this generation drains; any event loop, no polling."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def waker() -> None:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(event.set)

        self._wakers.append(waker)
        try:
            while not self.draining:
                await event.wait()
                event.clear()
        finally:
            self._wakers.remove(waker)

    # -- from the adapter ----------------------------------------------------------------

    def report_ready(self) -> None:
        """App start-up has completed and the probe socket is served."""
        if not self.ready_reported:
            self.ready_reported = True
            startup.end()
            self.channel.event(
                contract.EVENT_READY,
                pid=os.getpid(),
                startup=startup.of_files(str(self.release_root / "lib") + os.sep),
            )

    def report_serving(self) -> None:
        self.channel.event(contract.EVENT_SERVING, pid=os.getpid())

    def run_before_cutover(self) -> None:
        """In the old generation, after its app stopped: run the hook when a successor was
        named, and hand its result to the supervisor (``None`` if it failed)."""
        if self.incoming is None:
            return
        result: Any = None
        if self.config.before_cutover:
            try:
                result = import_target(self.config.before_cutover)(self.incoming)
            except Exception:
                log("before_cutover failed; the swap goes on with an empty result")
                traceback.print_exc()
                result = None
        try:
            self.channel.event(contract.EVENT_BEFORE_CUTOVER, result=result)
        except UsageError as e:  # not JSON-compatible or bytes, or too large
            log(f"before_cutover returned a value that cannot be sent: {e.message}")
            self.channel.event(contract.EVENT_BEFORE_CUTOVER, result=None)

    # -- from the channel ----------------------------------------------------------------

    def on_go(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.go.set()
        self._wake()
        return {"pid": os.getpid()}

    def on_drain(self, args: dict[str, Any]) -> dict[str, Any]:
        incoming = args.get("incoming")
        if isinstance(incoming, dict):
            self.incoming = incoming
        self.drain.set()
        self._wake()
        return {"pid": os.getpid()}

    def on_after_cutover(self, args: dict[str, Any]) -> None:
        hook = self.config.after_cutover
        if not hook:
            return
        try:
            import_target(hook)(args.get("handoff"))
        except Exception:
            log("after_cutover failed (the swap stands)")
            traceback.print_exc()

    def on_supervisor_gone(self) -> None:
        """Promise 6: the supervisor died; stop accepting now, finish in-flight work, exit.

        stdout and stderr are pipes the dead supervisor read: they now point to /dev/null,
        so no later write (ours, the server's, the app's) fails with EPIPE mid-drain."""
        self.drain.set()
        self._wake()
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)

    def on_sigterm(self) -> None:
        """SIGTERM (systemd stopping the unit, an operator): drain and exit."""
        self.begin_drain("SIGTERM")

    def begin_drain(self, reason: str) -> None:
        log(f"{self.name}: {reason}, draining")
        self.drain.set()
        self._wake()

    def on_hot_upgrade(self, args: dict[str, Any]) -> Any:
        """Hot-upgrade this process to the (already verified and unpacked) release the
        supervisor names; the commit runs wherever the adapter said this process quiesces
        (``hotswap.hot.set_quiescence``). On success this generation runs the new release.
        With ``finish_later`` the bookkeeping after the commit waits for ``hot_finish``, as in
        a two-phase upgrade (:mod:`hotswap.child.twophase`)."""
        from hotswap.hot.engine import prepare_hot_upgrade

        root = args.get("release_root")
        if not isinstance(root, str):
            raise UsageError("bad_request", "hot_upgrade needs release_root")
        self.twophase.on_finish({})  # a hot_finish that never came (a supervisor gone in between)
        pending = prepare_hot_upgrade(
            root,
            current=self.release_root,
            allow_dependency_changes=bool(args.get("allow_dependency_changes", False)),
            no_quiesce=bool(args.get("no_quiesce", False)),
        )
        later = bool(args.get("finish_later", False))
        stats = pending.commit(
            suspend_timeout=float(args.get("suspend_timeout", SUSPEND_TIMEOUT)),
            finish_later=later,
        )
        if later:
            self.twophase.finish_later(pending)
        self.release_root = Path(root)
        self.release_id = str(args.get("release_id", self.release_id))
        return stats.to_json()

    def attach(self) -> None:
        self.channel.handle(contract.OP_GO, self.on_go)
        self.channel.handle(contract.OP_DRAIN, self.on_drain)
        self.channel.handle(contract.OP_AFTER_CUTOVER, self.on_after_cutover, threaded=True)
        self.channel.handle(contract.OP_HOT_UPGRADE, self.on_hot_upgrade, threaded=True)
        self.twophase.attach()
        self.channel.handle(contract.OP_PING, lambda _args: {"pid": os.getpid()})
        self.channel.on_eof(self.on_supervisor_gone)


_current: ChildRuntime | None = None


def current() -> ChildRuntime | None:
    """The runtime of this process when it is a hotswap generation, else None."""
    return _current


def set_current(runtime: ChildRuntime | None) -> None:
    global _current
    _current = runtime
