"""The control server against a stand-in supervisor (its typed interface, ``Steerable``), over a
real Unix socket with the real client: every op's fields are checked and named, only validated
values reach the supervisor, and every request gets an answer with a code."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hotswap.control.client import Client
from hotswap.control.connection import Connection
from hotswap.control.protocol import Response
from hotswap.control.server import ControlServer, Progress, Steerable
from hotswap.errors import HotswapError
from hotswap.supervisor.handoff import HandoffStore
from hotswap.supervisor.logsink import LogSink

T = TypeVar("T")
SHA = "ab" * 32
HOT_DEFAULTS = {"suspend_timeout": 3.0, "allow_dependency_changes": False, "no_quiesce": False}


class FakeSupervisor:
    def __init__(self) -> None:
        self.handoff = HandoffStore(None)
        self.calls: list[tuple[Any, ...]] = []
        self.logged: list[str] = []
        self.logs = LogSink(fd=os.open(os.devnull, os.O_WRONLY))  # closed with the process

    def log(self, message: str) -> None:
        self.logged.append(message)

    def status(self) -> dict[str, Any]:
        return {"upgrading": False}

    async def upgrade(
        self,
        ref: str,
        *,
        how: str = "blue-green",
        sha256: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        if progress is not None:
            progress({"phase": "boot", "state": "started"})
        self.calls.append(("upgrade", ref, how, sha256))
        return {"release": ref}

    async def rollback(self, *, progress: Progress | None = None) -> dict[str, Any]:
        self.calls.append(("rollback",))
        return {"how": "rollback"}

    async def hot_upgrade(
        self, ref: str, *, sha256: str | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.calls.append(("hot_upgrade", ref, sha256, options))
        return {"ok": True}

    async def call_service(
        self, name: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        self.calls.append(("service.call", name, method, args, kwargs))
        if method == "tags":
            return {"a", "b"}  # cannot be sent
        if method == "bug":
            raise TypeError("got an unexpected keyword argument 'release_root'")
        return len(args)


def _serve(tmp_path: Path, sup: Steerable, body: Callable[[Path], T]) -> T:
    async def main() -> T:
        server = ControlServer(sup)
        path = tmp_path / "control.sock"
        await server.start(path)
        try:
            return await asyncio.wait_for(asyncio.to_thread(body, path), 20)
        finally:
            await server.close()

    return asyncio.run(main())


def _call(path: Path, op: str, **args: Any) -> Any:
    with Client(path, timeout=10) as client:
        return client.call(op, **args)


def _error(path: Path, op: str, **args: Any) -> HotswapError:
    with pytest.raises(HotswapError) as caught:
        _call(path, op, **args)
    return caught.value


@pytest.mark.parametrize(
    ("op", "args", "field"),
    [
        ("upgrade", {}, "release"),
        ("upgrade", {"release": 5}, "release"),
        ("upgrade", {"release": ""}, "release"),
        ("upgrade", {"release": "r", "sha256": 5}, "sha256"),
        ("upgrade", {"release": "r", "sha256": "xyz"}, "sha256"),
        ("hot_upgrade", {"release": ["r"]}, "release"),
        ("hot_upgrade", {"release": "r", "suspend_timeout": "3"}, "suspend_timeout"),
        ("hot_upgrade", {"release": "r", "suspend_timeout": True}, "suspend_timeout"),
        ("hot_upgrade", {"release": "r", "suspend_timeout": -1}, "suspend_timeout"),
        ("hot_upgrade", {"release": "r", "suspend_timeout": 1e300}, "suspend_timeout"),
        (
            "hot_upgrade",
            {"release": "r", "allow_dependency_changes": 1},
            "allow_dependency_changes",
        ),
        ("hot_upgrade", {"release": "r", "no_quiesce": "yes"}, "no_quiesce"),
        ("hot_upgrade", {"release": "r", "release_root": "/tmp/evil"}, "release_root"),
        ("hot_upgrade", {"release": "r", "release_id": "x"}, "release_id"),
        ("service.call", {"name": 1, "method": "m"}, "name"),
        ("service.call", {"name": "s", "method": None}, "method"),
        ("service.call", {"name": "s", "method": "m", "args": {"a": 1}}, "args"),
        ("service.call", {"name": "s", "method": "m", "kwargs": [1]}, "kwargs"),
        ("handoff.put", {"key": 3, "value": 1}, "key"),
        ("handoff.get", {"key": None}, "key"),
        ("handoff.delete", {}, "key"),
        ("status", {"verbose": True}, "verbose"),
        ("rollback", {"release": "r"}, "release"),
        ("logs", {"after": "1"}, "after"),
        ("logs", {"after": -1}, "after"),
        ("logs", {"limit": 1.5}, "limit"),
        ("logs", {"limit": 10**6}, "limit"),
        ("logs", {"wait": 0}, "wait"),
        ("logs", {"wait": 1e9}, "wait"),
        ("logs", {"follow": True}, "follow"),
    ],
)
def test_a_field_of_the_wrong_type_is_bad_request_naming_it(
    tmp_path: Path, op: str, args: dict[str, Any], field: str
) -> None:
    sup = FakeSupervisor()
    error = _serve(tmp_path, sup, lambda path: _error(path, op, **args))
    assert error.code == "bad_request" and repr(field) in error.message, error
    assert sup.calls == []  # nothing reached the supervisor


def test_only_validated_fields_reach_the_supervisor(tmp_path: Path) -> None:
    sup = FakeSupervisor()

    def body(path: Path) -> None:
        _call(path, "hot_upgrade", release="r", sha256=SHA)
        _call(path, "hot_upgrade", release="r", suspend_timeout=1, no_quiesce=True)
        _call(path, "upgrade", release="r", sha256=None)
        assert _call(path, "service.call", name="s", method="m", args=[1, 2]) == 2

    _serve(tmp_path, sup, body)
    assert sup.calls == [
        ("hot_upgrade", "r", SHA, {**HOT_DEFAULTS}),
        ("hot_upgrade", "r", None, {**HOT_DEFAULTS, "suspend_timeout": 1.0, "no_quiesce": True}),
        ("upgrade", "r", "blue-green", None),
        ("service.call", "s", "m", [1, 2], {}),
    ]


def test_rollback_is_the_supervisors_choice_and_streams_its_phases(tmp_path: Path) -> None:
    sup = FakeSupervisor()
    events: list[dict[str, Any]] = []

    def body(path: Path) -> Any:
        with Client(path, timeout=10) as client:
            upgraded = client.call("upgrade", on_event=events.append, release="r")
            return upgraded, client.call("rollback")

    assert _serve(tmp_path, sup, body) == ({"release": "r"}, {"how": "rollback"})
    assert sup.calls[-1] == ("rollback",)
    assert events == [{"phase": "boot", "state": "started"}]


def test_every_failure_is_answered_with_a_code(tmp_path: Path) -> None:
    sup = FakeSupervisor()

    def body(path: Path) -> list[str]:
        return [
            _error(path, "service.call", name="s", method="tags").code,
            _error(path, "service.call", name="s", method="bug").code,
            _error(path, "no.such.op").code,
            _error(path, "handoff.put", key="k", value={1, 2}).code,  # refused by the client
        ]

    assert _serve(tmp_path, sup, body) == [
        "unencodable_result",
        "supervisor_failed",
        "bad_request",
        "bad_request",
    ]
    assert any("release_root" in line for line in sup.logged)


def _raw_exchange(path: Path, lines: list[bytes]) -> list[Any]:
    """Send raw lines on one connection, then a status; the answers, in order."""
    conn = Connection()
    answers: list[Any] = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        for line in lines:
            sock.sendall(line + b"\n")
        sock.sendall(conn.request("status")[1])
        while len(answers) < len(lines) + 1:
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            answers += conn.feed(data)
    return answers


def test_deep_or_malformed_lines_are_answered_and_the_connection_goes_on(tmp_path: Path) -> None:
    deep = b'{"v":1,"id":41,"op":"status","args":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    bad_bytes = json.dumps(
        {"v": 1, "id": 42, "op": "handoff.put", "args": {"key": "k", "value": {"$bytes": "!"}}}
    ).encode()
    lines = [deep, bad_bytes, b"not json", b"x" * (4 * 1024 * 1024 + 10)]
    sup = FakeSupervisor()
    answers = _serve(tmp_path, sup, lambda path: _raw_exchange(path, lines))
    *errors, status = answers
    assert [(a.id, a.ok, a.error["code"]) for a in errors] == [
        (0, False, "protocol_error"),
        (42, False, "protocol_error"),
        (0, False, "protocol_error"),
        (0, False, "protocol_error"),
    ]
    assert isinstance(status, Response) and status.ok and status.result == {"upgrading": False}
    assert sup.handoff.get_all() == {}


def test_the_server_answers_every_control_op_of_the_contract() -> None:
    from hotswap import contract
    from hotswap.control import server

    control_ops = {
        contract.OP_PING,
        contract.OP_STATUS,
        contract.OP_UPGRADE,
        contract.OP_ROLLBACK,
        contract.OP_HOT_UPGRADE,
        contract.OP_SERVICE_CALL,
        contract.OP_HANDOFF_PUT,
        contract.OP_HANDOFF_GET,
        contract.OP_HANDOFF_GET_ALL,
        contract.OP_HANDOFF_DELETE,
        contract.OP_LOGS,
    }
    assert set(server._OPS) == control_ops


def test_a_state_dir_too_deep_for_af_unix_still_serves_and_is_reached(tmp_path: Path) -> None:
    """``control.sock`` under a state dir deep enough that its path is over AF_UNIX's 108
    bytes is bound and reached through the directory's descriptor (``/proc/self/fd/N``):
    ``hotswap run`` used to fail there with ``io_error`` after binding its listeners."""
    deep = tmp_path / ("d" * 110)
    deep.mkdir()
    assert len(str(deep / "control.sock").encode()) > 108

    def body(path: Path) -> tuple[Any, int]:
        return _call(path, "status"), path.stat().st_mode & 0o777

    status, mode = _serve(deep, FakeSupervisor(), body)
    assert status == {"upgrading": False}
    assert mode == 0o600  # still created under umask 0177


def test_logs_reads_after_a_cursor_and_waits_for_a_line_without_holding_up_other_requests(
    tmp_path: Path,
) -> None:
    sup = FakeSupervisor()
    sup.logs.write("one")
    sup.logs.write("two")

    def body(path: Path) -> None:
        page = _call(path, "logs", limit=1)
        assert [x["message"] for x in page["lines"]] == ["two"] and page["next"] == 2
        assert page["missed"] == 1
        threading.Timer(0.3, sup.logs.write, args=("three",)).start()
        waited: dict[str, Any] = {}
        poll = threading.Thread(
            target=lambda: waited.update(_call(path, "logs", after=2, wait=20)), daemon=True
        )
        started = time.monotonic()
        poll.start()
        assert _call(path, "status") == {"upgrading": False}  # while the other one waits
        poll.join(20)
        assert [x["message"] for x in waited["lines"]] == ["three"]
        assert time.monotonic() - started < 10  # woken by the line, not by its timeout

    _serve(tmp_path, sup, body)
