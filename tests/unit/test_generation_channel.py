"""The supervisor's side of a generation's channel, against a real child process: whatever the
child sends, the reader ends in a code and the exit is always reported (never a dead reader)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hotswap.release.store import Release
from hotswap.supervisor.children import Hub
from hotswap.supervisor.oschildren import OsChildren
from hotswap.supervisor.process import Child
from hotswap.supervisor.spawn import Spawner

# A stand-in for boot.py: sends the line in LINE.bin on the channel, then waits to be killed.
CHILD = """
import os, socket
sock = socket.socket(fileno=int(os.environ["HOTSWAP_CHANNEL_FD"]))
with open(os.path.join(os.path.dirname(__file__), "LINE.bin"), "rb") as f:
    sock.sendall(f.read() + b"\\n")
while sock.recv(65536):
    pass
"""


async def _run_child(tmp_path: Path, line: bytes, *, raise_in_on_event: bool = False) -> Any:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "boot.py").write_text(textwrap.dedent(CHILD))
    (runtime / "LINE.bin").write_bytes(line)
    events: list[tuple[str, dict[str, Any]]] = []
    exited = asyncio.Event()
    logged: list[str] = []

    def on_event(gen: Child, name: str, data: dict[str, Any]) -> None:
        events.append((name, data))
        if name == "protocol_error":
            gen.kill()
        elif raise_in_on_event:
            raise RuntimeError("a bug in the event routing")

    def on_exit(gen: Child) -> None:
        gen.close()
        exited.set()

    spawner = OsChildren(Spawner(), runtime=runtime)
    await spawner.open(
        Hub(
            state_dir=tmp_path,
            run_dir=tmp_path,
            control_path=tmp_path / "control.sock",
            listeners=[],
            on_event=on_event,
            on_exit=on_exit,
            log=logged.append,
        )
    )
    release = Release("test-1", tmp_path, None)  # type: ignore[arg-type]
    await spawner.spawn_worker(1, 0, 1, release, None)
    await asyncio.wait_for(exited.wait(), 10)
    return events, logged


@pytest.mark.parametrize(
    "line",
    [
        b'{"v":1,"id":0,"event":"before_cutover","data":{"result":{"$bytes":"not base64!"}}}',
        b'{"v":1,"id":0,"event":"hello","data":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        b'{"v":1,"id":0,"event":"hello","data":{"s":"\xff\xfe"}}',
    ],
    ids=["bad-base64", "deep-nesting", "not-utf8"],
)
def test_a_bad_line_from_a_generation_is_a_protocol_error_and_its_exit_is_reported(
    tmp_path: Path, line: bytes
) -> None:
    events, _logged = asyncio.run(_run_child(tmp_path, line))
    assert [name for name, _ in events] == ["protocol_error"]
    assert events[0][1]["error"]["code"] == "protocol_error"


def test_a_reader_that_fails_still_reports_the_exit(tmp_path: Path) -> None:
    line = b'{"v":1,"id":0,"event":"hello","data":{}}'
    events, logged = asyncio.run(_run_child(tmp_path, line, raise_in_on_event=True))
    assert [name for name, _ in events] == ["hello", "protocol_error"]
    assert any("a bug in the event routing" in entry for entry in logged)
