"""One generation, seen from the supervisor: N worker processes running one release.

Every worker serves the same inherited listeners (bound once by the supervisor, never closed
by a swap); each has its own private probe socket and channel (:class:`~.process.Child`). The
generation is what a swap gates, cuts over and drains, as one: it is ready when *every* worker
has started its app and reported ready, healthy when every worker's probe passed, and gone
when its last worker has exited. Before cutover one worker's failure is the whole
generation's (the swap kills it and keeps the old one); after cutover a worker that dies is
restarted alone (:mod:`.recovery`) while the others serve.

Workers are spawned, not forked from a process that imported the app first (see
``docs/supervisor.md``, "Workers"): each boots the release from scratch, in parallel.

States (:mod:`.lifecycle`) are the generation's; each worker has its own as well.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hotswap.release.store import Release
from hotswap.supervisor.lifecycle import NEXT, GenState, advance
from hotswap.supervisor.policy import RestartPolicy
from hotswap.supervisor.process import Child


@dataclass
class Generation:
    number: int
    release: Release
    size: int  # how many workers it runs
    started_mono: float
    started_wall: float
    state: GenState = GenState.STARTING
    workers: list[Child | None] = field(default_factory=list)  # by index: its process now
    restarts: list[int] = field(default_factory=list)  # by index: restarts after cutover
    policies: list[RestartPolicy] = field(default_factory=list)  # by index: their backoff
    loaded: set[str] = field(default_factory=set)  # releases it runs code from
    announced_ready: bool = False  # Ready was posted to its swap
    failed_worker: int | None = None  # the first worker that failed before cutover
    returncode: int | None = None  # the exit status of its last worker to exit
    exited: asyncio.Event = field(default_factory=asyncio.Event)  # every worker is gone

    def __post_init__(self) -> None:
        self.loaded.add(self.release.id)
        self.workers = [None] * self.size
        self.restarts = [0] * self.size

    def arm_policies(self, policy: RestartPolicy) -> None:
        """Each worker restarts on its own backoff, a copy of the supervisor's policy."""
        self.policies = [dataclasses.replace(policy) for _ in range(self.size)]

    def move(self, to: GenState) -> None:
        """Move the generation along the lifecycle, and with it every worker that is not
        gone and may make that move (a replacement still starting may not go live or drain:
        it is killed instead)."""
        self.state = advance(self.state, to)
        for child in self.alive():
            if to is child.state or to in NEXT[child.state]:
                child.move(to)

    def children(self) -> list[Child]:
        return [c for c in self.workers if c is not None]

    def alive(self) -> list[Child]:
        """The workers not reported gone."""
        return [c for c in self.workers if c is not None and not c.exited.is_set()]

    def is_slot(self, child: Child) -> bool:
        """Is ``child`` the process its worker index has now (not one it replaced)."""
        return 0 <= child.worker < self.size and self.workers[child.worker] is child

    def all_ready(self) -> bool:
        """Every worker spawned, alive and ready (reported ``ready``, not yet live)."""
        return all(
            c is not None and not c.exited.is_set() and c.state is GenState.READY
            for c in self.workers
        )

    @property
    def pid(self) -> int:
        """Its first worker's pid (there is always one once it spawned)."""
        first = next((c for c in self.workers if c is not None), None)
        return first.pid if first is not None else 0

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.children()]

    def kill(self) -> None:
        for child in self.alive():
            child.kill()

    def send_nowait(self, op: str, **args: Any) -> None:
        """Fire-and-forget ``op`` to every worker that is not gone."""
        for child in self.alive():
            child.send_nowait(op, **args)

    def set_release(self, release: Release) -> None:
        """A hot upgrade moved every worker to ``release``."""
        self.release = release
        self.loaded.add(release.id)
        for child in self.children():
            child.release = release
            child.loaded.add(release.id)

    def releases(self) -> set[str]:
        used = set(self.loaded)
        for child in self.children():
            used |= child.loaded
        return used

    def info(self) -> dict[str, Any]:
        """What a peer generation is told about this one (incoming/outgoing peer)."""
        return {
            "generation": self.number,
            "pid": self.pid,
            "pids": self.pids,
            "worker_count": self.size,
            "release": self.release.id,
            "version": self.release.manifest.version,
        }

    def status(self, now_mono: float) -> dict[str, Any]:
        return {
            **self.info(),
            "state": self.state,
            "uptime_s": round(now_mono - self.started_mono, 3),
            "started_at": self.started_wall,
            "environment": self.workers[0].environment if self.workers[0] is not None else {},
            "startup_code": self.workers[0].startup if self.workers[0] is not None else {},
            "workers": [
                {**child.status(now_mono), "restarts": self.restarts[child.worker]}
                for child in self.children()
            ],
        }

    def tail(self) -> list[str]:
        """The output that explains a failure: the failed worker's, else the first worker's."""
        index = self.failed_worker if self.failed_worker is not None else 0
        child = self.workers[index] if 0 <= index < self.size else None
        if child is None:
            child = next(iter(self.children()), None)
        return child.tail() if child is not None else []
