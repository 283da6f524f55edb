"""The supervisor's log: lines to stderr that never block the event loop, and a ring of the
recent ones that ``hotswap logs`` reads.

stderr may be a pipe nobody reads (a stuck log collector). A ``print`` on the loop would then
block it, and with it status, swaps, restarts, timers and SIGTERM. So lines go into a bounded
queue that one writer thread empties with plain blocking writes; when the queue is full, new
lines are dropped and counted (``status`` reports ``log_lines_dropped``), and the writer says
how many it lost once it can write again. ``write`` may be called from any thread.

Every line is also an entry, kept in a ring bounded in lines and in bytes (``RING_LINES``,
``RING_BYTES``), whatever stderr does: the ``logs`` control op reads it by sequence number
(``read``, ``wait``), so an operator without journald still sees the last failed boot's output.

Each entry has a time, a level, a source (``supervisor``, ``gen N``, a service's name), a
worker (an index, or None), an event (a short stable name: ``message`` for a plain line,
``log`` for a line of a child's output, ``swap_started``, ...), a message, fields, and the id
of the swap it belongs to. Two formats render it on stderr: ``human`` (the lines as they always
were: ``hotswap[PID]: message``, a child's as ``hotswap[PID]: [gen N] line``) and ``json`` (one
object a line, for a log collector)::

    {"time": "2026-12-02T02:31:07.532Z", "level": "info", "source": "gen 2", "worker": null,
     "event": "log", "message": "INFO:     Application startup complete.", "swap": "4f1c9a2e",
     "fields": {}, "seq": 41}

A caller that holds only a ``log: Callable[[str], None]`` (most of the supervisor's modules)
passes structure with an :class:`Entry`: a ``str`` (its human text) that carries its fields,
so a log that is not a LogSink (a test's ``list.append``) still gets the human line. A child's
output is wrapped whole (its raw line is the message), never parsed.

The swap id: :func:`open_swap` sets :data:`SWAP` (a context variable) for the duration of a
swap or a hot upgrade; every line written from that context while the swap runs (its driver,
the tasks and reader callbacks it starts, the new generation's output) carries the id. Once the
swap has ended its scope is closed, so a generation it started logs without it from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CAPACITY = 10_000  # lines waiting to be written; more are dropped
CLOSE_GRACE = 2.0  # at exit, how long the writer may take to flush what is queued
RING_LINES = 2_000  # recent entries kept for `hotswap logs`,
RING_BYTES = 1 << 20  # and at most this many bytes of messages
FORMATS = ("human", "json")
SUPERVISOR = "supervisor"  # the source of the supervisor's own lines


@dataclass
class SwapScope:
    """One swap's id, open while the swap runs."""

    id: str
    open: bool = True
    _token: contextvars.Token[SwapScope | None] | None = None

    def close(self) -> None:
        self.open = False
        if self._token is not None:
            with contextlib.suppress(ValueError):  # reset in another context: just closed
                SWAP.reset(self._token)
            self._token = None


SWAP: contextvars.ContextVar[SwapScope | None] = contextvars.ContextVar("swap", default=None)


def new_swap_id() -> str:
    """8 hex digits: short enough to grep and say aloud, unique enough for one host's swaps."""
    return secrets.token_hex(4)


def open_swap(swap_id: str) -> SwapScope:
    """Mark what runs in this context, from now until :meth:`SwapScope.close`, as the swap
    ``swap_id``'s."""
    scope = SwapScope(swap_id)
    scope._token = SWAP.set(scope)
    return scope


def current_swap() -> str | None:
    scope = SWAP.get()
    return scope.id if scope is not None and scope.open else None


class Entry(str):
    """A log line with its fields. As a ``str`` it is its human text: ``[TAG] message`` when a
    ``tag`` is given (a child's ``gen 2``), else the message."""

    event: str
    message: str
    source: str
    worker: int | None
    level: str
    fields: dict[str, Any]

    def __new__(
        cls,
        event: str,
        message: str,
        *,
        source: str = SUPERVISOR,
        worker: int | None = None,
        level: str = "info",
        tag: str | None = None,
        **fields: Any,
    ) -> Entry:
        self = super().__new__(cls, f"[{tag}] {message}" if tag else message)
        self.event = event
        self.message = message
        self.source = source
        self.worker = worker
        self.level = level
        self.fields = fields
        return self


def child_line(
    line: str, *, tag: str, source: str, worker: int | None = None, **fields: Any
) -> Entry:
    """One line of a child's output, wrapped as it is (event ``log``)."""
    return Entry("log", line, source=source, worker=worker, tag=tag, **fields)


def swap_started(swap_id: str, how: str, ref: str) -> Entry:
    return Entry("swap_started", f"swap {swap_id}: {how} to {ref}", how=how, ref=ref)


def swap_finished(swap_id: str, recent: Iterable[dict[str, Any]]) -> Entry:
    """The line that ends the swap or hot upgrade ``swap_id``, from its record in ``recent``."""
    record = next((r for r in recent if r.get("id") == swap_id), None)
    if record is None:  # it ended before it had a record (a bug): still say it ended
        return Entry("swap_failed", f"swap {swap_id}: ended without a record", level="error")
    what = record.get("release") or record.get("ref")
    head = f"swap {record.get('id')}: {record.get('how')} to {what}"
    total = record.get("total_ms")
    keys = ("how", "release", "generation", "total_ms")
    fields: dict[str, Any] = {k: record.get(k) for k in keys}
    if record.get("ok"):
        message = f"{head} done in {total:.0f} ms" if total is not None else f"{head} done"
        return Entry("swap_finished", message, ok=True, **fields)
    error = record.get("error") or {}
    message = f"{head} failed [{error.get('code')}]: {error.get('message')}"
    return Entry("swap_failed", message, level="error", ok=False, code=error.get("code"), **fields)


