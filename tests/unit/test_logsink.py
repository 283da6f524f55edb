"""The supervisor's log never blocks its caller: a full pipe drops lines, and counts them."""

from __future__ import annotations

import asyncio
import os
import re
import time

from hotswap.supervisor.logsink import LogSink


def reported(text: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"t: (\d+) log lines dropped \(stderr full\)", text)]


def test_a_full_pipe_drops_and_counts_lines_without_blocking() -> None:
    read_end, write_end = os.pipe()
    try:
        sink = LogSink(prefix="t: ", fd=write_end, capacity=100)
        started = time.monotonic()
        for i in range(5000):  # ~100 KB: more than the pipe and the queue hold together
            sink.write(f"line {i} " + "x" * 10)
        assert time.monotonic() - started < 1.0  # never waited for the reader
        assert sink.dropped > 0
        # the reader comes back: what was queued arrives, then how much was lost
        chunks = []
        os.set_blocking(read_end, False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = os.read(read_end, 1 << 16)
            except BlockingIOError:
                if sum(reported(b"".join(chunks))) == sink.dropped:
                    break
                time.sleep(0.01)
                continue
            chunks.append(chunk)
        text = b"".join(chunks)
        assert text.startswith(b"t: line 0 ")
        assert sum(reported(text)) == sink.dropped  # every dropped line is accounted for
    finally:
        asyncio.run(sink.close())
        os.close(read_end)
        os.close(write_end)
