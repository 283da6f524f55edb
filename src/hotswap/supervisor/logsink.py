"""The supervisor's log: lines to stderr that never block the event loop.

stderr may be a pipe nobody reads (a stuck log collector). A ``print`` on the loop would then
block it, and with it status, swaps, restarts, timers and SIGTERM. So lines go into a bounded
queue that one writer thread empties with plain blocking writes; when the queue is full, new
lines are dropped and counted (``status`` reports ``log_lines_dropped``), and the writer says
how many it lost once it can write again. ``write`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque

CAPACITY = 10_000  # lines waiting to be written; more are dropped
CLOSE_GRACE = 2.0  # at exit, how long the writer may take to flush what is queued


class LogSink:
    def __init__(self, prefix: str = "", fd: int = 2, capacity: int = CAPACITY) -> None:
        self.prefix = prefix
        self.fd = fd
        self.capacity = capacity
        self.dropped = 0
        self._reported = 0
        self._lines: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def write(self, message: str) -> None:
        line = f"{self.prefix}{message}\n".encode("utf-8", "replace")
        with self._cond:
            if len(self._lines) >= self.capacity:
                self.dropped += 1
                return
            self._lines.append(line)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hotswap-log", daemon=True)
                self._thread.start()
            self._cond.notify()

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
                batch.append(f"{self.prefix}{lost} log lines dropped (stderr full)\n".encode())
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
