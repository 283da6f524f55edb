"""The supervisor: listeners bound once, generations, swaps, restarts, signals, control.

Runs one asyncio loop in one thread. Everything that can wait (unpacking, a generation's boot,
a drain) is awaited, never blocked on, so ``status`` and the handoff store answer at once
while a swap runs (promise 4). A swap is driven by the pure :class:`~.swap.Swap` machine:
this module only performs its actions and feeds back what happened.

Ownership of a new generation before readiness belongs to the swap that started it (kill it,
keep the old one, report why); after cutover to the supervisor, which restarts the active
generation from the current release with backoff if it dies, and gives up (exit status 1, so
systemd or the like restarts the whole supervisor) after too many restarts in a window.

Signals only record (their handler puts them on a queue): SIGTERM/SIGINT drain and exit,
SIGHUP does a blue-green restart of the current release.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hotswap
from hotswap import contract
from hotswap.control.server import ControlServer
from hotswap.errors import ChildError, HotswapError, ReleaseError, ResourceError, UsageError
from hotswap.fsutil import lock_state_dir
from hotswap.release.config import ServiceSpec
from hotswap.release.store import Release, ReleaseStore, is_tarball_ref
from hotswap.supervisor import listeners as listeners_mod
from hotswap.supervisor import runtime_dir, swap
from hotswap.supervisor.generation import Generation, GenerationSpawner
from hotswap.supervisor.handoff import BEFORE_CUTOVER_KEY, FILE_NAME, HandoffStore
from hotswap.supervisor.policy import RestartPolicy
from hotswap.supervisor.services import ServiceManager
from hotswap.supervisor.spawn import Spawner

RECENT_SWAPS = 20
PROBE_READ_LIMIT = 65536
Progress = Callable[[dict[str, Any]], None]


def _log(message: str) -> None:
    print(f"hotswap[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def trim_heap() -> None:
    """Hand the heap freed by a swap's transient work (unpacking, parsing) back to the OS, so
    the long-lived supervisor stays small (glibc keeps it otherwise)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def sd_notify(message: str) -> None:
    """systemd's notify protocol (Type=notify / notify-reload), if NOTIFY_SOCKET is set."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        sock.sendto(message.encode(), path)


class Supervisor:
    def __init__(
        self,
        state_dir: Path,
        binds: list[listeners_mod.BindSpec],
        *,
        release: str | None = None,
        sha256: str | None = None,
        spawner: Spawner | None = None,
        policy: RestartPolicy | None = None,
        services: Sequence[ServiceSpec] = (),
        log: Callable[[str], None] = _log,
    ) -> None:
        self.store = ReleaseStore(state_dir, warn=log)
        self.state_dir = self.store.state_dir
        self.binds = binds
        self.initial_release = release
        self.initial_sha256 = sha256
        self.spawner = spawner or Spawner()
        self.policy = policy or RestartPolicy()
        self.log = log
        self.listeners: list[listeners_mod.Listener] = []
        self.generations: dict[int, Generation] = {}
        self.active: Generation | None = None
        self.next_generation = 1
        self.handoff = HandoffStore(None)
        self.swap: swap.Swap | None = None
        self.swap_info: dict[str, Any] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_SWAPS)
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.stopping = False
        self.exit_code = 0
        self.start_error: HotswapError | None = None  # why the first boot failed
        self._queue: asyncio.Queue[swap.SwapEvent] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._stopped = asyncio.Event()
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._spawn: GenerationSpawner | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._control: ControlServer | None = None
        # the release and the new generation of the swap under way (the generation object
        # stays readable, with its output, after it has exited and left self.generations)
        self._swap_release: Release | None = None
        self._swap_gen: Generation | None = None
        self._hot: dict[str, Any] | None = None
        self.services = ServiceManager(
            list(services), policy=self.policy, log=log, give_up=lambda: self.stop(exit_code=1)
        )

    @property
    def control_path(self) -> Path:
        return self.state_dir / contract.CONTROL_SOCKET

    def _task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- life ----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.store.ensure()
        state_lock = lock_state_dir(self.state_dir)  # one supervisor per state dir, first
        self.store.clean_staging()
        self.handoff = HandoffStore(self.state_dir / FILE_NAME)
        run_dir = self.state_dir / "run"
        run_dir.mkdir(mode=0o700, exist_ok=True)
        runtime = await loop.run_in_executor(None, runtime_dir.prepare, self.state_dir)
        self.listeners = [
            await loop.run_in_executor(None, listeners_mod.bind, spec) for spec in self.binds
        ]
        for listener in self.listeners:
            self.log(f"listening on {listener.address()}")
        self._spawn = GenerationSpawner(
            runtime_dir=runtime,
            run_dir=run_dir,
            state_dir=self.state_dir,
            control_path=self.control_path,
            listeners=self.listeners,
            spawner=self.spawner,
            on_event=self._on_event,
            on_exit=self._on_exit,
            log=self.log,
        )
        self._control = ControlServer(self)
        await self._control.start(self.control_path)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._signals.put_nowait, sig)
        self._task(self._signal_loop())
        try:
            ref = self._initial_ref()
            release = await loop.run_in_executor(None, self._resolve, ref, self.initial_sha256)
            assert self._spawn is not None
            await self.services.start(self._spawn, release)
            try:
                result = await self.upgrade(release.id, how="initial")
            except HotswapError as e:
                if e.code != "commit_failed" or self.active is None:
                    raise
                # it serves; state.json could not say so (what a restart boots is unchanged)
                self.log(f"warning: {e}")
                active = self.active
                result = {"release": release.id, "generation": active.number, "pid": active.pid}
            self.log(
                f"serving {result['release']} as generation {result['generation']} "
                f"(pid {result['pid']})"
            )
            sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving {result['release']}")
        except HotswapError as e:
            self.log(f"could not start: {e}")
            for line in e.details.get("output", [])[-20:]:
                self.log(f"  | {line}")
            self.exit_code = 1
            self.start_error = e
            self.stopping = True
            self._stopped.set()
        await self._stopped.wait()
        await self._shutdown()
        state_lock.release()
        return self.exit_code

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

    async def _signal_loop(self) -> None:
        while True:
            sig = await self._signals.get()
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.log(f"{signal.Signals(sig).name}: draining and exiting")
                self.stop()
            elif sig == signal.SIGHUP and not self.stopping:
                current = self.store.read_state()["current"]
                if self.swap is not None:
                    self.log("SIGHUP ignored: an upgrade is in progress")
                elif current:
                    self.log("SIGHUP: blue-green restart of the current release")
                    self._task(self._quiet_upgrade(str(current), "restart"))

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
        sd_notify("STOPPING=1")
        if self._restart_task is not None:
            self._restart_task.cancel()
        if self._control is not None:
            await self._control.close()
        if self._queue is not None and self.swap is not None and not self.swap.cut_over:
            self._queue.put_nowait(swap.Failed("not_running", "the supervisor is shutting down"))
        for gen in list(self.generations.values()):
            if gen.state in ("starting", "ready"):
                gen.kill()
            elif gen.state in ("live", "draining"):
                gen.state = "draining"
                gen.send_nowait("drain")
        deadline = time.monotonic() + max(
            (g.release.manifest.app_config().shutdown_timeout for g in self.generations.values()),
            default=0.0,
        )
        while self.generations and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for gen in list(self.generations.values()):
            self.log(f"generation {gen.number} did not exit in time: killing it")
            gen.kill()
        while self.generations:
            await asyncio.sleep(0.02)
        await self.services.stop()
        listeners_mod.close_all(self.listeners)
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        for task in list(self._tasks):
            task.cancel()

    # -- generation events ---------------------------------------------------------------

    def _post(self, event: swap.SwapEvent) -> None:
        if self._queue is not None:
            self._queue.put_nowait(event)

    def _involved(self, gen: Generation) -> bool:
        return self.swap is not None and gen.number in (self.swap.new, self.swap.old)

    def _on_event(self, gen: Generation, name: str, data: dict[str, Any]) -> None:
        if gen.service is not None:
            self.services.on_event(gen, name, data)
            return
        if name == "hello":
            gen.hello = data
        elif name == "ready":
            gen.state = "ready"
            gen.ready_mono = time.monotonic()
            if self.swap is not None and gen.number == self.swap.new:
                self._post(swap.Ready(gen.number))
        elif name == "before_cutover" and gen.state == "draining":
            try:
                self.handoff.put(BEFORE_CUTOVER_KEY, data.get("result"), reserved_ok=True)
            except Exception as e:  # refused, or the disk is full: the swap goes on
                self.log(f"generation {gen.number}'s before_cutover result refused: {e}")
        elif name == "protocol_error":
            error = data.get("error") or {}
            self.log(f"generation {gen.number}: {error.get('message')}")
            if self.swap is not None and gen.number == self.swap.new:
                self._post(
                    swap.Failed(str(error.get("code", "protocol_error")), str(error.get("message")))
                )
            gen.kill()

    def _on_exit(self, gen: Generation) -> None:
        if gen.service is not None:
            self.services.on_exit(gen)
            return
        gen.close()
        self.generations.pop(gen.number, None)
        was = gen.state
        gen.state = "retired" if was == "draining" else "failed"
        self.log(f"generation {gen.number} (pid {gen.pid}) exited with status {gen.returncode}")
        if self._involved(gen):
            self._post(swap.Exited(gen.number, gen.returncode))
        if gen is self.active:
            self.active = None
            if not self.stopping:
                self._schedule_restart(gen)
        if self.stopping and not self.generations:
            self._stopped.set()

    # -- restarts ------------------------------------------------------------------------

    def _stop_restarting(self) -> bool:
        """Re-read after an await: an upgrade may have brought a generation up meanwhile."""
        return self.active is not None or self.stopping

    def _schedule_restart(self, dead: Generation) -> None:
        if self._restart_task is not None and not self._restart_task.done():
            return
        uptime = time.monotonic() - dead.started_mono
        self._restart_task = asyncio.create_task(self._restart_loop(uptime))

    async def _restart_loop(self, uptime: float) -> None:
        while self.active is None and not self.stopping:
            delay = self.policy.on_exit(time.monotonic(), uptime)
            if delay is None:
                self.log("the app keeps dying: too many restarts, giving up (exit status 1)")
                self.stop(exit_code=1)
                return
            self.log(f"active generation died: restarting the current release in {delay:g}s")
            await asyncio.sleep(delay)
            while self.swap is not None:
                await asyncio.sleep(0.05)
            if self._stop_restarting():
                return
            current = self.store.read_state()["current"]
            try:
                await self.upgrade(str(current), how="restart")
                return
            except HotswapError as e:
                self.log(f"restart failed: {e}")
                uptime = 0.0

    # -- swaps ---------------------------------------------------------------------------

    async def upgrade(
        self,
        ref: str,
        *,
        how: str = "blue-green",
        sha256: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Swap to the release ``ref`` (a tarball path or a release id in the store).
        Refused at once while another swap runs (promise 4)."""
        self._refuse_if_busy()
        if self.stopping:
            raise UsageError("not_running", "the supervisor is shutting down")
        now = time.monotonic()
        machine = swap.Swap(old=self.active.number if self.active else None, started=now)
        self.swap = machine
        self.swap_info = {"ref": ref, "how": how, "started_at": time.time()}
        self._swap_release = self._swap_gen = None
        self._queue = asyncio.Queue()
        if how in ("blue-green", "rollback", "restart") and self.active is not None:
            sd_notify(
                f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
            )
        try:
            return await self._drive(machine, ref, how, sha256, progress)
        finally:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self.swap = None
            self._queue = None
            if how in ("blue-green", "rollback", "restart"):
                sd_notify("READY=1")
            trim_heap()

    async def rollback(self, *, progress: Progress | None = None) -> dict[str, Any]:
        """Blue-green back to the previous release (state.json's ``previous``)."""
        previous = self.store.read_state()["previous"]
        if not previous:
            raise UsageError("no_previous_release", "there is no previous release to roll back to")
        return await self.upgrade(str(previous), how="rollback", progress=progress)

    async def _drive(
        self,
        machine: swap.Swap,
        ref: str,
        how: str,
        sha256: str | None,
        progress: Progress | None,
    ) -> dict[str, Any]:
        assert self._queue is not None
        say = progress or (lambda _event: None)
        actions = machine.begin()
        last_phase = machine.phase
        say({"phase": last_phase.value, "state": "started"})
        while True:
            for action in actions:
                await self._perform(action, machine, ref, how, sha256)
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
            actions = machine.handle(event, time.monotonic())
        return self._finish(machine, ref, how)

    def _finish(self, machine: swap.Swap, ref: str, how: str) -> dict[str, Any]:
        total_ms = round((time.monotonic() - machine.started) * 1000, 3)
        record: dict[str, Any] = {
            "how": how,
            "release": machine.release_id,
            "ref": ref,
            "ok": machine.phase == swap.Phase.DONE,
            "generation": machine.new,
            "from_generation": machine.old,
            "timings_ms": dict(machine.timings),
            "total_ms": total_ms,
            "at": self.swap_info.get("started_at"),
        }
        if machine.notes:
            record["notes"] = list(machine.notes)
        if machine.cut_over:
            # not self.active: the new generation may have died during the drain (after
            # cutover it is the restart policy's); the swap itself happened
            new = self._swap_gen
            assert new is not None
            record["pid"] = new.pid
            record["drain_killed"] = machine.drain_killed
            if machine.old is not None:
                new.send_nowait("after_cutover", handoff=self.handoff.get(BEFORE_CUTOVER_KEY))
        if machine.phase == swap.Phase.DONE:
            self.recent.appendleft(record)
            if how != "restart":
                self.policy.reset()
            return record
        error = machine.error
        assert error is not None and error.code is not None
        output = self._swap_gen.tail() if self._swap_gen is not None else []
        details = {"phase": _failed_phase(machine), **error.details, "output": output}
        record["error"] = {"code": error.code, "message": error.message}
        self.recent.appendleft(record)
        raise HotswapError.from_json(
            {"code": error.code, "message": error.message, "details": details}
        )

    async def _perform(
        self, action: swap.Action, machine: swap.Swap, ref: str, how: str, sha256: str | None
    ) -> None:
        """Perform one action; whatever it raises becomes an event of the machine (its failure
        path before cutover, a note or ``commit_failed`` after), never an unwound swap."""
        try:
            await self._perform_one(action, machine, ref, how, sha256)
        except Exception as e:  # a bug or a broken resource, reported as such
            if isinstance(action, swap.Commit):
                self._post(swap.CommitFailed(f"{type(e).__name__}: {e}"))
            else:
                self.log(f"{type(action).__name__} failed: {e!r}")
                self._post(_failure(e))

    async def _perform_one(
        self, action: swap.Action, machine: swap.Swap, ref: str, how: str, sha256: str | None
    ) -> None:
        loop = asyncio.get_running_loop()
        match action:
            case swap.Unpack():
                release = await loop.run_in_executor(None, self._resolve, ref, sha256)
                config = release.manifest.app_config()
                self._swap_release = release
                self._post(
                    swap.Unpacked(
                        release.id,
                        boot_timeout=config.boot_timeout,
                        health_timeout=config.health_timeout,
                        shutdown_timeout=config.shutdown_timeout,
                        health_check=config.health_path is not None,
                    )
                )
            case swap.Spawn():
                assert self._spawn is not None
                number = self.next_generation
                self.next_generation += 1
                target = self._swap_release
                assert target is not None
                if machine.old is not None:
                    # the old generation's before_cutover fills this in; no stale value may
                    # reach the new one (reset here, not between go and drain: a write + fsync)
                    self.handoff.put(BEFORE_CUTOVER_KEY, None, reserved_ok=True)
                gen = await self._spawn.spawn(number, target, self.active)
                self.generations[number] = gen
                self._swap_gen = gen
                self.log(f"generation {number} started (pid {gen.pid}) from {target.id}")
                self._post(swap.Spawned(number))
            case swap.SetDeadline(phase=phase, seconds=seconds):
                self._timers.append(loop.call_later(seconds, self._post, swap.Deadline(phase)))
            case swap.Probe(generation=number):
                self._task(self._probe(number))
            case swap.Cutover():
                await self._cutover(action)
            case swap.Kill(generation=number):
                victim = self.generations.get(number)
                if victim is not None:
                    self.log(f"killing generation {number} (pid {victim.pid})")
                    victim.kill()
            case swap.Commit(release_id=release_id):
                if how != "restart":  # a restart serves what state.json already names
                    await loop.run_in_executor(
                        None,
                        lambda: self.store.set_current(
                            release_id,
                            how="blue-green" if how == "initial" else how,
                            protect=self._releases_in_use(),
                        ),
                    )
                self._post(swap.Committed())
            case swap.Finish():
                pass  # read from the machine by _finish

    def _resolve(self, ref: str, sha256: str | None) -> Release:
        if not is_tarball_ref(ref):
            return self.store.get(ref)
        return self.store.unpack(Path(ref), expected_sha256=sha256)

    async def _cutover(self, action: swap.Cutover) -> None:
        new = self.generations.get(action.new)
        if new is None:
            self._post(swap.Failed("boot_failed", f"generation {action.new} is gone"))
            return
        try:
            await new.request("go", timeout=contract.GO_TIMEOUT)
        except HotswapError as e:
            self._post(swap.Failed("boot_failed", f"generation {action.new} refused go: {e}"))
            return
        new.state = "live"
        old = self.active
        self.active = new
        if action.old is not None and old is not None and old.number == action.old:
            old.state = "draining"
            old.send_nowait("drain", incoming=new.info())
        self._post(swap.CutoverDone())

    async def _probe(self, number: int) -> None:
        gen = self.generations.get(number)
        if gen is None:
            return
        app = gen.release.manifest.app_config()
        path = app.health_path or "/"
        assert gen.probe_path is not None
        try:
            status = await _http_probe(gen.probe_path, path, app.health_host)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            # A connection that breaks often means the generation just died: let its exit be
            # reaped and reported (boot_failed, with its status) rather than blame the probe.
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline and gen.process.poll() is None:
                await asyncio.sleep(0.01)
            if gen.process.poll() is None:
                self._post(swap.Unhealthy(number, f"GET {path}: {type(e).__name__}: {e}"))
            return
        if 200 <= status < 300:
            self._post(swap.Healthy(number))
        else:
            hint = (
                f" (the probe sends Host: {app.health_host}: allow it, e.g. Django's "
                "ALLOWED_HOSTS or a trusted-host middleware, or set health_host)"
                if status == 400
                else ""
            )
            self._post(swap.Unhealthy(number, f"GET {path} answered {status}{hint}"))

    def _releases_in_use(self) -> frozenset[str]:
        """Every release a running process loaded code from: a hot-upgraded generation still
        reads the source lines of its unchanged modules (tracebacks) from older releases, and
        services run from the release the supervisor booted with. Retention keeps them."""
        used: set[str] = set()
        for child in [*self.generations.values(), *self.services.running()]:
            used |= child.loaded
        return frozenset(used)

    def _refuse_if_busy(self) -> None:
        if self.swap is not None:
            raise UsageError(
                "upgrade_in_progress",
                f"an upgrade is already running (phase {self.swap.phase}); try again after it",
            )
        if self._hot is not None:
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
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._hot = {"ref": ref, "started_at": time.time()}
        gen = self.active
        record: dict[str, Any] = {
            "how": "hot",
            "release": None,
            "ref": ref,
            "ok": False,
            "generation": gen.number,
            "pid": gen.pid,
            "at": self._hot["started_at"],
        }
        try:
            release = await loop.run_in_executor(None, self._resolve, ref, sha256)
            record["release"] = release.id
            reserved = ("release", "sha256", "release_root", "release_id")
            opts = {k: v for k, v in (options or {}).items() if k not in reserved}
            suspend = float(opts.get("suspend_timeout", contract.SUSPEND_TIMEOUT))
            result = await gen.request(
                "hot_upgrade",
                timeout=suspend + contract.HOT_UPGRADE_GRACE,
                release_root=str(release.root),
                release_id=release.id,
                **opts,
            )
            gen.release = release
            gen.loaded.add(release.id)
            await loop.run_in_executor(
                None,
                lambda: self.store.set_current(
                    release.id, how="hot", protect=self._releases_in_use()
                ),
            )
            record.update(ok=True, stats=result)
            return record
        except HotswapError as e:
            record["error"] = {"code": e.code, "message": e.message}
            raise
        finally:
            record["total_ms"] = round((time.monotonic() - started) * 1000, 3)
            self.recent.appendleft(record)
            self._hot = None
            trim_heap()

    # -- queries -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        state = self.store.read_state()
        upgrade = None
        if self.swap is not None:
            upgrade = {
                "phase": self.swap.phase.value,
                "release": self.swap.release_id,
                "how": self.swap_info.get("how"),
                "elapsed_ms": round((now - self.swap.started) * 1000, 1),
                "new_generation": self.swap.new,
            }
        return {
            "supervisor": {
                "pid": os.getpid(),
                "hotswap": hotswap.__version__,
                "uptime_s": round(now - self.started_mono, 3),
                "state_dir": str(self.state_dir),
                "listeners": [lsn.address() for lsn in self.listeners],
                "stopping": self.stopping,
            },
            "active": self.active.status(now) if self.active is not None else None,
            "generations": [
                g.status(now) for g in sorted(self.generations.values(), key=lambda g: g.number)
            ],
            "current": state["current"],
            "previous": state["previous"],
            "services": self.services.status(now),
            "upgrading": self.swap is not None or self._hot is not None,
            "upgrade": upgrade,
            "recent": list(self.recent),
        }


def _failure(e: Exception) -> swap.Failed:
    """The machine's failure event for an exception an action raised."""
    if isinstance(e, HotswapError):
        return swap.Failed(e.code, e.message, e.details)
    code = "io_error" if isinstance(e, OSError) else "supervisor_failed"
    return swap.Failed(code, f"{type(e).__name__}: {e}")


def _failed_phase(machine: swap.Swap) -> str:
    finished = list(machine.timings)
    return finished[-1] if finished else swap.Phase.UNPACK.value


async def _http_probe(path: Path, target: str, host: str = "localhost") -> int:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hotswap\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await reader.readline()
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError(f"not an HTTP response: {line[:80]!r}")
        return int(parts[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


__all__ = ["ChildError", "ReleaseError", "ResourceError", "Supervisor"]
