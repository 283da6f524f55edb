"""A load generator that records the outcome of every request: the swap-under-load check.

Run it against your own app while you swap, and it tells you how many requests failed and
which versions answered::

    with Load("127.0.0.1", 8000, keepalive=4, fresh=2) as load:
        hotswap.upgrade("dist/myapp-2.0.tar.gz")
    report = load.report
    assert report.failed == 0, report.errors[:5]

Two kinds of clients, each on its own thread: ``keepalive`` clients reuse one HTTP/1.1
connection for as long as the server keeps it open (they reconnect only after the server says
``Connection: close``); ``fresh`` clients open a new connection for every request. ``pause``
adds think time between a client's requests, leaving its keep-alive connection idle. A request
fails if it gets no complete response: refused, reset, closed mid-request, timed out, or a 5xx.
A keep-alive connection closed by the server *without* ``Connection: close`` and reused by the
client counts as a failure: it is exactly the race a careless drain causes.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class Outcome:
    started: float
    seconds: float
    status: int | None
    version: str | None
    error: str | None
    kind: str


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.error is not None)

    @property
    def ok(self) -> int:
        return self.total - self.failed

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def versions(self) -> Counter[str]:
        return Counter(o.version for o in self.outcomes if o.version and o.error is None)

    def latencies(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return sorted(
            o.seconds for o in self.outcomes if o.error is None and since <= o.started < until
        )

    def summary(self) -> dict[str, object]:
        lat = self.latencies()
        return {
            "total": self.total,
            "failed": self.failed,
            "versions": dict(self.versions),
            "p50_ms": round(_pct(lat, 0.50) * 1000, 3) if lat else None,
            "p99_ms": round(_pct(lat, 0.99) * 1000, 3) if lat else None,
            "errors": sorted({o.error or "" for o in self.errors})[:10],
        }


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


class Load:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        keepalive: int = 2,
        fresh: int = 2,
        path: str = "/",
        timeout: float = 10.0,
        max_seconds: float = 120.0,
        pause: float = 0.0,
    ) -> None:
        self.host = host
        self.pause = pause
        self.port = port
        self.keepalive = keepalive
        self.fresh = fresh
        self.path = path
        self.timeout = timeout
        self.max_seconds = max_seconds
        self.report = Report()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counts = 0

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for i in range(self.keepalive):
            self._spawn(f"keepalive-{i}", True, deadline)
        for i in range(self.fresh):
            self._spawn(f"fresh-{i}", False, deadline)

    def _spawn(self, name: str, keepalive: bool, deadline: float) -> None:
        thread = threading.Thread(
            target=self._worker, args=(keepalive, deadline), name=name, daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def stop(self) -> Report:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.report

    def wait_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` more requests have completed (any outcome)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._counts + n
        while time.monotonic() < deadline:
            with self._lock:
                if self._counts >= target:
                    return True
            time.sleep(0.005)
        return False

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.report.outcomes.append(outcome)
            self._counts += 1

    def _worker(self, keepalive: bool, deadline: float) -> None:
        conn: http.client.HTTPConnection | None = None
        kind = "keepalive" if keepalive else "fresh"
        while not self._stop.is_set() and time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            started = time.monotonic()
            status = version = error = None
            try:
                conn.request("GET", self.path, headers={} if keepalive else {"Connection": "close"})
                response = conn.getresponse()
                response.read()
                status = response.status
                version = response.getheader("x-version")
                if status >= 500:
                    error = f"HTTP {status}"
                if not keepalive or response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            self._record(Outcome(started, time.monotonic() - started, status, version, error, kind))
            if self.pause:  # think time between requests: the connection sits idle
                self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


def wait_http(host: str, port: int, timeout: float = 30.0) -> None:
    """Block until something answers HTTP on ``host:port`` (or raise TimeoutError)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2.0)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except (OSError, http.client.HTTPException) as e:
            last = e
            time.sleep(0.02)
    raise TimeoutError(f"nothing answered on {host}:{port} within {timeout}s ({last})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
