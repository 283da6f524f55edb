"""A fake of the supervisor's one OS seam: children scripted by the test, no process at all.

``FakeChildren`` stands where :class:`hotswap.supervisor.oschildren.OsChildren` does (the
``children=`` argument of :class:`hotswap.supervisor.core.Supervisor`). Each child it
"spawns" (a generation's worker or a service) follows a :class:`Script` on the supervisor's
clock: says hello, reports ready, answers
its health probe, exits with a code, hangs, ignores a drain, sends a bad line. A test can also
act on a spawned child directly (``child.exit(3)``, ``child.bad_line()``). Run the supervisor on
:class:`hotswap.testing.VirtualClock` and a 30 s drain deadline takes microseconds (tableflip's
``testProcess``; trio's ``MockClock``).

``fake_release(state_dir, version)`` puts a small release in a state dir's store, so the
supervisor can boot and swap it by id without a build.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotswap import contract
from hotswap.control.protocol import VERSION
from hotswap.errors import ChildError, ResourceError
from hotswap.hot.testing import write_release
from hotswap.release.config import ServiceSpec
from hotswap.release.store import Release
from hotswap.supervisor.children import Hub
from hotswap.supervisor.process import Child
from hotswap.supervisor.spawn import ChildProcess

_pids = itertools.count(4_000_000)  # above any real pid_max default


@dataclass
class Script:
    """What a fake child does; times are seconds on the supervisor's clock, None is never."""

    protocol: int = VERSION  # the control protocol version it says hello with
    ready_after: float | None = 0.1  # None: never ready (it hangs in start-up)
    exit_before_ready: int | None = None  # exit with this code instead of becoming ready
    health: int = 200  # what its health probe answers
    go: bool = True  # acknowledges "go" (False: never answers it)
    exit_after_ready: float | None = None  # exits this long after ready ...
    exit_code: int = 1  # ... with this code
    bad_line_after_ready: float | None = None  # sends a line the supervisor cannot parse
    drain_exit_after: float | None = 0.01  # None: ignores a drain (it must be killed)
    # a two-phase hot upgrade: "refuse" at prepare, "fail" its commit before applying it, or
    # "fail_after" the decision (its hold ran out); else it applies it and keeps the decision
    hot: str = "apply"
    prepare_for: float = 0.0  # how long its hot_prepare takes (the first worker's analysis)
    turn_for: float | None = 0.01  # its turn at the part needing no analysis (None: never ends)
    commit_for: float = 0.0  # how long its hot_commit takes before it has applied it


