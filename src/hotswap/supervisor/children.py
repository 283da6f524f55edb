"""The one seam between the supervisor and its children (tableflip's ``env.go``).

Everything the supervisor asks of the operating system about child processes goes through a
:class:`Children`: preparing what children run (the runtime copy of hotswap), spawning a
generation's worker or a service with its exact descriptor layout (listeners, probe socket,
channel, log pipe), signalling it (its whole process group), probing its private health
socket, and learning of its exit, delivered as the ``on_exit`` callback once it is reaped and
its channel read to the end. The real one is
:class:`hotswap.supervisor.oschildren.OsChildren`; :class:`hotswap.testing.FakeChildren` lets
a test script children (ready, exit with code N, hang, send a bad line) without a process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hotswap.release.config import ServiceSpec
from hotswap.release.store import Release
from hotswap.supervisor.listeners import Listener

if TYPE_CHECKING:
    from hotswap.supervisor.process import Child


@dataclass
class Hub:
    """What the supervisor gives the seam: where children live and where their news goes."""

    state_dir: Path
    run_dir: Path
    control_path: Path
    listeners: list[Listener]
    on_event: Callable[[Child, str, dict[str, Any]], None]
    on_exit: Callable[[Child], None]
    log: Callable[[str], None]


class Children(Protocol):
    async def open(self, hub: Hub) -> None:
        """Get ready to spawn (the supervisor calls it once, before the first spawn)."""

    async def spawn_worker(
        self,
        number: int,
        worker: int,
        workers: int,
        release: Release,
        outgoing: dict[str, Any] | None,
    ) -> Child:
        """Start worker ``worker`` of ``workers`` of generation ``number`` of ``release``;
        ``outgoing`` is what it is told of the generation it replaces."""

    async def spawn_service(self, spec: ServiceSpec, release: Release) -> Child:
        """Start the service ``spec`` from ``release``."""

    async def probe(self, child: Child, target: str, host: str = "localhost") -> int:
        """``GET target`` (``Host: host``) on the worker's private probe socket; the HTTP
        status. Raises OSError, ValueError or asyncio.IncompleteReadError if it cannot
        tell."""
