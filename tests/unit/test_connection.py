"""The protocol connection (pure): framing, ids, pending calls, events, answers. No sockets."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.control.connection import ERROR_MESSAGE_CAP, Closed, Connection, Fault
from hotswap.control.protocol import MAX_LINE, Event, Request, Response, encode
from hotswap.errors import ChildError, HotswapError, ResourceError, UsageError

MESSAGES = [
    Request(1, "handoff.put", {"key": "k", "value": {"b": b"\x00\xff", "$bytes": "x"}}),
    Event(1, "phase", {"phase": "boot", "ms": 12.5}),
    Event(0, "hello", {"pid": 7, "text": "é\u2028"}),
    Response(1, True, {"blob": b"abc", "n": [1, None]}),
    Response(2, False, None, ChildError("health_failed", "503").to_json()),
]
STREAM = b"".join(encode(m) for m in MESSAGES)


def _drain(conn: Connection) -> list[object]:
    out = []
    while (message := conn.next_message()) is not None:
        out.append(message)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_framing_survives_any_chunk_boundaries(cuts: list[int]) -> None:
    conn = Connection()
    bounds = [0, *sorted(cuts), len(STREAM)]
    got: list[object] = []
    for start, end in itertools.pairwise(bounds):
        if end > start:  # b"" is the end of the stream, as a read returns it
            got += conn.feed(STREAM[start:end])
    assert got == MESSAGES
    assert conn.feed(b"") == [Closed(())]


def test_a_partial_line_needs_more_data() -> None:
    conn = Connection()
    conn.receive_data(STREAM[:10])
    assert conn.next_message() is None
    assert conn.next_message() is None


def test_requests_are_numbered_and_pending_until_their_final_response() -> None:
    client, server = Connection(), Connection()
    first, line1 = client.request("status")
    second, line2 = client.request("upgrade", {"release": "r"})
    assert (first, second) == (1, 2) and client.pending == {1: "status", 2: "upgrade"}
    assert server.feed(line1 + line2) == [
        Request(1, "status", {}),
        Request(2, "upgrade", {"release": "r"}),
    ]
    progress = server.event("phase", {"phase": "boot"}, ident=2)
    assert client.feed(progress) == [Event(2, "phase", {"phase": "boot"})]
    assert 2 in client.pending  # an event is progress, not the answer
    assert client.feed(server.respond(2, {"ok": True})) == [Response(2, True, {"ok": True})]
    assert client.pending == {1: "status"}
    client.forget(1)
    assert client.pending == {}
    assert client.feed(server.respond(1, None)) == [Response(1, True, None)]  # late, delivered


def test_the_end_of_the_stream_hands_back_the_calls_still_pending() -> None:
    conn = Connection()
    conn.request("go")
    conn.request("drain")
    assert conn.feed(b"") == [Closed((1, 2))]
    assert conn.closed and conn.pending == {} and conn.next_message() is None
    assert conn.feed(encode(Event(0, "late", {}))) == []


def test_a_stream_ending_inside_a_line_is_a_fault_then_closed() -> None:
    got = Connection().feed(b'{"v":1,"id":1,')
    assert got == []
    conn = Connection()
    conn.receive_data(b'{"v":1,"id":1,')
    conn.receive_data(b"")
    fault, closed = _drain(conn)
    assert isinstance(fault, Fault) and fault.error.code == "protocol_error"
    assert closed == Closed(())


@pytest.mark.parametrize("split", [False, True])
def test_an_over_long_line_is_a_fault_and_the_connection_recovers(split: bool) -> None:
    conn = Connection(max_line=64)
    junk = b"x" * 200 + b"\n"
    good = encode(Event(0, "hello", {}))
    chunks = [junk[:50], junk[50:120], junk[120:] + good] if split else [junk + good]
    got: list[object] = []
    for chunk in chunks:
        got += conn.feed(chunk)
        assert len(conn._buf) <= 64 + len(chunk)  # bounded, never the whole line
    (fault, event) = got
    assert isinstance(fault, Fault) and fault.error.code == "protocol_error" and not fault.fatal
    assert event == Event(0, "hello", {})


def test_the_limit_is_max_line() -> None:
    assert Connection().max_line == MAX_LINE
    conn = Connection()
    got = conn.feed(b"x" * (MAX_LINE + 1))
    assert len(got) == 1 and isinstance(got[0], Fault)
    assert conn.feed(b"still the same line\n" + encode(Event(0, "ok", {}))) == [Event(0, "ok", {})]


@pytest.mark.parametrize(
    ("line", "ident"),
    [
        (b"not json", None),
        (b"[1]", None),
        (b'{"v":1,"id":5,"op":"x","args":[]}', 5),
        (b'{"v":1,"id":6,"op":"handoff.put","args":{"value":{"$bytes":"!!"}}}', 6),
        (b'{"v":1,"id":7,"op":"x","args":{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}}", None),
        (b'{"v":1,"id":true,"op":"x"}', None),
        (b'{"v":1,"id":8,"event":"e","data":{"$bytes":"!!"}}', None),
        (b"\xff\xfe", None),
    ],
)
def test_a_bad_line_is_a_fault_with_a_code_and_its_request_is_answered(
    line: bytes, ident: int | None
) -> None:
    server, client = Connection(), Connection()
    (fault,) = server.feed(line + b"\n")
    assert isinstance(fault, Fault) and fault.error.code == "protocol_error"
    assert fault.id == ident and not fault.fatal
    (answer,) = client.feed(server.answer(fault))
    assert isinstance(answer, Response) and answer.id == (ident or 0) and not answer.ok
    with pytest.raises(ResourceError) as caught:
        answer.unwrap()
    assert caught.value.code == "protocol_error"
    assert server.feed(encode(Request(9, "status", {}))) == [Request(9, "status", {})]


def test_another_protocol_version_is_a_fatal_fault() -> None:
    conn = Connection()
    conn.request("status")
    (fault,) = conn.feed(json.dumps({"v": 2, "id": 1, "op": "x"}).encode() + b"\n")
    assert isinstance(fault, Fault) and fault.fatal and fault.error.code == "version_mismatch"
    assert conn.close() == Closed((1,))
    assert conn.closed and conn.next_message() is None


def _unwrap(line: bytes) -> HotswapError:
    (response,) = Connection().feed(line)
    assert isinstance(response, Response)
    with pytest.raises(HotswapError) as caught:
        response.unwrap()
    return caught.value


@pytest.mark.parametrize(
    "result",
    [
        {"a", "b"},
        {"f": print},
        {1: "int key"},
        float("nan"),
        "x" * MAX_LINE,
        "deep",
    ],
    ids=["set", "function", "int-key", "nan", "oversize", "deep"],
)
def test_a_result_that_cannot_be_encoded_is_still_answered_with_a_code(result: object) -> None:
    if result == "deep":  # nested past the interpreter's recursion limit
        result = []
        for _ in range(5000):
            result = [result]
    line = Connection().respond(3, result)
    assert line.endswith(b"\n") and len(line) <= MAX_LINE
    error = _unwrap(line)
    assert error.code == "unencodable_result" and isinstance(error, ResourceError)


def test_an_error_too_large_to_send_keeps_its_code_with_its_strings_cut() -> None:
    lines = [f"line {i}" for i in range(200)] + ["y" * MAX_LINE]
    error = ChildError("boot_failed", "m" * (2 * MAX_LINE), output=lines, status=1)
    sent = _unwrap(Connection().fail(4, error))
    assert isinstance(sent, ChildError) and sent.code == "boot_failed"
    assert sent.message == "m" * ERROR_MESSAGE_CAP + "..."
    assert sent.details["status"] == 1
    assert sent.details["output"] == [*lines[-50:-1], "y" * ERROR_MESSAGE_CAP + "..."]


def test_an_error_whose_details_cannot_be_sent_keeps_its_code() -> None:
    error = ChildError("boot_failed", "m", ratio=float("nan"))
    sent = _unwrap(Connection().fail(4, error))
    assert isinstance(sent, ChildError) and sent.code == "boot_failed" and sent.details == {}


def test_arguments_that_cannot_be_sent_are_refused_before_anything_is_pending() -> None:
    conn = Connection()
    for args in ({"v": {1, 2}}, {"v": "x" * MAX_LINE}):
        with pytest.raises(UsageError) as caught:
            conn.request("handoff.put", args)
        assert caught.value.code == "bad_request"
    with pytest.raises(UsageError):
        conn.event("before_cutover", {"result": object()})
    assert conn.pending == {}
    assert conn.request("status")[0] == 3  # ids are never reused


def test_responses_and_events_are_told_apart() -> None:
    conn = Connection()
    ident, _ = conn.request("upgrade")
    got = conn.feed(
        encode(Event(0, "ready", {}))
        + encode(Event(ident, "phase", {"phase": "boot"}))
        + encode(Response(ident, True, 1))
    )
    assert [type(m) for m in got] == [Event, Event, Response]
    assert conn.pending == {}