@dataclass
class FakeProcess(ChildProcess):
    child: FakeChild | None = None
    signals: list[int] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self.child is not None:
            self.signals.append(sig)
            if sig == signal.SIGKILL:
                self.child.exit(-signal.SIGKILL)
            elif sig == signal.SIGTERM and self.child.proc.service is not None:
                self.child.exit(0)

    def kill_group(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeProcessHandle(Child):
    """A :class:`~hotswap.supervisor.process.Child` whose channel and process are the fake's."""

    child: FakeChild

    async def request(self, op: str, timeout: float | None = 10.0, **args: Any) -> Any:
        self.child.heard(op, args)
        if self.child.exited:
            raise ResourceError("protocol_error", f"{self.name}'s channel is closed")
        if op == contract.OP_GO and not self.child.script.go:
            await asyncio.sleep(timeout if timeout is not None else 3600.0)
            raise ResourceError(
                "protocol_error", f"{self.name} did not answer {op!r} in {timeout}s"
            )
        if op == contract.OP_CALL:
            return {"method": args.get("method"), "args": args.get("args")}
        if op == contract.OP_HOT_PREPARE and args.get("analysis_wait"):
            await self.child.proceeded.wait()  # as a worker waits for the first one's analysis
            self.child.proceeded.clear()
            if not self.child.proceed:
                raise ChildError("hot_upgrade_refused", "withdrawn before its analysis")
        if op == contract.OP_HOT_PREPARE and self.child.script.prepare_for:
            await asyncio.sleep(self.child.script.prepare_for)
        if op == contract.OP_HOT_PREPARE and self.child.script.hot == "refuse":
            raise ChildError("hot_upgrade_refused", "refused, as scripted")
        if op == contract.OP_HOT_COMMIT:
            return await self._hot_commit()
        return {"pid": self.pid}

    async def _hot_commit(self) -> dict[str, Any]:
        """Apply, say so, hold until the supervisor decides (two-phase)."""
        child = self.child
        if child.script.hot == "fail":
            raise ChildError("hot_upgrade_failed", "__code_change__ failed, as scripted")
        if child.script.commit_for:
            await asyncio.sleep(child.script.commit_for)
        child.event(contract.EVENT_HOT_APPLIED)
        decided, gone = asyncio.ensure_future(child.decided.wait()), child.gone.wait()
        await asyncio.wait({decided, asyncio.ensure_future(gone)}, return_when="FIRST_COMPLETED")
        if not decided.done():  # it exited while holding: the call fails, as a real one does
            decided.cancel()
            raise ResourceError("protocol_error", f"{self.name} went away")
        child.decided.clear()
        if child.script.hot == "fail_after":
            raise ChildError("hot_upgrade_failed", "its hold ran out, as scripted")
        if not child.kept:
            raise ChildError("hot_upgrade_failed", "withdrawn: another worker failed")
        return {"window_ms": 1.0, "pid": self.pid}

    def send_nowait(self, op: str, **args: Any) -> None:
        self.child.heard(op, args)
        if op == contract.OP_HOT_TURN and self.child.script.turn_for is not None:
            self.child.later(
                self.child.script.turn_for, self.child.event, contract.EVENT_HOT_TURN_DONE
            )
        if op == contract.OP_HOT_DECIDE:
            self.child.kept = bool(args.get("keep"))
            self.child.decided.set()
        if op == contract.OP_HOT_PROCEED:
            self.child.proceed = bool(args.get("go"))
            self.child.proceeded.set()
        if op == contract.OP_DRAIN and not self.child.exited:
            delay = self.child.script.drain_exit_after
            if delay is not None:
                self.child.later(delay, self.child.exit, 0)

    def close(self) -> None:
        pass


class FakeChild:
    """One scripted child; the test may also drive it by hand."""

    def __init__(self, hub: Hub, proc: FakeProcessHandle, script: Script) -> None:
        self.hub = hub
        self.proc = proc
        self.script = script
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.heard_at: list[float] = []  # the supervisor's clock at each of them
        self.exited = False
        self.decided = asyncio.Event()  # a two-phase hot upgrade's decision came
        self.gone = asyncio.Event()  # it exited
        self.proceeded = asyncio.Event()  # hot_proceed came (a worker that reads the analysis)
        self.proceed = False
        self.kept = False
        self.started = asyncio.get_running_loop().time()  # when it was spawned
        self._timers: list[asyncio.Handle] = []

    @property
    def ops(self) -> list[str]:
        return [op for op, _ in self.requests]

    def heard(self, op: str, args: dict[str, Any]) -> None:
        self.requests.append((op, args))
        self.heard_at.append(asyncio.get_running_loop().time())

    def later(self, delay: float, fn: Any, *args: Any) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(delay, fn, *args))

    def start(self) -> None:
        s = self.script
        self.event(contract.EVENT_HELLO, protocol=s.protocol, hotswap="fake", pid=self.proc.pid)
        if s.exit_before_ready is not None:
            self.later(s.ready_after or 0.0, self.exit, s.exit_before_ready)
        elif s.ready_after is not None:
            self.later(s.ready_after, self.ready)

    def event(self, name: str, **data: Any) -> None:
        if not self.exited:
            self.hub.on_event(self.proc, name, data)

    def ready(self) -> None:
        self.event(contract.EVENT_READY, pid=self.proc.pid)
        if self.script.exit_after_ready is not None:
            self.later(self.script.exit_after_ready, self.exit, self.script.exit_code)
        if self.script.bad_line_after_ready is not None:
            self.later(self.script.bad_line_after_ready, self.bad_line)

    def bad_line(self) -> None:
        error = ResourceError("protocol_error", "not a control protocol line: b'garbage'")
        self.event(contract.EVENT_PROTOCOL_ERROR, error=error.to_json())

    def exit(self, code: int) -> None:
        """The process exits with ``code`` (reported on the next turn of the loop)."""
        if self.exited:
            return
        self.exited = True
        self.gone.set()
        for timer in self._timers:
            timer.cancel()
        self.proc.process.returncode = code
        self.proc.returncode = code
        asyncio.get_running_loop().call_soon(self.hub.on_exit, self.proc)


