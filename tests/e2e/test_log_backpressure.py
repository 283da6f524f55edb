"""The supervisor never wedges on its own log (promise 13): stderr a pipe nobody reads.

A stuck log collector leaves the supervisor's stderr a full pipe. A blocking write on the event
loop then froze it: no status, no swap, no timer, and SIGTERM did nothing. Here the app logs
every request (uvicorn's access log, relayed by the supervisor), far more than a pipe holds:
status must still answer and SIGTERM must still stop it. (Dropping and counting the lines
that do not fit is tests/unit/test_logsink.py.)
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import hotswap
from hotswap.release.build import BuildResult
from hotswap.testing.load import free_port, wait_http


def _status_within(state_dir: Path, seconds: float) -> dict[str, Any] | None:
    out: dict[str, Any] = {}

    def ask() -> None:
        out["status"] = hotswap.status(state_dir=state_dir)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    asker.join(seconds)
    return out.get("status")


def test_a_full_stderr_pipe_does_not_freeze_the_supervisor(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    port = free_port()
    state_dir = tmp_path / "state"
    argv = [sys.executable, "-m", "hotswap.cli", "run", str(release_v1.tarball)]
    argv += ["--state-dir", str(state_dir), "--bind", f"127.0.0.1:{port}"]
    read_end, write_end = os.pipe()  # nobody reads it until the end
    env = {**os.environ, "HOTSWAP_ACCESS_LOG": "1"}
    proc = subprocess.Popen(argv, stdout=write_end, stderr=write_end, env=env)
    os.close(write_end)
    try:
        wait_http("127.0.0.1", port, timeout=60)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        for _ in range(3000):  # ~100 bytes of log each: several times what the pipe holds
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.close()
        status = _status_within(state_dir, 10)
        assert status is not None, "status did not answer within 10 s: the loop is blocked"
        assert status["active"] is not None
        assert status["supervisor"]["log_lines_dropped"] >= 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(read_end)
