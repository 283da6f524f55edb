"""The supervisor's log never blocks its caller: a full pipe drops lines, and counts them. Its
JSON lines carry their source and swap id, its human lines are as they were, and its ring of
recent entries is bounded."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import threading
import time

from hotswap.supervisor.logsink import Entry, LogSink, child_line, open_swap


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


def _drain(read_end: int, until: bytes, timeout: float = 10.0) -> bytes:
    os.set_blocking(read_end, False)
    data = b""
    deadline = time.monotonic() + timeout
    while until not in data and time.monotonic() < deadline:
        try:
            data += os.read(read_end, 1 << 16)
        except BlockingIOError:
            time.sleep(0.005)
    return data


def test_json_lines_carry_source_worker_event_and_the_swap_id_while_it_runs() -> None:
    read_end, write_end = os.pipe()
    sink = LogSink(prefix="t: ", fd=write_end, format="json")
    try:
        sink.write("plain")
        scope = open_swap("0badc0de")
        sink.write(child_line("Traceback (most recent call last):", tag="gen 2", source="gen 2"))
        sink.write(Entry("generation_started", "generation 3 started", generation=3, worker=1))
        scope.close()
        sink.write(child_line("after", tag="gen 2", source="gen 2"))
        lines = _drain(read_end, b'"after"').decode().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["event"] for r in records] == ["message", "log", "generation_started", "log"]
        assert [r["source"] for r in records] == ["supervisor", "gen 2", "supervisor", "gen 2"]
        assert [r["swap"] for r in records] == [None, "0badc0de", "0badc0de", None]
        assert records[1]["message"] == "Traceback (most recent call last):"  # wrapped as is
        assert records[2]["worker"] == 1 and records[2]["fields"] == {"generation": 3}
        assert [r["seq"] for r in records] == [1, 2, 3, 4]
        for r in records:
            assert r["level"] == "info"
            stamp = dt.datetime.fromisoformat(r["time"])
            assert stamp.utcoffset() == dt.timedelta(0) and r["time"].endswith("Z")
    finally:
        asyncio.run(sink.close())
        os.close(read_end)
        os.close(write_end)


def test_human_lines_are_as_they_were() -> None:
    read_end, write_end = os.pipe()
    sink = LogSink(prefix="hotswap[7]: ", fd=write_end)
    try:
        sink.write("listening on 127.0.0.1:8000")
        sink.write(child_line("Started server process [9]", tag="gen 1", source="gen 1"))
        text = _drain(read_end, b"[9]\n").decode()
        assert text == (
            "hotswap[7]: listening on 127.0.0.1:8000\n"
            "hotswap[7]: [gen 1] Started server process [9]\n"
        )
    finally:
        asyncio.run(sink.close())
        os.close(read_end)
        os.close(write_end)


def test_the_ring_is_bounded_in_lines_and_in_bytes_and_reads_by_cursor() -> None:
    with open(os.devnull, "wb") as devnull:
        sink = LogSink(fd=devnull.fileno(), ring_lines=100)
        for i in range(1000):
            sink.write(f"line {i}")
        page = sink.read()
        assert [x["message"] for x in page["lines"]] == [f"line {i}" for i in range(900, 1000)]
        assert page["missed"] == 900 and page["next"] == 1000
        assert sink.read(after=995)["lines"][0]["message"] == "line 995"
        assert [x["text"] for x in sink.read(limit=2)["lines"]] == ["line 998", "line 999"]
        assert sink.read(after=1000) == {"lines": [], "next": 1000, "missed": 0}
        small = LogSink(fd=devnull.fileno(), ring_bytes=50_000)
        for _ in range(100):
            small.write("x" * 8192)  # a child's longest line
        kept = small.read()["lines"]
        assert 0 < len(kept) <= 50_000 // 8192
        asyncio.run(sink.close())
        asyncio.run(small.close())


def test_wait_returns_when_a_line_comes_from_another_thread() -> None:
    async def main() -> float:
        with open(os.devnull, "wb") as devnull:
            sink = LogSink(fd=devnull.fileno())
            sink.write("first")
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            loop.call_later(0.05, lambda: threading.Thread(target=sink.write, args=("x",)).start())
            await sink.wait(after=1, timeout=10)
            took = time.monotonic() - started
            assert sink.read(after=1)["lines"][0]["message"] == "x"
            await sink.wait(after=2, timeout=0.01)  # nothing comes: returns at its timeout
            assert sink._waiters == []
            await sink.close()
            return took

    assert asyncio.run(main()) < 5
