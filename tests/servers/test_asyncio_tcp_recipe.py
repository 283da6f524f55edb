"""The plain asyncio TCP recipe of docs/stacks/tcp.md (tests/fixtures/asynciotcp): persistent
clients are told BYE at drain and reconnect to the new generation; nothing is lost."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import HotswapError
from tests.conftest import BuildRelease
from tests.e2e.harness import Running, start_supervisor, stop_and_check, wait_for
from tests.servers.conftest import FIXTURES


def _client(port: int, stop: threading.Event, out: dict[str, Any]) -> None:
    """Send a line every 10 ms on one connection; reconnect on BYE; every line must be
    answered."""
    versions: set[str] = set()
    errors: list[str] = []
    answered = reconnects = 0
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                lines = sock.makefile("rb")
                versions.add(lines.readline().decode().split()[1])
                while not stop.is_set():
                    sock.sendall(b"ping\n")
                    reply = lines.readline().decode()
                    if reply.startswith("BYE"):
                        # said before our ping was read: the ping is not lost, the client
                        # sends it again on the new connection
                        reconnects += 1
                        break
                    if not reply.endswith(" ping\n"):
                        errors.append(f"reply {reply!r}")
                        break
                    answered += 1
                    stop.wait(0.01)
        except OSError as e:
            errors.append(repr(e))
    out.update(versions=versions, errors=errors, answered=answered, reconnects=reconnects)


def _serving(sup: Running) -> bool:
    try:
        status = sup.status()
    except HotswapError:
        return False
    return bool(status["generations"]) and not status["upgrading"]


@pytest.mark.slow
def test_asyncio_line_server_swaps_with_persistent_clients_losing_nothing(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = [build_release(v, source=FIXTURES / "asynciotcp") for v in ("1.0.0", "2.0.0")]
    sup = start_supervisor(releases[0].tarball, tmp_path / "state", wait=False)
    try:
        wait_for(lambda: _serving(sup), timeout=60, what="the first generation to serve")
        stop = threading.Event()
        results: list[dict[str, Any]] = [{} for _ in range(3)]
        clients = [threading.Thread(target=_client, args=(sup.port, stop, out)) for out in results]
        for client in clients:
            client.start()
        for i in range(3):
            assert sup.upgrade(releases[(i + 1) % 2].tarball)["ok"]
        stop.set()
        for client in clients:
            client.join(30)
        sup.status()
    finally:
        stop_and_check(sup, sup.seen_pids)
    for out in results:
        assert out["errors"] == [], out
        assert out["versions"] == {"1.0.0", "2.0.0"} and out["reconnects"] >= 3, out
        assert out["answered"] > 10, out
