"""The per-message cost of the control protocol's ``Connection`` against the code path it
replaced (the codec plus a bare line buffer), for one request and its response.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_connection.py [--rounds 31] [--messages 2000]

Both sides run in this one process, interleaved round by round, with no socket: the figure is
the CPU cost of framing, ids and encode/decode, which is all the refactor changed (a socket's
send/recv costs the same either way). One exchange is: the caller encodes a request, the peer
frames and decodes it, encodes a response, and the caller frames and decodes that, as on a
``handoff.put`` and a ``status``-sized answer. The bytes arrive in 64 KiB reads, as the
endpoints read them.

- ``old``: ``encode`` / a ``LineBuffer`` (the class each endpoint carried before, reproduced
  here) / ``decode``, ids and pending calls left to the caller;
- ``Connection``: ``request`` / ``feed`` / ``respond`` / ``feed``, with the id, the pending
  call and the always-answer guarantee included.

Columns: CPU microseconds of this process per exchange (``time.process_time``, so the other
work on a shared machine does not count; median of the rounds, and the fastest round), and
the ratio Connection / old.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from _common import machine_info, median, print_machine, table
from hotswap.control.connection import Connection
from hotswap.control.protocol import MAX_LINE, Request, Response, decode, encode
from hotswap.errors import ResourceError

ARGS = {"key": "session", "value": {"users": 3, "tags": ["a", "b"], "blob": b"\x00\xff" * 8}}
RESULT = {
    "supervisor": {"pid": 4242, "hotswap": "0.1.0", "uptime_s": 812.5, "stopping": False},
    "active": {"generation": 7, "pid": 4300, "release": "2.0.0-3f2a9c1d0b7e", "state": "live"},
    "generations": [{"generation": 7, "pid": 4300, "state": "live", "uptime_s": 11.2}],
    "current": "2.0.0-3f2a9c1d0b7e",
    "upgrading": False,
}
READ = 65536


class OldLineBuffer:
    """The line buffer the four endpoints used before ``Connection`` (as it was)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            lines.append(bytes(self._buf[:end]))
            del self._buf[: end + 1]
        if len(self._buf) > MAX_LINE:
            raise ResourceError("protocol_error", f"a line exceeds {MAX_LINE} bytes")
        return lines


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + READ] for i in range(0, len(data), READ)]


def old_path(n: int) -> float:
    """n exchanges through the old path; returns seconds."""
    peer_buf, caller_buf = OldLineBuffer(), OldLineBuffer()
    started = time.process_time()
    for ident in range(1, n + 1):
        wire = encode(Request(ident, "handoff.put", ARGS))
        for chunk in _chunks(wire):
            for line in peer_buf.feed(chunk):
                request = decode(line)
                answer = encode(Response(request.id, True, RESULT))
                for back in _chunks(answer):
                    for reply in caller_buf.feed(back):
                        decode(reply)
    return time.process_time() - started


def connection_path(n: int) -> float:
    """n exchanges through two Connections; returns seconds."""
    caller, peer = Connection(), Connection()
    started = time.process_time()
    for _ in range(n):
        ident, wire = caller.request("handoff.put", ARGS)
        for chunk in _chunks(wire):
            for request in peer.feed(chunk):
                assert isinstance(request, Request)
                answer = peer.respond(request.id, RESULT)
                for back in _chunks(answer):
                    for reply in caller.feed(back):
                        assert isinstance(reply, Response) and reply.id == ident
    assert not caller.pending
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--messages", type=int, default=2000)
    opts = parser.parse_args()
    print_machine(machine_info())
    sides: dict[str, Callable[[int], float]] = {"old": old_path, "Connection": connection_path}
    per: dict[str, list[float]] = {name: [] for name in sides}
    for run in sides.values():
        run(200)  # warm up
    for i in range(opts.rounds):
        order = list(sides.items()) if i % 2 == 0 else list(reversed(sides.items()))
        for name, run in order:
            per[name].append(run(opts.messages) / opts.messages * 1e6)
    line = len(encode(Request(1, "handoff.put", ARGS))) + len(encode(Response(1, True, RESULT)))
    print(
        f"{opts.rounds} rounds of {opts.messages} exchanges ({line} bytes of request + response"
        f" each), pid {os.getpid()}, interleaved\n"
    )
    rows = [[name, median(per[name]), min(per[name])] for name in sides]
    ratio = median(per["Connection"]) / median(per["old"])
    rows.append(["Connection / old", ratio, min(per["Connection"]) / min(per["old"])])
    print(table(["path", "CPU us / exchange (median)", "CPU us / exchange (best)"], rows, digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
