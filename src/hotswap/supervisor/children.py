"""The one seam between the supervisor and its children (tableflip's ``env.go``).

Everything the supervisor asks of the operating system about child processes goes through a
:class:`Children`: preparing what children run (the runtime copy of hotswap), spawning one with
its exact descriptor layout (listeners, probe socket, channel, log pipe), signalling it (its
whole process group), probing its private health socket, and learning of its exit, delivered
as the ``on_exit`` callback once it is reaped and its channel read to the end. The real one is
:class:`hotswap.supervisor.generation.OsChildren`; :class:`hotswap.testing.FakeChildren` lets
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
    from hotswap.supervisor.generation import Generation


@dataclass
class Hub:
    """What the supervisor gives the seam: where children live and where their news goes."""

    state_dir: Path
    run_dir: Path
    control_path: Path
    listeners: list[Listener]
    on_event: Callable[[Generation, str, dict[str, Any]], None]
    on_exit: Callable[[Generation], None]
    log: Callable[[str], None]


class Children(Protocol):
    async def open(self, hub: Hub) -> None:
        """Get ready to spawn (the supervisor calls it once, before the first spawn)."""

    async def spawn(
        self,
        number: int,
        release: Release,
        outgoing: Generation | None,
        service: ServiceSpec | None = None,
    ) -> Generation:
        """Start generation ``number`` of ``release`` (or, with ``service``, a service)."""

    async def probe(self, gen: Generation, target: str, host: str = "localhost") -> int:
        """``GET target`` (``Host: host``) on the generation's private probe socket; the
        HTTP status. Raises OSError, ValueError or asyncio.IncompleteReadError if it cannot
        tell."""
