"""The child's end of its channel (``child/channel.py``) over a real socketpair: every request
is answered with a code, a bad line is answered and the channel goes on, EOF is reported."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from hotswap.child.channel import Channel
from hotswap.control.connection import Connection
from hotswap.control.protocol import Event, Response
from hotswap.errors import ChildError


class Supervisor:
    """The supervisor's end, driven by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = Connection()
        self.sock.settimeout(10)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, op: str, **args: Any) -> int:
        ident, line = self.conn.request(op, args)
        self.send(line)
        return ident

    def next(self) -> Any:
        while (message := self.conn.next_message()) is None:
            self.conn.receive_data(self.sock.recv(65536))
        return message


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Supervisor, threading.Event]]:
    ours, theirs = socket.socketpair()
    channel = Channel(theirs)
    gone = threading.Event()
    channel.on_eof(gone.set)
    channel.handle("tags", lambda _args: {"a", "b"})
    channel.handle("echo", lambda args: args, threaded=True)

    def boom(_args: dict[str, Any]) -> None:
        raise ChildError("hot_upgrade_failed", "as asked")

    channel.handle("boom", boom)
    channel.start()
    try:
        yield channel, Supervisor(ours), gone
    finally:
        ours.close()
        assert gone.wait(10)
        theirs.close()


def _answer(sup: Supervisor, ident: int) -> Response:
    message = sup.next()
    assert isinstance(message, Response) and message.id == ident
    return message


def test_every_request_is_answered_with_a_result_or_a_code(
    pair: tuple[Channel, Supervisor, threading.Event],
) -> None:
    _channel, sup, _gone = pair
    assert _answer(sup, sup.call("echo", x=b"\x00", y={"$bytes": "!"})).result == {
        "x": b"\x00",
        "y": {"$bytes": "!"},
    }
    for op, code in (("tags", "unencodable_result"), ("boom", "hot_upgrade_failed")):
        answer = _answer(sup, sup.call(op))
        assert not answer.ok and answer.error is not None and answer.error["code"] == code
    unknown = _answer(sup, sup.call("no_such_op"))
    assert unknown.error is not None and unknown.error["code"] == "protocol_error"


def test_a_bad_line_is_answered_and_the_channel_goes_on(
    pair: tuple[Channel, Supervisor, threading.Event],
) -> None:
    channel, sup, gone = pair
    sup.send(b'{"v":1,"id":77,"op":"echo","args":{"v":{"$bytes":"not base64!"}}}\n')
    bad = _answer(sup, 77)
    assert bad.error is not None and bad.error["code"] == "protocol_error"
    sup.send(b"garbage\n")  # no id to answer: logged, and the channel goes on
    assert _answer(sup, sup.call("echo", n=1)).result == {"n": 1}
    channel.event("ready", pid=1)
    assert sup.next() == Event(0, "ready", {"pid": 1})
    assert not gone.is_set()


def test_another_protocol_version_ends_the_channel(
    pair: tuple[Channel, Supervisor, threading.Event],
) -> None:
    _channel, sup, gone = pair
    sup.send(b'{"v":2,"id":1,"op":"echo","args":{}}\n')
    answer = _answer(sup, 1)
    assert answer.error is not None and answer.error["code"] == "version_mismatch"
    assert gone.wait(10)  # as if the supervisor were gone: the child stops and exits
