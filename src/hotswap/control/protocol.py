"""The control protocol: versioned, line-delimited JSON, no pickle. Pure: no sockets here.

One message is one JSON object on one line, at most ``MAX_LINE`` bytes. A request::

    {"v": 1, "id": 7, "op": "upgrade", "args": {"tarball": "/srv/app-2.0.tar.gz"}}

zero or more events for the same id while it runs (streamed phases)::

    {"v": 1, "id": 7, "event": "phase", "data": {"phase": "boot", "ms": 812.4}}

and one final response::

    {"v": 1, "id": 7, "ok": true, "result": {"release": "2.0.0-3f2a9c1d0b7e", ...}}
    {"v": 1, "id": 7, "ok": false, "error": {"code": "health_failed", "kind": "child", ...}}

Values are JSON; ``bytes`` travel as ``{"$bytes": "<base64>"}``, and a value's own dict whose
keys start with ``$`` travels wrapped, ``{"$dict": {...}}``, so no user value is ever read as an
escape (a hook returning ``{"$bytes": "x"}`` gets that dict back, not bytes); a malformed
escape from a peer is a ``protocol_error``. A peer that speaks another major version gets
``version_mismatch`` and the connection is closed: a supervisor and a child (or client) of
incompatible hotswap versions refuse each other clearly instead of guessing.
The same framing carries the supervisor <-> generation channel.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from hotswap.errors import HotswapError, ResourceError, UsageError

VERSION = 1
MAX_LINE = 4 * 1024 * 1024
BYTES_KEY = "$bytes"
DICT_KEY = "$dict"
ESCAPE = "$"


def to_wire(value: Any) -> Any:
    """JSON-compatible values and bytes -> JSON values (bytes as ``{"$bytes": b64}``)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        out = {}
        escaped = False
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"keys must be strings, not {type(k).__name__}")
            escaped = escaped or k.startswith(ESCAPE)
            out[k] = to_wire(v)
        return {DICT_KEY: out} if escaped else out
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError("NaN and infinities are not JSON")
        return value
    raise TypeError(f"{type(value).__name__} is not JSON-compatible or bytes")


def from_wire(value: Any) -> Any:
    """The inverse of :func:`to_wire`. Raises ``ValueError`` on a malformed escape (a
    ``$bytes`` that is not a base64 string, a ``$dict`` that is not an object)."""
    if isinstance(value, dict):
        if len(value) == 1 and BYTES_KEY in value:
            data = value[BYTES_KEY]
            if not isinstance(data, str):
                raise ValueError(f"{BYTES_KEY} must be a base64 string")
            try:
                return base64.b64decode(data.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeError):
                raise ValueError(f"{BYTES_KEY} is not valid base64") from None
        if len(value) == 1 and DICT_KEY in value:
            inner = value[DICT_KEY]
            if not isinstance(inner, dict):
                raise ValueError(f"{DICT_KEY} must be an object")
            return {k: from_wire(v) for k, v in inner.items()}
        return {k: from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    return value


@dataclass(frozen=True)
class Request:
    id: int
    op: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    id: int
    event: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    id: int
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None

    def unwrap(self) -> Any:
        """The result, or the error re-raised with its class and code."""
        if self.ok:
            return self.result
        raise HotswapError.from_json(self.error or {})


Message = Request | Event | Response


def encode(message: Message) -> bytes:
    """One message as one line of UTF-8 JSON, newline-terminated."""
    body: dict[str, Any] = {"v": VERSION, "id": message.id}
    if isinstance(message, Request):
        body["op"] = message.op
        body["args"] = to_wire(message.args)
    elif isinstance(message, Event):
        body["event"] = message.event
        body["data"] = to_wire(message.data)
    else:
        body["ok"] = message.ok
        if message.ok:
            body["result"] = to_wire(message.result)
        else:
            body["error"] = message.error
    line = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
    if len(line) > MAX_LINE:
        raise UsageError("bad_request", f"message of {len(line)} bytes exceeds {MAX_LINE}")
    return line


def decode(line: bytes) -> Message:
    """Parse one line. Raises ``protocol_error`` or ``version_mismatch``."""
    if len(line) > MAX_LINE:
        raise ResourceError("protocol_error", f"line of {len(line)} bytes exceeds {MAX_LINE}")
    try:
        body = json.loads(line)
    except (UnicodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ResourceError("protocol_error", f"not a JSON line: {e}") from None
    except RecursionError:
        raise ResourceError("protocol_error", "a JSON line nested too deeply") from None
    try:
        return _message(body)
    except (ValueError, RecursionError) as e:  # a malformed escape; a value nested too deeply
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ResourceError("protocol_error", f"bad value in a message: {detail}") from None


def _message(body: Any) -> Message:
    if not isinstance(body, dict):
        raise ResourceError("protocol_error", "a message must be a JSON object")
    version = body.get("v")
    if version != VERSION:
        raise ResourceError(
            "version_mismatch",
            f"peer speaks control protocol v{version}, this hotswap speaks v{VERSION}: "
            "run the same hotswap version on both sides",
            peer_version=version,
            version=VERSION,
        )
    ident = body.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        raise ResourceError("protocol_error", "message id must be an integer")
    if "op" in body:
        op, args = body["op"], body.get("args", {})
        if not isinstance(op, str) or not isinstance(args, dict):
            raise ResourceError("protocol_error", "request needs a string op and object args")
        return Request(ident, op, from_wire(args))
    if "event" in body:
        data = body.get("data", {})
        if not isinstance(body["event"], str) or not isinstance(data, dict):
            raise ResourceError("protocol_error", "event needs a string name and object data")
        return Event(ident, body["event"], from_wire(data))
    if "ok" in body and isinstance(body["ok"], bool):
        if body["ok"]:
            return Response(ident, True, from_wire(body.get("result")))
        error = body.get("error")
        if not isinstance(error, dict):
            raise ResourceError("protocol_error", "an error response needs an error object")
        return Response(ident, False, None, error)
    raise ResourceError("protocol_error", "message is neither request, event nor response")


def error_response(ident: int, error: HotswapError) -> Response:
    return Response(ident, False, None, error.to_json())
