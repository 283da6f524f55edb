"""The metrics endpoint: ``GET /metrics`` served from the supervisor, off its loop.

How it stays out of the loop's way (the endpoint never delays the control socket or a swap):

- HTTP runs in threads (one per connection, at most ``MAX_CLIENTS`` at once, each dropped
  after ``CLIENT_TIMEOUT`` seconds without progress), never on the asyncio loop. A scraper
  that connects and sends nothing, half a request, or reads nothing holds only its own thread.
- No thread calls into the :class:`~.core.Supervisor`. Only the loop reads it: every
  ``REFRESH_INTERVAL`` seconds, and when a scrape asks (``run_coroutine_threadsafe`` with a
  ``SCRAPE_REFRESH_TIMEOUT``), the loop hands over the swap records that appeared in
  ``recent`` since the last look, to be counted, and takes ``status()`` and the handoff
  store's size into a new :class:`~.metrics.Snapshot` of the gauges, which the collector reads under
  a lock (``prometheus_client``'s objects are thread-safe too). A scrape always
  sees every swap that ended before it began; ``status()`` is taken again for it only if a
  swap ended or the last look is older than ``MIN_REFRESH_GAP`` (a flood of scrapes costs
  the loop a look at ``recent`` each, not a ``status()`` each). A loop that does not answer
  in time (it should never happen) costs the scrape its freshness, not its answer: the last
  snapshot is served and ``hotswap_metrics_stale_scrapes_total`` counts it.
- The supervisor process's RSS and open descriptors are read from ``/proc/self`` by the
  scrape's thread, which needs nothing of the supervisor for it.
- A scrape is cheap, so its thread holds the GIL (which the loop needs too) briefly: the
  counters' and histograms' exposition, most of its lines, is rendered once per new swap
  record and kept; only the gauges are rendered at every scrape (about 0.4 ms here).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from hotswap.supervisor.metrics import SCRAPE_REFRESH_TIMEOUT, Metrics

if TYPE_CHECKING:
    from hotswap.supervisor.core import Supervisor

REFRESH_INTERVAL = 0.5  # the loop looks at the supervisor at least this often
MIN_REFRESH_GAP = 0.05  # scrapes closer together than this share one status()
CLIENT_TIMEOUT = 10.0  # a scraper's socket: no progress for this long and it is dropped
MAX_CLIENTS = 16  # connections served at once; more are closed at accept
PATH = "/metrics"


class _Handler(BaseHTTPRequestHandler):
    timeout = CLIENT_TIMEOUT  # socket timeout: a scraper that stalls is dropped
    server: MetricsServer
    server_version = "hotswap-metrics"

    def do_GET(self) -> None:
        if self.path.split("?")[0] != PATH:
            self._send(404, b"not found: the metrics are at /metrics\n", "text/plain")
            return
        self.server.exporter.refresh_from_thread()
        body, content_type = self.server.exporter.metrics.render(self.headers.get("Accept", ""))
        self._send(200, body, content_type)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class MetricsServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CLIENTS`` at once (more are closed at accept)."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, exporter: Exporter) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_name, self.server_port = str(sock.getsockname()[0]), sock.getsockname()[1]
        self.exporter = exporter
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._clients.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._clients.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._clients.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a scraper that hung up or timed out: its connection is closed, nothing else


class Exporter:
    """The metrics of ``sup`` served on ``sock`` (bound already) while the supervisor runs."""

    def __init__(self, sup: Supervisor, sock: socket.socket) -> None:
        self.sup = sup
        self.metrics = Metrics()
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: MetricsServer | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0  # time.monotonic() of the last refresh
        self._failure: str | None = None  # the last look's error, logged once

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"[{host}]:{port}" if self._sock.family == socket.AF_INET6 else f"{host}:{port}"

    def refresh(self, *, full: bool = True) -> None:
        """Look at the supervisor: on its loop only. New swap records are counted at every
        look; ``status()`` is taken when ``full``, when a record was new, or when the last
        one is older than ``MIN_REFRESH_GAP``."""
        sup = self.sup
        try:
            fresh = self.metrics.observe_records(sup.recent)
            if full or fresh or time.monotonic() - self._last >= MIN_REFRESH_GAP:
                self._last = time.monotonic()
                self.metrics.observe_status(sup.status(), sup.handoff.stats())
        except Exception as e:  # a bug: the last snapshot stays, the supervisor goes on
            failure = f"metrics: looking at the supervisor failed: {e!r}"
            if failure != self._failure:
                sup.log(failure)
            self._failure = failure
        else:
            self._failure = None

    async def _refresh(self) -> None:
        self.refresh(full=False)

    def refresh_from_thread(self) -> None:
        """Ask the loop for a fresh look (from a scrape's thread), waiting a bounded time."""
        loop = self._loop
        if loop is None:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._refresh(), loop)
        except RuntimeError:  # the loop is closed: the supervisor is exiting
            return
        try:
            future.result(SCRAPE_REFRESH_TIMEOUT)
        except TimeoutError:
            future.cancel()
            self.metrics.stale.inc()

    async def _tick(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(REFRESH_INTERVAL)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.refresh()
        self._task = asyncio.create_task(self._tick())
        self._server = MetricsServer(self._sock, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="hotswap-metrics",
            daemon=True,
        )
        self._thread.start()
        self.sup.log(f"metrics on http://{self.address}{PATH}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._server.shutdown)
            self._server.server_close()
        else:
            self._sock.close()


async def serve(sup: Supervisor, sock: socket.socket) -> int:
    """Run ``sup`` with its metrics served on ``sock``; returns the supervisor's exit code."""
    exporter = Exporter(sup, sock)
    await exporter.start()
    try:
        return await sup.run()
    finally:
        await exporter.close()
