"""Prometheus metrics of the supervisor: ``hotswap run --metrics HOST:PORT``.

The supervisor serves ``GET /metrics`` on a listener of its own (never a generation's, so the
endpoint and its counters survive every swap), in the Prometheus text format, or OpenMetrics
(with the swap id as exemplar where a swap record has one) when the scraper asks for it. The
exposition is the official ``prometheus_client``'s, from a registry of our own (not the
global one), installed by the optional extra ``hotswap[metrics]``.

How the endpoint stays out of the loop's way: :mod:`.metrics_endpoint`.

Swaps are observed from the ``recent`` records (``how``, ``ok``, ``error.code``,
``timings_ms``, ``total_ms``; a hot upgrade's ``stats``), each counted once: records are
told apart by identity, newest first, down to the newest one already seen. ``recent`` keeps
the last 20, and the loop looks at least every ``REFRESH_INTERVAL`` (and at every scrape):
only more than 20 swaps ending within that time, refusals as quick as a missing tarball,
would be counted short. The loop only appends what it saw; a scrape counts it before it
renders, so no scrape sees a swap half counted, and the loop never waits for a scrape.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    pass

SCRAPE_REFRESH_TIMEOUT = 0.5  # a scrape waits this long for the loop, then serves the last look
PENDING_MAX = 100  # records waiting for a scrape; more, and the loop counts them if it can

# swaps and their phases: 10 ms .. 60 s (boot_timeout's default); the hot-upgrade suspension
# window: 0.5 ms .. 3 s (suspend_timeout's default)
SWAP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WINDOW_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)
PHASES = ("unpack", "spawn", "boot", "health", "cutover", "commit", "drain")
HOT_PHASES = ("prepare", "quiesce")  # a hot upgrade's, from its stats (the window has its own)
RESTARTS = ("restart", "auto-rollback")  # with no generation to swap from: the active one died


@dataclass(frozen=True)
class Snapshot:
    """The gauges, as the loop last saw them (the collector reads them under a lock)."""

    taken: float = 0.0  # time.monotonic() of the look; 0: none yet
    generation: int = 0
    release: str | None = None
    version: str | None = None
    uptime_s: float = 0.0
    upgrading: bool = False
    workers_alive: int = 0
    worker_restarts: int = 0
    workers: tuple[tuple[str, bool, int], ...] = ()  # each worker: index, alive, restarts
    generations: dict[str, int] = field(default_factory=dict)  # by state
    handoff_keys: int = 0
    handoff_bytes: int = 0
    log_lines_dropped: int = 0
    supervisor_uptime_s: float = 0.0
    service_restarts: dict[str, int] = field(default_factory=dict)


def snapshot_of(status: dict[str, Any], handoff: tuple[int, int], taken: float) -> Snapshot:
    """The gauges of one ``status()`` (and the handoff store's keys and bytes)."""
    active = status.get("active") or None
    sup = status.get("supervisor") or {}
    generations: dict[str, int] = {}
    for gen in status.get("generations") or []:
        state = str(gen.get("state"))
        generations[state] = generations.get(state, 0) + 1
    workers_alive = restarts = 0
    each: list[tuple[str, bool, int]] = []
    if active is not None:
        workers = active.get("workers")
        if isinstance(workers, list):  # its worker processes
            for i, w in enumerate(workers):
                # serving, not merely alive: a replacement still booting accepts nothing
                alive = bool(w.get("pid")) and str(w.get("state")) == "live"
                each.append(
                    (str(w.get("worker", w.get("index", i))), alive, int(w.get("restarts") or 0))
                )
            workers_alive = sum(1 for _, alive, _ in each if alive)
            restarts = sum(n for _, _, n in each)
        else:  # one process: alive while it is the active generation
            workers_alive = 1
    return Snapshot(
        taken=taken,
        generation=int(active["generation"]) if active else 0,
        release=str(active.get("release")) if active else None,
        version=str(active.get("version")) if active else None,
        uptime_s=float(active.get("uptime_s") or 0.0) if active else 0.0,
        upgrading=bool(status.get("upgrading")),
        workers_alive=workers_alive,
        worker_restarts=restarts,
        workers=tuple(each),
        generations=generations,
        handoff_keys=handoff[0],
        handoff_bytes=handoff[1],
        log_lines_dropped=int(sup.get("log_lines_dropped") or 0),
        supervisor_uptime_s=float(sup.get("uptime_s") or 0.0),
        service_restarts={
            str(s.get("name")): int(s.get("restarts") or 0) for s in status.get("services") or []
        },
    )


class RecordWatch:
    """Which records of ``recent`` (newest first) are new since the last call: told apart by
    identity, down to the newest one already seen (kept referenced, so its id stays its own)."""

    def __init__(self) -> None:
        self._newest: dict[str, Any] | None = None

    def new(self, recent: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records not seen yet, oldest first."""
        fresh = []
        for record in recent:
            if record is self._newest:
                break
            fresh.append(record)
        if fresh:
            self._newest = fresh[0]
        return fresh[::-1]


def _hot_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """A hot upgrade's figures; of a generation of several workers (``stats["workers"]``,
    one each), the longest of each: the generation was suspended until its last worker was."""
    workers = [w for w in stats.get("workers") or [] if isinstance(w, dict)]
    out = dict(stats)
    for key in ("window_ms", *(f"{p}_ms" for p in HOT_PHASES)):
        values = [w[key] for w in workers if isinstance(w.get(key), int | float)]
        if values:
            out[key] = max(values)
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own


class Metrics:
    """Two registries: counters and histograms fed with swap records (their exposition is
    kept until the next record: most of a scrape's lines, rendered once per swap rather than
    once per scrape), and the gauges, read from a snapshot at every scrape.

    :meth:`observe` is called on the loop only; :meth:`render` in any thread."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry(auto_describe=True)  # what records move
        self.gauges = CollectorRegistry(auto_describe=True)  # what each scrape reads anew
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self._watch = RecordWatch()
        self._pending: list[dict[str, Any]] = []  # records seen, not yet counted
        self._render = threading.Lock()  # scrapes only: counting, and the kept exposition
        self._cached: dict[str, bytes] = {}  # by content type, until the next record
        reg = self.registry
        self.swaps = Counter(
            "hotswap_swaps",
            "Swaps that ended, by kind (initial, blue-green, rollback, restart, auto-rollback, "
            "hot) and outcome (ok, or the error code).",
            ["kind", "outcome"],
            registry=reg,
        )
        self.swap_seconds = Histogram(
            "hotswap_swap_duration_seconds",
            "Duration of a swap from its request to its end, by kind and result (ok, failed).",
            ["kind", "result"],
            buckets=SWAP_BUCKETS,
            registry=reg,
        )
        self.phase_seconds = Histogram(
            "hotswap_swap_phase_duration_seconds",
            "Duration of each phase of a swap of any kind (unpack, spawn, boot, health, "
            "cutover, commit, drain; a hot upgrade's prepare and quiesce), by phase and the "
            "swap's result (ok, failed).",
            ["phase", "result"],
            buckets=SWAP_BUCKETS,
            registry=reg,
        )
        self.window_seconds = Histogram(
            "hotswap_hot_suspension_seconds",
            "A successful hot upgrade's suspension window: from the moment the process was "
            "quiescent to the end of its patching and state migration.",
            buckets=WINDOW_BUCKETS,
            registry=reg,
        )
        self.restarts = Counter(
            "hotswap_generation_restarts",
            "Times the active generation died and the supervisor started another in its place "
            "(kind restart: the current release; auto-rollback: the release it had replaced), "
            "by kind and outcome.",
            ["kind", "outcome"],
            registry=reg,
        )
        self.stale = Counter(
            "hotswap_metrics_stale_scrapes",
            "Scrapes served from the previous look because the supervisor's loop did not "
            f"answer within {SCRAPE_REFRESH_TIMEOUT}s.",
            registry=self.gauges,
        )
        self.gauges.register(_SnapshotCollector(self))

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def observe(
        self, status: dict[str, Any], handoff: tuple[int, int], recent: Sequence[dict[str, Any]]
    ) -> None:
        """One look at the supervisor (on its loop): new swap records, new gauges."""
        self.observe_records(recent)
        self.observe_status(status, handoff)

    def observe_records(self, recent: Sequence[dict[str, Any]]) -> int:
        """Count the records of ``recent`` not seen yet (on the loop); how many there were."""
        fresh = self._watch.new(recent)
        for record in fresh:
            self.record(record)
        return len(fresh)

    def observe_status(self, status: dict[str, Any], handoff: tuple[int, int]) -> None:
        """New gauges from one ``status()`` (on the loop)."""
        snapshot = snapshot_of(status, handoff, time.monotonic())
        with self._lock:
            self._snapshot = snapshot

    def record(self, record: dict[str, Any]) -> None:
        """Count one finished swap (an entry of ``recent``) at the next scrape: the loop only
        appends it, and a scrape counts it before rendering, so no scrape sees it half
        counted and the loop never waits for a scrape."""
        with self._lock:
            self._pending.append(record)
            many = len(self._pending) >= PENDING_MAX
        if many and self._render.acquire(blocking=False):  # nobody scrapes: count them here
            try:
                self._drain()
            finally:
                self._render.release()

    def _drain(self) -> None:
        """Count the pending records (the caller holds ``_render``)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for record in pending:
            self._count(record)
        if pending:
            self._cached.clear()

    def _count(self, record: dict[str, Any]) -> None:
        kind = str(record.get("how"))
        ok = bool(record.get("ok"))
        outcome = "ok" if ok else str((record.get("error") or {}).get("code") or "failed")
        result = "ok" if ok else "failed"
        exemplar = {"swap_id": str(record["id"])[:100]} if record.get("id") else None
        self.swaps.labels(kind, outcome).inc(exemplar=exemplar)
        if kind in RESTARTS and record.get("from_generation") is None:
            self.restarts.labels(kind, outcome).inc(exemplar=exemplar)
        total = record.get("total_ms")
        if isinstance(total, int | float):
            self.swap_seconds.labels(kind, result).observe(total / 1000, exemplar)
        phases = dict(record.get("timings_ms") or {})
        stats = _hot_stats(record.get("stats") or {})
        phases.update({p: stats[f"{p}_ms"] for p in HOT_PHASES if f"{p}_ms" in stats})
        for phase, ms in phases.items():
            if isinstance(ms, int | float):
                self.phase_seconds.labels(phase, result).observe(ms / 1000, exemplar)
        window = stats.get("window_ms")
        if ok and isinstance(window, int | float):
            self.window_seconds.observe(window / 1000, exemplar)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (OpenMetrics if ``accept`` asks for it) and its content type."""
        encoder, content_type = choose_encoder(accept)
        with self._render:
            self._drain()
            body = self._cached.get(content_type)
            if body is None:
                body = encoder(self.registry).removesuffix(b"# EOF\n")  # OpenMetrics: once
                self._cached[content_type] = body
        return body + encoder(self.gauges), content_type


class _SnapshotCollector:
    """The gauges: read from the last snapshot, and from ``/proc/self`` for the process."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        s = self.metrics.snapshot
        yield _gauge(
            "hotswap_active_generation",
            "Number of the active generation (0: none serving).",
            s.generation,
        )
        info = GaugeMetricFamily(
            "hotswap_active_release_info",
            "The release the active generation serves (value 1; no sample while none serves).",
            labels=["release", "version"],
        )
        if s.release is not None:
            info.add_metric([s.release, s.version or ""], 1)
        yield info
        yield _gauge(
            "hotswap_active_generation_uptime_seconds",
            "Seconds since the active generation was started.",
            s.uptime_s,
        )
        yield _gauge(
            "hotswap_upgrading",
            "1 while a swap or a hot upgrade is under way, else 0.",
            int(s.upgrading),
        )
        yield _gauge(
            "hotswap_workers_alive",
            "Worker processes of the active generation that serve (live; a replacement "
            "still booting is not counted).",
            s.workers_alive,
        )
        yield _gauge(
            "hotswap_active_worker_restarts",
            "Restarts of the active generation's workers since it started.",
            s.worker_restarts,
        )
        up = GaugeMetricFamily(
            "hotswap_worker_up",
            "Each worker of the active generation: 1 while it serves, 0 while it is being "
            "restarted (gone, or its replacement still booting).",
            labels=["worker"],
        )
        restarts = GaugeMetricFamily(
            "hotswap_worker_restarts",
            "Restarts of each worker of the active generation since the generation started.",
            labels=["worker"],
        )
        for worker, alive, count in s.workers:
            up.add_metric([worker], int(alive))
            restarts.add_metric([worker], count)
        yield up
        yield restarts
        gens = GaugeMetricFamily(
            "hotswap_generations",
            "Generations the supervisor holds, by state (starting, ready, live, draining).",
            labels=["state"],
        )
        for state, count in sorted(s.generations.items()):
            gens.add_metric([state], count)
        yield gens
        yield _gauge("hotswap_handoff_store_keys", "Keys in the handoff store.", s.handoff_keys)
        yield _gauge(
            "hotswap_handoff_store_bytes",
            "Size of the handoff store's values, JSON-encoded.",
            s.handoff_bytes,
        )
        dropped = CounterMetricFamily(
            "hotswap_log_lines_dropped",
            "Supervisor log lines dropped because stderr was not being read.",
        )
        dropped.add_metric([], s.log_lines_dropped)
        yield dropped
        services = CounterMetricFamily(
            "hotswap_service_restarts", "Restarts of each service.", labels=["service"]
        )
        for name, count in sorted(s.service_restarts.items()):
            services.add_metric([name], count)
        yield services
        yield _gauge(
            "hotswap_supervisor_uptime_seconds",
            "Seconds since the supervisor started.",
            s.supervisor_uptime_s,
        )
        with contextlib.suppress(OSError, ValueError, IndexError):
            yield _gauge(
                "hotswap_supervisor_resident_memory_bytes",
                "Resident memory of the supervisor process (its generations not included).",
                _rss_bytes(),
            )
        with contextlib.suppress(OSError):
            yield _gauge(
                "hotswap_supervisor_open_fds",
                "Open file descriptors of the supervisor process.",
                _open_fds(),
            )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def parsed(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample of an exposition as (name, labels, value): for tests and the bench."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)
