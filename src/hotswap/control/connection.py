"""One end of a control-protocol connection: framing, ids, pending calls, answers. Pure.

Like h11's ``Connection`` it touches no socket: the endpoint hands it the bytes it read
(``receive_data``, ``b""`` at end of stream) and takes out what they meant (``next_message``),
and asks it for the bytes to write (``request``, ``event``, ``respond``, ``fail``). All four
endpoints use it: both ends of a generation's channel, the control server and its client, so
there is one framing and one error policy::

    conn = Connection()
    ident, line = conn.request("status", {})      # b'{"v":1,"id":1,"op":"status","args":{}}\\n'
    conn.receive_data(b'{"v":1,"id":1,"ok":true,')
    conn.next_message()                            # None: the line is not complete yet
    conn.receive_data(b'"result":{"pid":7}}\\n')
    conn.next_message()                            # Response(id=1, ok=True, result={"pid": 7})

What it promises:

- **Framing.** One message per line of at most ``MAX_LINE`` bytes. A longer line is a
  :class:`Fault` (``protocol_error``) and the connection skips to the end of that line, so it
  recovers; it never buffers more than ``MAX_LINE`` bytes.
- **Every error path ends in a code.** A line that is not a message is a :class:`Fault` with a
  stable code and, when the line shows one, the id of the request it was, so the endpoint can
  answer that request (:meth:`answer`). ``version_mismatch`` is ``fatal``: the peer speaks
  something else, and the endpoint closes.
- **Ids and pending calls.** Requests it sends are numbered 1, 2, ...; each stays pending until
  its final :class:`Response`. An :class:`Event` with a pending id is that call's progress; id 0
  is an unsolicited event (``hello``, ``ready``) or a connection-level error response. At the
  end of the stream :class:`Closed` hands back the calls still pending, so none waits forever.
- **A request is always answered.** :meth:`respond` and :meth:`fail` never fail to produce a
  line: a result that cannot be encoded (a ``set``, a value over the size cap) becomes an
  ``unencodable_result`` error response, and an error too large to send loses its details.

It is safe to call ``respond``/``fail`` from handler threads while another thread reads.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from hotswap.control.protocol import (
    MAX_LINE,
    Event,
    Message,
    Request,
    Response,
    decode,
    encode,
)
from hotswap.errors import HotswapError, ResourceError, UsageError

# what survives of an error's strings and lists when the error is too large to send
ERROR_MESSAGE_CAP = 8192
ERROR_LIST_CAP = 50


@dataclass(frozen=True)
class Fault:
    """A line that is not a valid message. ``id`` is the request's when the line showed one."""

    error: HotswapError
    id: int | None = None
    fatal: bool = False


@dataclass(frozen=True)
class Closed:
    """The peer ended the stream; ``pending`` are the ids of the calls it never answered."""

    pending: tuple[int, ...] = ()


Incoming = Request | Event | Response | Fault | Closed


