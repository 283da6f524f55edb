"""The control protocol codec: framing, bytes, versions, size cap (pure)."""

from __future__ import annotations

import json

import pytest

from hotswap.control import protocol
from hotswap.control.protocol import Event, Request, Response, decode, encode
from hotswap.errors import ChildError, HotswapError, ResourceError, UsageError


def test_round_trip_of_every_message_kind_with_bytes() -> None:
    for message in (
        Request(1, "handoff.put", {"key": "k", "value": {"b": b"\x00\xff", "n": [1, 2.5, None]}}),
        Event(2, "phase", {"phase": "boot", "ms": 12.5}),
        Response(3, True, {"blob": b"abc"}),
        Response(4, False, None, ChildError("health_failed", "503").to_json()),
    ):
        line = encode(message)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode(line[:-1]) == message


def test_error_response_unwraps_to_the_same_class_and_code() -> None:
    response = decode(encode(protocol.error_response(9, UsageError("upgrade_in_progress", "busy"))))
    assert isinstance(response, Response)
    with pytest.raises(UsageError) as caught:
        response.unwrap()
    assert caught.value.code == "upgrade_in_progress"


def test_other_protocol_version_is_refused_clearly() -> None:
    with pytest.raises(ResourceError) as caught:
        decode(json.dumps({"v": 2, "id": 1, "op": "status", "args": {}}).encode())
    assert caught.value.code == "version_mismatch"
    assert "same hotswap version" in caught.value.message


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[1,2]", b'{"v":1}', b'{"v":1,"id":"x","op":"a"}', b'{"v":1,"id":1,"ok":false}'],
)
def test_malformed_lines_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(HotswapError) as caught:
        decode(line)
    assert caught.value.code == "protocol_error"


def test_values_that_could_execute_code_do_not_cross() -> None:
    with pytest.raises(TypeError):
        protocol.to_wire({"f": print})
    with pytest.raises(TypeError):
        protocol.to_wire({1: "non-string key"})


def test_size_cap_on_encode_and_decode() -> None:
    with pytest.raises(UsageError):
        encode(Request(1, "handoff.put", {"value": "x" * (protocol.MAX_LINE + 1)}))
    with pytest.raises(ResourceError):
        decode(b"x" * (protocol.MAX_LINE + 1))


@pytest.mark.parametrize(
    "value",
    [
        {"$bytes": "aGk="},
        {"$dict": {"$bytes": "aGk="}},
        {"$bytes": 5},
        {"outer": [{"$bytes": "not base64!", "more": b"\x00"}], "$": None},
        {"$x": {"$dict": "y"}, "plain": {"$bytes": b"real bytes"}},
        [b"raw", {"$bytes": ""}, {"$dict": {}}],
    ],
)
def test_look_alikes_of_the_escapes_round_trip_as_themselves(value: object) -> None:
    assert protocol.from_wire(json.loads(json.dumps(protocol.to_wire(value)))) == value
    line = encode(Response(1, True, value))
    assert decode(line[:-1]) == Response(1, True, value)


@pytest.mark.parametrize(
    "wire",
    [
        {"$bytes": "not base64!"},
        {"$bytes": "aGk"},  # bad padding
        {"$bytes": "\u00e9"},  # not ASCII
        {"$bytes": 5},
        {"$dict": [1]},
        {"deep": [{"$dict": {"k": {"$bytes": "!!"}}}]},
    ],
)
def test_a_malformed_escape_from_a_peer_is_a_protocol_error(wire: object) -> None:
    for body in (
        {"v": 1, "id": 0, "event": "before_cutover", "data": {"result": wire}},
        {"v": 1, "id": 3, "ok": True, "result": wire},
        {"v": 1, "id": 4, "op": "handoff.put", "args": {"key": "k", "value": wire}},
    ):
        with pytest.raises(ResourceError) as caught:
            decode(json.dumps(body).encode())
        assert caught.value.code == "protocol_error"


def test_deeply_nested_json_is_a_protocol_error() -> None:
    for depth in (10_000, 200_000):
        line = b'{"v":1,"id":1,"op":"status","args":{"a":' + b"[" * depth + b"]" * depth + b"}}"
        with pytest.raises(ResourceError) as caught:
            decode(line)
        assert caught.value.code == "protocol_error"
    with pytest.raises(ResourceError) as caught:
        decode(b"\xff\xfe not utf-8")
    assert caught.value.code == "protocol_error"


@pytest.mark.parametrize(
    ("details", "kept"),
    [
        (
            {"code": "x", "message": "y", "phase": "boot"},
            {"code": "x", "message": "y", "phase": "boot"},
        ),
        (["not", "an", "object"], {}),
        (None, {}),
    ],
)
def test_an_error_from_a_peer_keeps_its_class_whatever_its_details_hold(
    details: object, kept: dict[str, object]
) -> None:
    for code, cls in (("boot_failed", ChildError), ("no_such_code", ResourceError)):
        error = HotswapError.from_json({"code": code, "message": "m", "details": details})
        assert type(error) is cls and error.details == kept
    assert HotswapError.from_json({"code": "boot_failed", "message": "m"}).code == "boot_failed"
