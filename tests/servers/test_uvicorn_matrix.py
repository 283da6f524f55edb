"""uvicorn as people install it (``uvicorn[standard]``): every loop and protocol through real
swaps, with real HTTP and WebSocket clients; open WebSockets get 1012 at drain."""

from __future__ import annotations

import contextlib
import fnmatch
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hotswap.testing.load import Load
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor
from tests.servers.conftest import WSAPP

# (version, [tool.hotswap.uvicorn], the loop module, the HTTP and WebSocket protocol modules)
MATRIX: list[tuple[str, dict[str, str], str, str, str]] = [
    # uvicorn's "auto": uvloop, httptools and (by uvicorn's version) either websockets module
    ("1.0.0", {}, "uvloop", "httptools_impl", "websockets*"),
    (
        "2.0.0",
        {"loop": "asyncio", "http": "h11", "ws": "wsproto"},
        "asyncio",
        "h11_impl",
        "wsproto_impl",
    ),
    (
        "3.0.0",
        {"loop": "uvloop", "http": "h11", "ws": "websockets-sansio"},
        "uvloop",
        "h11_impl",
        "websockets_sansio_impl",
    ),
    (
        "4.0.0",
        {"loop": "asyncio", "http": "httptools", "ws": "websockets"},
        "asyncio",
        "httptools_impl",
        "websockets_impl",
    ),
]
SHUTDOWN_TIMEOUT = 20


def _build(build_release: BuildRelease, version: str, settings: dict[str, str]) -> Any:
    tool: dict[str, object] = {"shutdown_timeout": SHUTDOWN_TIMEOUT}
    if settings:
        tool["uvicorn"] = settings
    return build_release(version, source=WSAPP, tool=tool)


def _greeting(ws: ClientConnection) -> tuple[str, int]:
    _hello, version, pid = str(ws.recv(timeout=10)).split()
    return version, int(pid)


def _close_code(ws: ClientConnection, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd is not None else None
    except TimeoutError:
        return -1
    return -1


@pytest.mark.slow
def test_every_loop_and_protocol_swaps_under_load_and_websockets_get_1012(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    releases = [_build(build_release, v, s) for v, s, *_ in MATRIX]
    with supervisor(releases[0].tarball, tmp_path) as sup, contextlib.ExitStack() as clients:
        url = f"ws://127.0.0.1:{sup.port}/ws"
        ws = clients.enter_context(connect(url, open_timeout=10))
        with Load("127.0.0.1", sup.port, keepalive=2, fresh=2) as load:
            assert load.wait_requests(30)
            for i, (version, _settings, loop, http, ws_impl) in enumerate(MATRIX):
                if i:
                    started = time.monotonic()
                    result = sup.upgrade(releases[i].tarball)
                    took = time.monotonic() - started
                    assert result["ok"], result
                    # the old generation's WebSocket was closed with 1012 after the grace,
                    # so the swap took about that, not shutdown_timeout
                    assert _close_code(ws, 5) == 1012
                    assert took < SHUTDOWN_TIMEOUT / 2, took
                    ws = clients.enter_context(connect(url, open_timeout=10))  # reconnects
                info = sup.get_json()
                assert info["version"] == version
                assert info["loop"] == loop, info
                assert info["http"] == [http], info
                assert fnmatch.fnmatch(info["ws"][0], ws_impl) and len(info["ws"]) == 1, info
                assert _greeting(ws)[0] == version
                ws.send("ping")
                assert ws.recv(timeout=10) == f"{version} ping"
                assert load.wait_requests(20)
        assert load.report.failed == 0, load.report.summary()
        assert set(load.report.versions) == {v for v, *_ in MATRIX}
        assert "closed 1 WebSocket(s) (1012)" in sup.log()


def test_app_says_goodbye_itself_on_wait_draining_before_the_1012(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = _build(build_release, *MATRIX[0][:2])
    v2 = _build(build_release, *MATRIX[1][:2])
    with (
        supervisor(v1.tarball, tmp_path) as sup,
        connect(f"ws://127.0.0.1:{sup.port}/ws-goodbye", open_timeout=10) as ws,
    ):
        assert _greeting(ws)[0] == "1.0.0"
        sup.upgrade(v2.tarball)
        assert ws.recv(timeout=5) == "goodbye"
        assert _close_code(ws, 5) == 1001