class Connection:
    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.pending: dict[int, str] = {}  # id -> op of the calls this end is waiting for
        self._ids = itertools.count(1)
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._skipping = False  # inside an over-long line: drop up to its newline
        self._eof = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :class:`Closed` has been returned."""
        return self._closed

    # -- bytes in, messages out ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the peer; ``b""`` means the end of the stream."""
        if not data:
            self._eof = True
        elif not self._eof:
            self._buf += data

    def next_message(self) -> Incoming | None:
        """The next message, :class:`Fault` or :class:`Closed`; ``None`` when more bytes are
        needed. After :class:`Closed` it returns ``None`` for ever."""
        if self._closed:
            return None
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end < 0:
                return self._incomplete()
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scanned = 0
            if self._skipping:  # the tail of an over-long line, already reported
                self._skipping = False
                continue
            if len(line) > self.max_line:
                return Fault(_too_long(len(line), self.max_line))
            return self._decode(line)

    def close(self) -> Closed:
        """End the connection from this side (e.g. after a fatal fault): what is buffered is
        dropped, and the calls still pending are handed back."""
        self._buf.clear()
        self._eof = self._closed = True
        pending = tuple(self.pending)
        self.pending.clear()
        return Closed(pending)

    def feed(self, data: bytes) -> list[Incoming]:
        """``receive_data`` then every message it completed, in order."""
        self.receive_data(data)
        out = []
        while (message := self.next_message()) is not None:
            out.append(message)
        return out

    def _incomplete(self) -> Fault | Closed | None:
        self._scanned = len(self._buf)
        if len(self._buf) > self.max_line:
            size = len(self._buf)
            self._buf.clear()
            self._scanned = 0
            if not self._skipping:
                self._skipping = True
                return Fault(_too_long(size, self.max_line))
        if not self._eof:
            return None
        if self._buf and not self._skipping:
            self._buf.clear()
            return Fault(ResourceError("protocol_error", "the stream ended inside a line"))
        return self.close()

    def _decode(self, line: bytes) -> Request | Event | Response | Fault:
        try:
            message = decode(line)
        except HotswapError as e:
            return Fault(e, _request_id(line), fatal=e.code == "version_mismatch")
        if isinstance(message, Response):
            self.pending.pop(message.id, None)
        return message

    # -- messages out, as bytes ----------------------------------------------------------

    def request(self, op: str, args: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A new call: its id (now pending) and its line. Arguments that cannot be sent raise
        ``bad_request`` and nothing is registered."""
        ident = next(self._ids)
        line = _encode_or_refuse(Request(ident, op, dict(args or {})), f"the {op!r} request")
        self.pending[ident] = op
        return ident, line

    def forget(self, ident: int) -> None:
        """Stop waiting for a call (its caller gave up); a late answer is still delivered."""
        self.pending.pop(ident, None)

    def event(self, name: str, data: dict[str, Any] | None = None, ident: int = 0) -> bytes:
        """An event line (``ident`` 0: unsolicited; else progress of that request). Data that
        cannot be sent raises ``bad_request``."""
        return _encode_or_refuse(Event(ident, name, dict(data or {})), f"the {name!r} event")

    def respond(self, ident: int, result: Any) -> bytes:
        """The final answer to request ``ident``: never raises, always a line."""
        try:
            return encode(Response(ident, True, result))
        except (TypeError, ValueError, RecursionError, HotswapError) as e:
            return self.fail(
                ident,
                ResourceError("unencodable_result", f"the result cannot be sent: {_why(e)}"),
            )

    def fail(self, ident: int, error: HotswapError) -> bytes:
        """An error answer to request ``ident``: never raises, always a line. An error too
        large to send (a generation's output with a 5 MB line) keeps its code, with its
        strings cut to ``ERROR_MESSAGE_CAP``; failing that, without its details."""
        body = error.to_json()
        for attempt in (body, _trimmed(body), _trimmed({**body, "details": {}})):
            try:
                return encode(Response(ident, False, None, attempt))
            except (TypeError, ValueError, RecursionError, HotswapError):
                continue
        bare = {"code": error.code, "kind": error.kind, "message": "(unprintable)"}
        return encode(Response(ident, False, None, bare))

    def answer(self, fault: Fault) -> bytes:
        """The error response that tells the peer about a bad line it sent."""
        return self.fail(fault.id or 0, fault.error)


def _trimmed(value: Any, depth: int = 0) -> Any:
    """``value`` with every string cut to ``ERROR_MESSAGE_CAP`` and lists to their last 50
    items; what cannot be sent (too deep, not JSON) becomes its ``repr``, cut too."""
    if isinstance(value, str):
        return value if len(value) <= ERROR_MESSAGE_CAP else value[:ERROR_MESSAGE_CAP] + "..."
    if depth > 20:
        return _trimmed(repr(value)[:ERROR_MESSAGE_CAP])
    if isinstance(value, dict):
        return {str(k)[:256]: _trimmed(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_trimmed(v, depth + 1) for v in list(value)[-ERROR_LIST_CAP:]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _trimmed(repr(value))


def _too_long(size: int, limit: int) -> ResourceError:
    return ResourceError("protocol_error", f"a line of over {limit} bytes (at least {size})")


def _why(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "it is nested too deeply"
    if isinstance(e, HotswapError):
        return e.message
    return str(e)


def _encode_or_refuse(message: Message, what: str) -> bytes:
    try:
        return encode(message)
    except (TypeError, ValueError, RecursionError, HotswapError) as e:
        raise UsageError("bad_request", f"{what} cannot be sent: {_why(e)}") from None


def _request_id(line: bytes) -> int | None:
    """The id of a request whose line failed to decode, when the line is a JSON object that
    names an op and an integer id (so that request can be answered); else ``None``."""
    try:
        body = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or "op" not in body:
        return None
    ident = body.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool) and ident > 0:
        return ident
    return None
