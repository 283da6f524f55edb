"""The supervisor: listeners bound once, generations, swaps, restarts, signals, control.

Runs one asyncio loop in one thread. Everything that can wait (unpacking, a generation's boot,
a drain) is awaited, never blocked on, so ``status`` and the handoff store answer at once
while a swap runs (promise 4). This module is the wiring: life (run, shutdown), signals, the
entry points of swaps, and status. A swap is :mod:`.driver` performing the pure :mod:`.swap`
machine; what children say is routed by :mod:`.events` (N workers' news folded into their
generation's); what happens when the active generation's processes die is :mod:`.recovery`;
children are reached only through the :mod:`.children` seam; time only through the
:mod:`.clock`.

Ownership of a new generation before readiness belongs to the swap that started it (kill it,
keep the old one, report why); after cutover to the supervisor (:mod:`.recovery`).

Signals only record (their handler puts them on a queue): SIGTERM/SIGINT drain and exit,
SIGHUP does a blue-green restart of the current release.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import hotswap
from hotswap import contract
from hotswap.control.server import ControlServer
from hotswap.errors import HotswapError, UsageError
from hotswap.fsutil import lock_state_dir
from hotswap.release.config import ServiceSpec, worker_count
from hotswap.release.store import Release, ReleaseStore
from hotswap.supervisor import events
from hotswap.supervisor import listeners as listeners_mod
from hotswap.supervisor import swap as swap_machine
from hotswap.supervisor.children import Children, Hub
from hotswap.supervisor.clock import Clock
from hotswap.supervisor.driver import Progress, SwapDriver, resolve
from hotswap.supervisor.generation import Generation
from hotswap.supervisor.handoff import FILE_NAME, HandoffStore
from hotswap.supervisor.hot import hot_upgrade
from hotswap.supervisor.lifecycle import GenState
from hotswap.supervisor.logsink import LogSink
from hotswap.supervisor.notify import reloading, sd_notify, trim_heap
from hotswap.supervisor.oschildren import OsChildren
from hotswap.supervisor.policy import RestartPolicy
from hotswap.supervisor.recovery import Recovery
from hotswap.supervisor.services import ServiceManager

RECENT_SWAPS = 20
KILL_GRACE = 5.0  # after SIGKILL at shutdown, how long to wait for the exits to be reported
RELOADS = ("blue-green", "rollback", "restart", "auto-rollback")  # systemd hears of a reload


class Supervisor:
    def __init__(
        self,
        state_dir: Path,
        binds: list[listeners_mod.BindSpec],
        *,
        release: str | None = None,
        sha256: str | None = None,
        children: Children | None = None,
        clock: Clock | None = None,
        policy: RestartPolicy | None = None,
        services: Sequence[ServiceSpec] = (),
        stability_window: float = contract.STABILITY_WINDOW,
        workers: int | str | None = None,
        log: Callable[[str], None] | None = None,
        control: bool = True,
    ) -> None:
        self.logs = LogSink(prefix=f"hotswap[{os.getpid()}]: ")
        self.log = log or self.logs.write
        self.store = ReleaseStore(state_dir, warn=self.log)
        self.state_dir = self.store.state_dir
        self.binds = binds
        self.initial_release = release
        self.initial_sha256 = sha256
        self.children: Children = children or OsChildren()
        self.clock = clock or Clock()
        self.policy = policy or RestartPolicy()
        self.stability_window = stability_window
        self.workers = workers  # overrides every release's ``workers`` (hotswap run --workers)
        self.listeners: list[listeners_mod.Listener] = []
        self.generations: dict[int, Generation] = {}
        self.active: Generation | None = None
        self.next_generation = 1
        self.handoff = HandoffStore(None)
        self.swapping: SwapDriver | None = None
        self.hot: dict[str, Any] | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_SWAPS)
        self.stopping = False
        self.exit_code = 0
        self.start_error: HotswapError | None = None  # why the first boot failed
        self._started = 0.0
        self._stopped = asyncio.Event()
        self.idle = asyncio.Event()  # no swap under way
        self.idle.set()
        self.none_left = asyncio.Event()  # no generation left
        self.recovery = Recovery(self)
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._control: ControlServer | None = None
        self._serve_control = control  # the control socket (tests of the driver may go without)
        self.services = ServiceManager(
            list(services),
            policy=self.policy,
            clock=self.clock,
            log=self.log,
            give_up=lambda: self.stop(exit_code=contract.GIVE_UP),
        )

    @property
    def control_path(self) -> Path:
        return self.state_dir / contract.CONTROL_SOCKET

    def spawn_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- life ----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._started = self.clock.now()
        self.store.ensure()
        state_lock = lock_state_dir(self.state_dir)  # one supervisor per state dir, first
        self.store.clean_staging()
        self.handoff = HandoffStore(self.state_dir / FILE_NAME)
        run_dir = self.state_dir / "run"
        run_dir.mkdir(mode=0o700, exist_ok=True)
        self.listeners = [
            await loop.run_in_executor(None, listeners_mod.bind, spec) for spec in self.binds
        ]
        for listener in self.listeners:
            self.log(f"listening on {listener.address()}")
        hub = Hub(
            state_dir=self.state_dir,
            run_dir=run_dir,
            control_path=self.control_path,
            listeners=self.listeners,
            on_event=lambda child, name, data: events.handle_event(self, child, name, data),
            on_exit=lambda child: events.handle_exit(self, child),
            log=self.log,
        )
        await self.children.open(hub)
        if self._serve_control:
            self._control = ControlServer(self)
            await self._control.start(self.control_path)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.record_signal, sig)
        self.spawn_task(self._signal_loop())
        try:
            await self._boot()
        except HotswapError as e:
            self.log(f"could not start: {e}")
            for line in e.details.get("output", [])[-20:]:
                self.log(f"  | {line}")
            self.start_error = e
            self.stop(exit_code=1)
        await self._stopped.wait()
        await self._shutdown()
        state_lock.release()
        await self.logs.close()
        return self.exit_code

    async def _boot(self) -> None:
        loop = asyncio.get_running_loop()
        ref = self._initial_ref()
        release = await loop.run_in_executor(None, resolve, self, ref, self.initial_sha256)
        await self.services.start(self.children, release)
        try:
            await self.upgrade(release.id, how="initial")
        except HotswapError as e:
            if e.code != "commit_failed" or self.active is None:
                raise
            # it serves; state.json could not say so (what a restart boots is unchanged)
            self.log(f"warning: {e}")
        active = self.active
        assert active is not None
        pids = ", ".join(map(str, active.pids))
        workers = f"{active.size} workers, pids" if active.size > 1 else "pid"
        self.log(f"serving {release.id} as generation {active.number} ({workers} {pids})")
        sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving {release.id}")

    def _initial_ref(self) -> str:
        if self.initial_release:
            return self.initial_release
        current = self.store.current()  # falls back to previous when current is gone
        if current is None:
            raise UsageError(
                "release_not_found",
                f"nothing is deployed in {self.state_dir} yet: give a release tarball to run",
            )
        return current.id

    def record_signal(self, sig: int) -> None:
        """The signal handler: it only records; :meth:`_signal_loop` acts."""
        self._signals.put_nowait(sig)

    async def _signal_loop(self) -> None:
        while True:
            sig = await self._signals.get()
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.log(f"{signal.Signals(sig).name}: draining and exiting")
                self.stop()
            elif sig == signal.SIGHUP and not self.stopping:
                current = self.store.read_state()["current"]
                if self.swapping is not None or self.hot is not None:
                    self.log("SIGHUP ignored: an upgrade is in progress")
                elif current:
                    self.log("SIGHUP: blue-green restart of the current release")
                    self.spawn_task(self._quiet_upgrade(str(current), "restart"))

    async def _quiet_upgrade(self, ref: str, how: str) -> None:
        try:
            await self.upgrade(ref, how=how)
        except HotswapError as e:
            self.log(f"{how} failed: {e}")

    def stop(self, exit_code: int | None = None) -> None:
        if exit_code is not None:
            self.exit_code = exit_code
        self.stopping = True
        self.services.stopping = True  # a service dying during shutdown is not restarted
        self._stopped.set()

    async def call_service(
        self, name: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        return await self.services.call(name, method, args, kwargs)

    async def _shutdown(self) -> None:
        """Drain every generation within its ``shutdown_timeout``, then kill what is left."""
        sd_notify("STOPPING=1")
        self.recovery.cancel()
        if self._control is not None:
            await self._control.close()
        if self.swapping is not None and not self.swapping.machine.cut_over:
            self.swapping.post(
                swap_machine.Failed("not_running", "the supervisor is shutting down")
            )
        for gen in list(self.generations.values()):
            if gen.state in (GenState.STARTING, GenState.READY):
                gen.kill()
            elif gen.state in (GenState.LIVE, GenState.DRAINING):
                for child in gen.alive():  # a worker restarting is not serving yet
                    if child.state in (GenState.STARTING, GenState.READY):
                        child.kill()
                gen.move(GenState.DRAINING)
                gen.send_nowait(contract.OP_DRAIN)
        timeout = max(
            (g.release.manifest.app_config().shutdown_timeout for g in self.generations.values()),
            default=0.0,
        )
        if self.generations:
            self.none_left.clear()
            await self.clock.wait(self.none_left, timeout)
        for gen in list(self.generations.values()):
            self.log(f"generation {gen.number} did not exit in time: killing it")
            gen.kill()
        if self.generations and not await self.clock.wait(self.none_left, KILL_GRACE):
            self.log(f"generations {sorted(self.generations)} killed but not reported gone")
        await self.services.stop()
        listeners_mod.close_all(self.listeners)
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        for task in list(self._tasks):
            task.cancel()

    def activate(self, gen: Generation) -> None:
        """``gen`` is the active generation from now on (its swap cut over to it)."""
        old = self.active
        how = self.swapping.how if self.swapping is not None else "initial"
        self.recovery.cutover(gen, how, old.release.id if old else None)
        self.active = gen

    def worker_count(self, release: Release) -> int:
        """How many workers a generation of ``release`` runs: ``--workers`` if given, else
        the release's ``workers``."""
        if self.workers is not None:
            return worker_count(self.workers)
        return release.manifest.app_config().worker_count()

    # -- swaps ---------------------------------------------------------------------------

    async def upgrade(
        self,
        ref: str,
        *,
        how: str = "blue-green",
        sha256: str | None = None,
        progress: Progress | None = None,
        allow_other_app: bool = False,
    ) -> dict[str, Any]:
        """Swap to the release ``ref`` (a tarball path or a release id in the store).
        Refused at once while another swap runs (promise 4); refused (``different_app``) in
        its unpack phase if it is another app than the one serving, unless
        ``allow_other_app``."""
        self._refuse_if_busy()
        if self.stopping:
            raise UsageError("not_running", "the supervisor is shutting down")
        driver = SwapDriver(self, ref, how, sha256, allow_other_app=allow_other_app)
        self.swapping = driver
        self.idle.clear()
        if how in RELOADS and self.active is not None:
            reloading()
        try:
            record = await driver.run(progress)
            if how not in ("restart", "auto-rollback"):
                self.policy.reset()
            return record
        finally:
            self.swapping = None
            self.idle.set()
            if how in RELOADS:
                sd_notify("READY=1")
            trim_heap()

    async def rollback(self, *, progress: Progress | None = None) -> dict[str, Any]:
        """Blue-green back to the previous release (state.json's ``previous``)."""
        self._refuse_if_busy()
        previous = self.store.read_state()["previous"]
        if not previous:
            raise UsageError("no_previous_release", "there is no previous release to roll back to")
        return await self.upgrade(str(previous), how="rollback", progress=progress)

    def releases_in_use(self) -> frozenset[str]:
        """Every release a running process loaded code from: a hot-upgraded generation still
        reads the source lines of its unchanged modules (tracebacks) from older releases, and
        services run from the release the supervisor booted with. Retention keeps them."""
        used: set[str] = set()
        for gen in self.generations.values():
            used |= gen.releases()
        for svc in self.services.running():
            used |= svc.loaded
        return frozenset(used)

    def _refuse_if_busy(self) -> None:
        if self.swapping is not None:
            raise UsageError(
                "upgrade_in_progress",
                f"an upgrade is already running (phase {self.swapping.machine.phase}); "
                "try again after it",
            )
        if self.hot is not None:
            raise UsageError(
                "upgrade_in_progress", "a hot upgrade is already running; try again after it"
            )

    async def hot_upgrade(
        self, ref: str, *, sha256: str | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Hot-upgrade the active generation in place to release ``ref``; on success the
        release becomes current, so a restarted generation boots the new code."""
        self._refuse_if_busy()
        if self.stopping or self.active is None:
            raise UsageError("not_running", "there is no active generation to hot-upgrade")
        # a hot upgrade's progress (status: "phase", "release") and its waiters (supervisor/hot)
        self.hot = {"ref": ref, "started": self.clock.now(), "phase": "resolve", "release": None}
        try:
            return await hot_upgrade(self, ref, sha256, options or {})
        finally:
            self.hot = None
            trim_heap()

    # -- queries -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        state = self.store.read_state()
        upgrade = None
        if self.swapping is not None:
            machine = self.swapping.machine
            upgrade = {
                "phase": machine.phase.value,
                "release": machine.release_id,
                "how": self.swapping.how,
                "elapsed_ms": round((now - machine.started) * 1000, 1),
                "new_generation": machine.new,
            }
        elif self.hot is not None:
            upgrade = {
                "phase": self.hot["phase"],
                "release": self.hot["release"],
                "how": "hot",
                "elapsed_ms": round((now - self.hot["started"]) * 1000, 1),
                "new_generation": None,
            }
        return {
            "supervisor": {
                "pid": os.getpid(),
                "hotswap": hotswap.__version__,
                "uptime_s": round(now - self._started, 3),
                "state_dir": str(self.state_dir),
                "listeners": [lsn.address() for lsn in self.listeners],
                "stopping": self.stopping,
                "log_lines_dropped": self.logs.dropped,
            },
            "active": self.active.status(now) if self.active is not None else None,
            "generations": [
                g.status(now) for g in sorted(self.generations.values(), key=lambda g: g.number)
            ],
            "current": state["current"],
            "previous": state["previous"],
            "services": self.services.status(now),
            "upgrading": self.swapping is not None or self.hot is not None,
            "upgrade": upgrade,
            "recent": list(self.recent),
        }
