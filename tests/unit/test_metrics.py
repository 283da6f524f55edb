"""The metrics' mapping: swap records to counters and histograms, status to gauges, each record
counted once; the ``metrics`` address of the release config."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from hotswap.errors import UsageError
from hotswap.release.config import parse_metrics_address, parse_table
from hotswap.supervisor.metrics import PENDING_MAX, Metrics, RecordWatch, parsed, snapshot_of


def _samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render()[0].decode()
    return {(name, frozenset(labels.items())): value for name, labels, value in parsed(text)}


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return _samples(metrics).get((name, frozenset(labels.items())))


def _bg(ok: bool = True, code: str | None = None, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "how": "blue-green",
        "ok": ok,
        "generation": 2,
        "from_generation": 1,
        "timings_ms": {"unpack": 5.0, "spawn": 2.0, "boot": 300.0},
        "total_ms": 307.0,
        **extra,
    }
    if not ok:
        record["error"] = {"code": code, "message": "it crashed"}
    else:
        record["timings_ms"].update({"health": 3.0, "cutover": 1.0, "commit": 20.0, "drain": 9.0})
        record["total_ms"] = 340.0
    return record


def test_records_map_to_counters_and_histograms() -> None:
    m = Metrics()
    m.record(_bg())
    m.record(_bg())
    m.record(_bg(ok=False, code="boot_failed"))
    hot = {"how": "hot", "ok": True, "total_ms": 80.0}
    hot["stats"] = {"prepare_ms": 60.0, "quiesce_ms": 0.5, "window_ms": 4.0}
    m.record(hot)
    m.record({"how": "restart", "ok": True, "from_generation": None, "total_ms": 400.0})
    m.record({"how": "restart", "ok": True, "from_generation": 3, "total_ms": 400.0})  # SIGHUP

    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="ok") == 2
    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="boot_failed") == 1
    assert _value(m, "hotswap_swaps_total", kind="hot", outcome="ok") == 1
    assert _value(m, "hotswap_swaps_total", kind="restart", outcome="ok") == 2
    # only the restart with no generation to swap from is a generation restart
    assert _value(m, "hotswap_generation_restarts_total", kind="restart", outcome="ok") == 1
    duration = "hotswap_swap_duration_seconds"
    assert _value(m, f"{duration}_count", kind="blue-green", result="ok") == 2
    assert _value(m, f"{duration}_sum", kind="blue-green", result="ok") == pytest.approx(0.68)
    assert _value(m, f"{duration}_bucket", kind="blue-green", result="ok", le="0.25") == 0
    assert _value(m, f"{duration}_bucket", kind="blue-green", result="ok", le="0.5") == 2
    assert _value(m, f"{duration}_count", kind="blue-green", result="failed") == 1
    phase = "hotswap_swap_phase_duration_seconds"
    for name in ("unpack", "spawn", "boot", "health", "cutover", "commit", "drain"):
        assert _value(m, f"{phase}_count", phase=name, result="ok") == 2
    assert _value(m, f"{phase}_sum", phase="drain", result="ok") == 0.018
    assert _value(m, f"{phase}_count", phase="boot", result="failed") == 1
    assert _value(m, f"{phase}_count", phase="health", result="failed") is None
    assert _value(m, f"{phase}_sum", phase="prepare", result="ok") == 0.06
    assert _value(m, "hotswap_hot_suspension_seconds_count") == 1
    assert _value(m, "hotswap_hot_suspension_seconds_sum") == 0.004
    assert _value(m, "hotswap_hot_suspension_seconds_bucket", le="0.005") == 1
    assert _value(m, "hotswap_hot_suspension_seconds_bucket", le="0.0025") == 0


def test_a_hot_upgrade_of_several_workers_counts_its_longest_window() -> None:
    m = Metrics()
    workers = [{"window_ms": 2.0, "prepare_ms": 50.0}, {"window_ms": 7.0, "prepare_ms": 40.0}]
    stats = {**workers[0], "quiesce_ms": 1.0, "workers": workers}
    m.record({"how": "hot", "ok": True, "total_ms": 90.0, "stats": stats})
    assert _value(m, "hotswap_hot_suspension_seconds_sum") == 0.007
    prepare = _value(m, "hotswap_swap_phase_duration_seconds_sum", phase="prepare", result="ok")
    assert prepare == 0.05


def test_a_swap_id_is_an_exemplar_in_openmetrics() -> None:
    m = Metrics()
    m.record(_bg(id="sw-7f3a"))
    text, content_type = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    line = next(ln for ln in text.decode().splitlines() if ln.startswith("hotswap_swaps_total{"))
    assert '# {swap_id="sw-7f3a"} 1.0' in line


def test_the_kept_exposition_of_the_counters_is_renewed_by_each_record() -> None:
    m = Metrics()
    m.record(_bg())
    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="ok") == 1
    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="ok") == 1
    m.record(_bg())
    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="ok") == 2
    m.stale.inc()  # the gauges' registry: read at every scrape
    assert _value(m, "hotswap_metrics_stale_scrapes_total") == 1
    text = m.render("application/openmetrics-text")[0].decode()
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    names = {f.name for f in openmetrics_families(text)}
    assert {"hotswap_swaps", "hotswap_active_generation", "hotswap_upgrading"} <= names


def test_records_nobody_scrapes_do_not_pile_up() -> None:
    m = Metrics()
    for _ in range(PENDING_MAX + 5):
        m.record(_bg())
    assert len(m._pending) < PENDING_MAX
    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="ok") == PENDING_MAX + 5


def test_each_record_is_counted_once() -> None:
    watch = RecordWatch()
    a, b, c = {"n": 1}, {"n": 1}, {"n": 1}  # equal, not the same: identity tells them apart
    recent: list[dict[str, Any]] = []
    assert watch.new(recent) == []
    recent.insert(0, a)
    assert watch.new(recent) == [a]
    assert watch.new(recent) == []
    recent[:0] = [c, b]
    assert watch.new(recent) == [b, c]  # oldest first
    del recent[2:]  # the oldest fell out of the bounded deque
    assert watch.new(recent) == []


def _status(**active: Any) -> dict[str, Any]:
    return {
        "supervisor": {"uptime_s": 12.5, "log_lines_dropped": 3},
        "active": {"generation": 4, "release": "1.0.0-abc", "version": "1.0.0", "uptime_s": 2.0}
        | active,
        "generations": [{"state": "live"}, {"state": "draining"}],
        "services": [{"name": "deployer", "restarts": 2}],
        "upgrading": True,
    }


def test_status_maps_to_gauges() -> None:
    s = snapshot_of(_status(), (2, 40), taken=1.0)
    assert (s.generation, s.release, s.version, s.uptime_s) == (4, "1.0.0-abc", "1.0.0", 2.0)
    assert s.upgrading and s.workers_alive == 1  # one process: no workers list
    assert s.generations == {"live": 1, "draining": 1}
    assert (s.handoff_keys, s.handoff_bytes, s.log_lines_dropped) == (2, 40, 3)
    workers = [
        {"worker": 0, "pid": 10, "state": "live", "restarts": 1},
        {"worker": 1, "pid": 11, "state": "failed", "restarts": 0},  # died, not yet replaced
        {"worker": 2, "pid": 12, "state": "live", "restarts": 2},
        {"worker": 3, "pid": 13, "state": "starting", "restarts": 0},  # its replacement boots
    ]
    many = snapshot_of(_status(workers=workers), (0, 0), taken=1.0)
    assert (many.workers_alive, many.worker_restarts) == (2, 3)
    assert many.workers == (("0", True, 1), ("1", False, 0), ("2", True, 2), ("3", False, 0))
    none = snapshot_of({**_status(), "active": None, "upgrading": False}, (0, 0), taken=1.0)
    assert (none.generation, none.release, none.workers_alive) == (0, None, 0)


def test_gauges_render_from_the_last_look() -> None:
    m = Metrics()
    record = _bg()
    m.observe(_status(), (2, 40), [record])
    assert _value(m, "hotswap_active_generation") == 4
    assert _value(m, "hotswap_active_release_info", release="1.0.0-abc", version="1.0.0") == 1
    assert _value(m, "hotswap_upgrading") == 1
    assert _value(m, "hotswap_generations", state="draining") == 1
    assert _value(m, "hotswap_handoff_store_bytes") == 40
    assert _value(m, "hotswap_log_lines_dropped_total") == 3
    assert _value(m, "hotswap_service_restarts_total", service="deployer") == 2
    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="ok") == 1
    assert (_value(m, "hotswap_supervisor_resident_memory_bytes") or 0) > 1_000_000
    assert (_value(m, "hotswap_supervisor_open_fds") or 0) >= 3
    m.observe({**_status(), "active": None}, (0, 0), [record])  # seen: not counted again
    assert _value(m, "hotswap_swaps_total", kind="blue-green", outcome="ok") == 1
    assert _value(m, "hotswap_active_generation") == 0
    assert not any(name == "hotswap_active_release_info" for name, _ in _samples(m))


@pytest.mark.parametrize(
    "value,expected",
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("localhost:9100", ("localhost", 9100)),
        (":9100", ("0.0.0.0", 9100)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_metrics_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_address(value, "--metrics") == expected


@pytest.mark.parametrize(
    "value", ["9100", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "unix:/x", "a b:1", 9100]
)
def test_a_bad_metrics_address_is_bad_config(value: object) -> None:
    with pytest.raises(UsageError) as caught:
        parse_metrics_address(value, "--metrics")
    assert caught.value.code == "bad_config"
    assert caught.value.details["key"] == "metrics"
    with pytest.raises(UsageError) as in_config:
        parse_table({"entry": "app:app", "metrics": value}, distribution="d", where="x")
    assert in_config.value.code == "bad_config"
    assert "x.metrics" in in_config.value.message


def test_the_release_config_keeps_its_metrics_address() -> None:
    config = parse_table({"entry": "app:app", "metrics": ":9100"}, distribution="d", where="x")
    assert config.metrics == ":9100"
    assert parse_table({"entry": "app:app"}, distribution="d", where="x").metrics is None
