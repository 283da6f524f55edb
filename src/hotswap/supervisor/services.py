"""Services, seen from the supervisor: long-lived processes next to the generations.

A service starts before the first generation (from the release the supervisor boots with), is
restarted with the supervisor's backoff if it dies, is never touched by a cutover, and is
stopped last, after every generation has drained. The child side, and how a service is written,
is :mod:`hotswap.child.service`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Callable
from typing import Any

from hotswap import contract
from hotswap.control.protocol import VERSION
from hotswap.errors import ChildError, HotswapError, UsageError
from hotswap.release.config import ServiceSpec
from hotswap.release.store import Release
from hotswap.supervisor.children import Children
from hotswap.supervisor.clock import Clock
from hotswap.supervisor.lifecycle import GenState, on_exit
from hotswap.supervisor.policy import RestartPolicy
from hotswap.supervisor.process import Child
from hotswap.supervisor.restarts import keep_restarting

RESTART_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
KILL_GRACE = 5.0


class ServiceManager:
    def __init__(
        self,
        extra: list[ServiceSpec],
        *,
        policy: RestartPolicy,
        clock: Clock,
        log: Callable[[str], None],
        give_up: Callable[[], None],
    ) -> None:
        self.extra = extra
        self.policy = policy
        self.clock = clock
        self.log = log
        self.give_up = give_up
        self.stopping = False
        self._running: dict[str, Child] = {}
        self._specs: dict[str, ServiceSpec] = {}
        self._policies: dict[str, RestartPolicy] = {}
        self._restarts: dict[str, int] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._release: Release | None = None
        self._spawner: Children | None = None
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def running(self) -> list[Child]:
        return list(self._running.values())

    async def start(self, spawner: Children, release: Release) -> None:
        """Start every service the release declares (and the extra ones); one that cannot
        start stops the supervisor: there is nothing sensible to serve without it."""
        self._spawner = spawner
        self._release = release
        config = release.manifest.app_config()
        for spec in [*config.services, *self.extra]:
            if spec.name in self._specs:
                raise UsageError("bad_config", f"service {spec.name!r} is declared twice")
            self._specs[spec.name] = spec
            self._policies[spec.name] = dataclasses.replace(self.policy)
            self._restarts[spec.name] = 0
            await self._spawn(spec, config.boot_timeout)

    async def _spawn(self, spec: ServiceSpec, timeout: float) -> Child:
        assert self._spawner is not None and self._release is not None
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready[spec.name] = ready
        svc = await self._spawner.spawn_service(spec, self._release)
        self._running[spec.name] = svc
        self.log(f"service {spec.name} started (pid {svc.pid})")
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            svc.kill()
            raise ChildError(
                "service_failed", f"service {spec.name} was not ready within {timeout:g}s"
            ) from None
        except HotswapError as e:
            raise ChildError(
                "service_failed",
                f"service {spec.name} failed to start: {e.message}",
                output=svc.tail(),
                returncode=e.details.get("returncode"),
            ) from None
        return svc

    def on_event(self, svc: Child, name: str, data: dict[str, Any]) -> None:
        assert svc.service is not None
        if name == contract.EVENT_HELLO:
            svc.hello = data
            if data.get("protocol") != VERSION:
                self.log(
                    f"service {svc.service} speaks control protocol {data.get('protocol')!r}, "
                    f"this supervisor {VERSION}: refused"
                )
                svc.kill()
        elif name == contract.EVENT_READY:
            svc.move(GenState.LIVE)
            future = self._ready.get(svc.service)
            if future is not None and not future.done():
                future.set_result(None)
        elif name == contract.EVENT_PROTOCOL_ERROR:
            self.log(f"service {svc.service}: {data.get('error')}")
            svc.kill()

    def on_exit(self, svc: Child) -> None:
        assert svc.service is not None
        svc.close()
        was = svc.state
        svc.state = on_exit(svc.state)
        name = svc.service
        self.log(f"service {name} (pid {svc.pid}) exited with status {svc.returncode}")
        future = self._ready.get(name)
        if future is not None and not future.done():
            future.set_exception(
                ChildError(
                    "service_failed",
                    f"service {name} exited with {svc.returncode}",
                    returncode=svc.returncode,
                )
            )
        if self._running.get(name) is svc:
            del self._running[name]
            if not self.stopping and was is GenState.LIVE:
                uptime = self.clock.now() - svc.started_mono
                task = asyncio.create_task(self._restart(name, uptime))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self.stopping and not self._running:
            self._stopped.set()

    async def _restart(self, name: str, uptime: float) -> None:
        spec = self._specs[name]

        async def start() -> None:
            await self._spawn(spec, RESTART_TIMEOUT)
            self._restarts[name] += 1

        await keep_restarting(
            f"service {name}",
            policy=self._policies[name],
            clock=self.clock,
            uptime=uptime,
            settled=lambda: self.stopping or name in self._running,
            start=start,
            give_up=self.give_up,
            log=self.log,
            giving_up="{what} keeps dying: giving up (exit status 1)",
        )

    async def call(self, name: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        svc = self._running.get(name)
        if svc is None:
            if name in self._specs:
                raise ChildError("service_failed", f"service {name} is restarting; try again")
            known = ", ".join(sorted(self._specs)) or "none"
            raise UsageError("service_not_found", f"no service {name!r} (services: {known})")
        return await svc.request(
            contract.OP_CALL, timeout=None, method=method, args=args, kwargs=kwargs
        )

    async def stop(self) -> None:
        """SIGTERM every service (its ``stop()`` runs), wait, then kill what is left."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        if not self._running:
            return
        self._stopped.clear()
        for svc in self.running():
            svc.process.send_signal(signal.SIGTERM)
        await self.clock.wait(self._stopped, STOP_TIMEOUT)
        for svc in self.running():
            self.log(f"service {svc.service} did not stop in time: killing it")
            svc.kill()
        await self.clock.wait(self._stopped, KILL_GRACE)

    def status(self, now: float) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self._specs):
            svc = self._running.get(name)
            out.append(
                {
                    "name": name,
                    "pid": svc.pid if svc else None,
                    "state": svc.state if svc else "restarting",
                    "restarts": self._restarts.get(name, 0),
                    "uptime_s": round(now - svc.started_mono, 3) if svc else None,
                }
            )
        return out