def rfc3339(ts: float) -> str:
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


_Item = tuple[int, float, str, "str | None"]  # seq, time, the line (an Entry or a str), swap id


def _record(item: _Item) -> dict[str, Any]:
    """An entry as a JSON line shows it."""
    seq, ts, line, swap = item
    entry = line if isinstance(line, Entry) else None
    return {
        "time": rfc3339(ts),
        "level": entry.level if entry else "info",
        "source": entry.source if entry else SUPERVISOR,
        "worker": entry.worker if entry else None,
        "event": entry.event if entry else "message",
        "message": entry.message if entry else line,
        "swap": swap,
        "fields": entry.fields if entry else {},
        "seq": seq,
    }


class LogSink:
    def __init__(
        self,
        prefix: str = "",
        fd: int = 2,
        capacity: int = CAPACITY,
        *,
        format: str = "human",
        ring_lines: int = RING_LINES,
        ring_bytes: int = RING_BYTES,
    ) -> None:
        self.prefix = prefix
        self.fd = fd
        self.capacity = capacity
        self.format = format  # "human" or "json"; read at each write
        self.dropped = 0
        self.ring_bytes = ring_bytes
        self.seq = 0  # of the last entry
        self._reported = 0
        self._lines: deque[bytes] = deque()
        self._ring: deque[tuple[_Item, int]] = deque(maxlen=ring_lines)  # and its size
        self._ring_size = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def write(self, message: str) -> None:
        """Log one line: an :class:`Entry`, or a plain string (event ``message``). Cheap: the
        entry's record (a dict, its time as text) is only built for a JSON line or a read."""
        swap = current_swap()
        now = time.time()
        with self._cond:
            self.seq += 1
            item = (self.seq, now, message, swap)
            self._keep(item, len(message))
            if self._waiters:
                for loop, event in self._waiters:
                    with contextlib.suppress(RuntimeError):  # its loop is closed
                        loop.call_soon_threadsafe(event.set)
                self._waiters = []
            if len(self._lines) >= self.capacity:
                self.dropped += 1
                return
            if self.format == "json":
                text = json.dumps(_record(item), default=str, ensure_ascii=False)
            else:
                text = f"{self.prefix}{message}"
            self._lines.append(f"{text}\n".encode("utf-8", "replace"))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hotswap-log", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _keep(self, item: _Item, length: int) -> None:
        size = length + 200  # the message and roughly what its record holds besides
        if len(self._ring) == self._ring.maxlen:
            self._ring_size -= self._ring[0][1]
        self._ring.append((item, size))
        self._ring_size += size
        while self._ring_size > self.ring_bytes and len(self._ring) > 1:
            self._ring_size -= self._ring.popleft()[1]

    # -- the ring ------------------------------------------------------------------------

    def read(self, after: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The entries kept with a sequence number above ``after`` (the last ``limit`` of
        them), each with its human ``text``; ``next`` is the cursor for the next read, and
        ``missed`` how many entries after ``after`` the ring no longer holds."""
        with self._cond:
            items = [item for item, _ in self._ring if item[0] > after]
            first = self._ring[0][0][0] if self._ring else self.seq + 1
            last = self.seq
        missed = max(0, first - after - 1)
        if limit is not None and len(items) > limit:
            missed += len(items) - limit
            items = items[len(items) - limit :]
        lines = [{**_record(item), "text": str(item[2])} for item in items]
        return {"lines": lines, "next": last, "missed": missed}

    async def wait(self, after: int, timeout: float) -> None:
        """Return once an entry above ``after`` exists, or after ``timeout`` seconds."""
        event = asyncio.Event()
        with self._cond:
            if self.seq > after:
                return
            self._waiters.append((asyncio.get_running_loop(), event))
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._cond, contextlib.suppress(ValueError):
                self._waiters.remove((asyncio.get_running_loop(), event))

    # -- the writer ----------------------------------------------------------------------

    def _dropped_line(self, lost: int) -> bytes:
        message = f"{lost} log lines dropped (stderr full)"
        if self.format == "json":
            record = {
                "time": rfc3339(time.time()),
                "level": "warning",
                "source": SUPERVISOR,
                "worker": None,
                "event": "log_lines_dropped",
                "message": message,
                "swap": None,
                "fields": {"count": lost},
            }
            return (json.dumps(record) + "\n").encode()
        return f"{self.prefix}{message}\n".encode()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._lines and not self._closing:
                    self._cond.wait()
                batch = list(self._lines)
                self._lines.clear()
                lost = self.dropped - self._reported
                self._reported = self.dropped
            if lost:
                batch.append(self._dropped_line(lost))
            if not batch:
                return
            data = b"".join(batch)
            with contextlib.suppress(OSError):
                while data:
                    data = data[os.write(self.fd, data) :]

    async def close(self) -> None:
        """Flush what is queued (for at most ``CLOSE_GRACE``) and stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, CLOSE_GRACE)