class FakeChildren:
    """Scripted children: ``scripts[version]`` for a release's version, else ``default``;
    ``next`` (a list) overrides both for the next spawns, in order."""

    def __init__(self, default: Script | None = None) -> None:
        self.default = default or Script()
        self.scripts: dict[str, Script] = {}
        self.next: list[Script] = []
        self.children: list[FakeChild] = []
        self.spawn_error: OSError | None = None
        self.hub: Hub | None = None

    async def open(self, hub: Hub) -> None:
        self.hub = hub

    def child(self, number: int, worker: int = 0) -> FakeChild:
        """The first child spawned as worker ``worker`` of generation ``number``."""
        return next(
            c
            for c in self.children
            if c.proc.service is None and c.proc.number == number and c.proc.worker == worker
        )

    def workers(self, number: int) -> list[FakeChild]:
        """Every child spawned for generation ``number``, restarts included, in order."""
        return [c for c in self.children if c.proc.service is None and c.proc.number == number]

    def _script(self, release: Release) -> Script:
        if self.next:
            return self.next.pop(0)
        return self.scripts.get(release.manifest.version, self.default)

    async def spawn_worker(
        self,
        number: int,
        worker: int,
        workers: int,
        release: Release,
        outgoing: dict[str, Any] | None,
    ) -> Child:
        if self.spawn_error is not None:
            raise ResourceError("io_error", f"cannot start generation {number}: {self.spawn_error}")
        return self._spawn(
            self._script(release),
            number=number,
            release=release,
            probe_path=None,
            worker=worker,
            worker_of=workers,
        )

    async def spawn_service(self, spec: ServiceSpec, release: Release) -> Child:
        if self.spawn_error is not None:
            raise ResourceError("io_error", f"cannot start service {spec.name}: {self.spawn_error}")
        return self._spawn(
            self._script(release), number=0, release=release, probe_path=None, service=spec.name
        )

    def _spawn(self, script: Script, **fields: Any) -> Child:
        assert self.hub is not None, "open() first"
        process = FakeProcess(pid=next(_pids), pidfd=-1)
        proc = FakeProcessHandle(
            process=process,
            started_mono=asyncio.get_running_loop().time(),
            started_wall=time.time(),
            **fields,
        )
        child = FakeChild(self.hub, proc, script)
        proc.child = child
        process.child = child
        self.children.append(child)
        asyncio.get_running_loop().call_soon(child.start)  # its news comes after the spawn
        return proc

    async def probe(self, child: Child, target: str, host: str = "localhost") -> int:
        if child.returncode is not None:
            raise ConnectionRefusedError(f"{child.name} is gone")
        assert isinstance(child, FakeProcessHandle)
        return child.child.script.health


def fake_release(state_dir: Path, version: str, *, name: str = "fake", **app: Any) -> str:
    """Put a small release of app ``name``, version ``version``, in ``state_dir``'s store
    (its ``app`` config overridden by ``app``); returns its release id."""
    releases = state_dir / "releases"
    releases.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = {"distribution": name, "entry": "app:app", "server": "callable", **app}
    staging = releases / f".fake-{name}-{version}"
    write_release(
        staging, {"app.py": f"VERSION = {version!r}\n"}, name=name, version=version, app=config
    )
    release_id = str(json.loads((staging / "RELEASE.json").read_text())["release_id"])
    target = releases / release_id
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)
    return release_id
