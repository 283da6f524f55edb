"""A drain ends open event streams cleanly, so browsers reconnect to the next generation,
instead of waiting for shutdown_timeout and being killed."""

from __future__ import annotations

import http.client
import threading
from pathlib import Path

from hotswap.release.build import BuildResult
from tests.e2e.harness import supervisor


def test_open_event_stream_ends_cleanly_at_drain(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    with supervisor(release_v1.tarball, tmp_path) as sup:
        conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=30)
        # 600 chunks at 100 ms: a minute-long stream, as an EventSource would hold
        conn.request("GET", "/stream?n=600", headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        assert response.status == 200
        first = response.readline()
        assert first == b"0\n"
        body: dict[str, bytes] = {}
        reader = threading.Thread(target=lambda: body.setdefault("rest", response.read()))
        reader.start()
        result = sup.upgrade(release_v2.tarball)
        reader.join(30)
        assert not reader.is_alive()
        # the stream ended with a proper last chunk (read() returned, no IncompleteRead),
        # well before the 10 s shutdown_timeout, and the old generation was not killed
        assert body["rest"].endswith(b"\n") and len(body["rest"]) < 600 * 4
        assert result["drain_killed"] is False
        assert result["timings_ms"]["drain"] < 5000
        conn.close()
