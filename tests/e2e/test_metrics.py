"""``hotswap run --metrics``: a real supervisor's /metrics, scraped during real swaps and parsed
with prometheus_client's own parser; a stuck scraper never delays the control socket or a swap;
the release's ``[tool.hotswap] metrics``, and ``--metrics`` winning over it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

import hotswap
from hotswap.errors import ChildError
from hotswap.release.build import BuildResult
from hotswap.release.manifest import release_id_for
from hotswap.release.record import MANIFEST_NAME
from hotswap.supervisor.metrics import parsed
from hotswap.supervisor.metrics_endpoint import CLIENT_TIMEOUT, MAX_CLIENTS
from hotswap.testing.load import free_port
from tests.e2e.harness import Running, fd_count, supervisor, wait_for
from tests.release import forge

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PHASE = "hotswap_swap_phase_duration_seconds"


def scrape(port: int, timeout: float = 5.0) -> Samples:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        assert response.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
    finally:
        conn.close()
    return {(name, frozenset(labels.items())): value for name, labels, value in parsed(body)}


STALE = ("hotswap_metrics_stale_scrapes_total", frozenset())


def fresh_scrape(port: int) -> Samples:
    """A scrape the supervisor's loop answered in time: on a loaded machine one may be
    served from the last look (what the stale counter counts), which is by design."""
    stale = scrape(port).get(STALE, 0.0)
    for _ in range(50):
        samples = scrape(port)
        if samples.get(STALE, 0.0) == stale:
            return samples
        stale = samples.get(STALE, 0.0)
    raise AssertionError("50 scrapes in a row were stale")


def scrape_openmetrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text"})
        response = conn.getresponse()
        assert response.getheader("Content-Type", "").startswith("application/openmetrics-text")
        text = response.read().decode()
    finally:
        conn.close()
    assert text.endswith("# EOF\n")
    return text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, prefix: str) -> dict[Any, float]:
    """The samples of ``prefix*`` that changed, with by how much."""
    keys = {k for k in (*before, *after) if k[0].startswith(prefix)}
    deltas = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {k: d for k, d in deltas.items() if d}


def check_swap(before: Samples, after: Samples, record: dict[str, Any]) -> None:
    """Exactly one swap of ``record``'s kind and outcome was counted, and each histogram moved
    by that record's figures, no more."""
    kind, ok = record["how"], record["ok"]
    outcome = "ok" if ok else record["error"]["code"]
    result = "ok" if ok else "failed"
    swaps = moved(before, after, "hotswap_swaps_total")
    counter = ("hotswap_swaps_total", frozenset({"kind": kind, "outcome": outcome}.items()))
    assert swaps == {counter: 1}
    labels = {"kind": kind, "result": result}
    duration = moved(before, after, "hotswap_swap_duration_seconds_count")
    assert duration == {("hotswap_swap_duration_seconds_count", frozenset(labels.items())): 1}
    total = value(after, "hotswap_swap_duration_seconds_sum", **labels) - value(
        before, "hotswap_swap_duration_seconds_sum", **labels
    )
    assert total == pytest.approx(record["total_ms"] / 1000, abs=1e-6)
    phases = dict(record.get("timings_ms", {}))
    stats = record.get("stats") or {}
    phases.update({p: stats[f"{p}_ms"] for p in ("prepare", "quiesce") if f"{p}_ms" in stats})
    counted = moved(before, after, f"{PHASE}_count")
    assert counted == {
        (f"{PHASE}_count", frozenset({"phase": p, "result": result}.items())): 1 for p in phases
    }
    for phase, ms in phases.items():
        key = {"phase": phase, "result": result}
        got = value(after, f"{PHASE}_sum", **key) - value(before, f"{PHASE}_sum", **key)
        assert got == pytest.approx(ms / 1000, abs=1e-6), phase
    window = moved(before, after, "hotswap_hot_suspension_seconds_count")
    hot = {("hotswap_hot_suspension_seconds_count", frozenset()): 1}
    assert window == (hot if "window_ms" in stats else {})


def settled(sup: Running, count: int) -> dict[str, Any]:
    """Wait for the ``count``-th swap record and no swap under way; returns the newest."""

    def done() -> dict[str, Any] | None:
        status = sup.status()
        ok = status["active"] and not status["upgrading"] and len(status["recent"]) >= count
        return status if ok else None

    status: dict[str, Any] = wait_for(done, timeout=60, what=f"swap {count} to end")
    return dict(status["recent"][0])


@pytest.mark.slow
def test_metrics_move_exactly_with_ten_swaps_and_a_failed_upgrade(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult, release_v3: BuildResult
) -> None:
    port = free_port()
    env = {"FIXTURE_CRASH_AT_IMPORT": "3.0.0"}  # v3 fails at import: the failed upgrade
    args = ["--metrics", f"127.0.0.1:{port}", "--restart-backoff", "0.05"]
    with supervisor(release_v1.tarball, tmp_path, env=env, args=args) as sup:
        samples = scrape(port)
        check_swap({}, samples, settled(sup, 1))  # 1: the first boot, counted from zero
        assert value(samples, "hotswap_swaps_total", kind="initial", outcome="ok") == 1

        def step(count: int, kind: str, act: Any) -> None:
            nonlocal samples
            act()
            record = settled(sup, count)
            assert record["how"] == kind and record["ok"] is (count != 11), record
            after = fresh_scrape(port)
            check_swap(samples, after, record)
            samples = after

        # 2: a blue-green upgrade, scraped while it runs: upgrading 1, then 0
        upgrade = threading.Thread(target=sup.upgrade, args=(release_v2.tarball,))
        upgrade.start()
        try:
            wait_for(
                lambda: value(scrape(port), "hotswap_upgrading") == 1,
                timeout=30,
                what="hotswap_upgrading 1 during the swap",
            )
        finally:
            upgrade.join(60)
        step(2, "blue-green", lambda: None)
        assert value(samples, "hotswap_upgrading") == 0
        step(3, "blue-green", lambda: sup.upgrade(release_v1.tarball))
        step(4, "rollback", lambda: hotswap.rollback(state_dir=sup.state_dir))  # to v2
        step(5, "rollback", lambda: hotswap.rollback(state_dir=sup.state_dir))  # to v1
        step(6, "restart", lambda: os.kill(sup.proc.pid, signal.SIGHUP))  # from gen 5
        restarts = "hotswap_generation_restarts_total"
        assert value(samples, restarts, kind="restart", outcome="ok") == 0  # not a death
        hot = hotswap.hot_upgrade_generation
        step(7, "hot", lambda: hot(release_v2.tarball, state_dir=sup.state_dir))
        hot_pid = sup.status()["active"]["pid"]
        step(8, "restart", lambda: os.kill(hot_pid, signal.SIGKILL))  # it died: restarted
        assert value(samples, restarts, kind="restart", outcome="ok") == 1
        step(9, "blue-green", lambda: sup.upgrade(release_v1.tarball))
        new_pid = sup.status()["active"]["pid"]
        # dying within the stability window of its cutover: rolled back to v2
        step(10, "auto-rollback", lambda: os.kill(new_pid, signal.SIGKILL))
        assert sup.status()["active"]["release"] == release_v2.manifest.release_id

        def failed() -> None:
            with pytest.raises(ChildError) as caught:
                sup.upgrade(release_v3.tarball)
            assert caught.value.code == "boot_failed"

        step(11, "blue-green", failed)

        # the totals: ten swaps that went through, one that failed
        swaps = {
            dict(labels)["kind"] + "/" + dict(labels)["outcome"]: v
            for (name, labels), v in samples.items()
            if name == "hotswap_swaps_total"
        }
        assert swaps == {
            "initial/ok": 1,
            "blue-green/ok": 3,
            "rollback/ok": 2,
            "restart/ok": 2,
            "hot/ok": 1,
            "auto-rollback/ok": 1,
            "blue-green/boot_failed": 1,
        }
        assert value(samples, restarts, kind="restart", outcome="ok") == 1
        assert value(samples, restarts, kind="auto-rollback", outcome="ok") == 1
        bg = {"kind": "blue-green", "result": "ok"}
        assert value(samples, "hotswap_swap_duration_seconds_bucket", le="+Inf", **bg) == 3
        assert value(samples, "hotswap_swap_duration_seconds_bucket", le="0.01", **bg) == 0
        # drains: 3 blue-green, 2 rollbacks, the SIGHUP restart (the others had no old one)
        assert value(samples, f"{PHASE}_count", phase="drain", result="ok") == 6
        assert value(samples, "hotswap_hot_suspension_seconds_count") == 1
        assert 0 < value(samples, "hotswap_hot_suspension_seconds_sum") < 0.1

        # the gauges say what status says
        status = sup.status()
        active = status["active"]
        assert value(samples, "hotswap_active_generation") == active["generation"]
        info = {"release": active["release"], "version": active["version"]}
        assert value(samples, "hotswap_active_release_info", **info) == 1
        assert [k for k in samples if k[0] == "hotswap_active_release_info"] == [
            ("hotswap_active_release_info", frozenset(info.items()))
        ]
        assert 0 < value(samples, "hotswap_active_generation_uptime_seconds") < 60
        assert value(samples, "hotswap_workers_alive") == 1
        assert value(samples, "hotswap_generations", state="live") == 1
        assert value(samples, "hotswap_handoff_store_keys") >= 1  # before_cutover's result
        assert value(samples, "hotswap_handoff_store_bytes") > 0
        assert value(samples, "hotswap_log_lines_dropped_total") == 0
        assert value(samples, "hotswap_metrics_stale_scrapes_total") == 0
        assert value(samples, "hotswap_supervisor_resident_memory_bytes") > 10_000_000
        fds = value(samples, "hotswap_supervisor_open_fds")
        assert 5 < fds < 100


@contextmanager
def stuck_scrapers(port: int) -> Iterator[list[socket.socket]]:
    """Scrapers that hold their connection and make no progress: one sends nothing, one half
    a request, one reads nothing of its answer (a small receive buffer), one reads one byte."""
    with ExitStack() as stack:
        socks = []
        for kind in ("silent", "half", "no-read", "one-byte"):
            s = stack.enter_context(socket.socket())
            if kind in ("no-read", "one-byte"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            if kind == "half":
                s.sendall(b"GET /metr")
            elif kind != "silent":
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                if kind == "one-byte":
                    assert s.recv(1) == b"H"
            socks.append(s)
        yield socks


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return time.monotonic() - start, result


def test_a_stuck_scraper_never_delays_status_or_a_swap(
    tmp_path: Path, release_v1: BuildResult, release_v2: BuildResult
) -> None:
    port = free_port()
    with supervisor(release_v1.tarball, tmp_path, args=["--metrics", f"127.0.0.1:{port}"]) as sup:
        with stuck_scrapers(port):
            for _ in range(5):
                elapsed, _status = timed(sup.status)
                assert elapsed < 1.0, f"status took {elapsed:.2f}s behind a stuck scraper"
            elapsed, record = timed(sup.upgrade, release_v2.tarball)
            assert record["ok"] and elapsed < 30
            elapsed, samples = timed(scrape, port)  # another scraper is served meanwhile
            assert elapsed < 2.0
            # OpenMetrics: the swap's id is the exemplar of what it moved
            line = next(
                ln
                for ln in scrape_openmetrics(port).splitlines()
                if ln.startswith('hotswap_swaps_total{kind="blue-green",outcome="ok"}')
            )
            assert f'# {{swap_id="{record["id"]}"}} 1.0' in line, line
            assert value(samples, "hotswap_swaps_total", kind="blue-green", outcome="ok") == 1
            assert value(samples, "hotswap_metrics_stale_scrapes_total") == 0
        # every stuck connection is let go once its scraper hangs up
        wait_for(
            lambda: fd_count(sup.proc.pid) <= (sup.fds_at_start or 0),
            timeout=10,
            what="the scrapers' connections to be closed",
        )
        # a flood of idle connections: the ones over MAX_CLIENTS are closed at once, the
        # control socket answers as before
        with ExitStack() as stack:
            flood = [
                stack.enter_context(socket.create_connection(("127.0.0.1", port), 5))
                for _ in range(MAX_CLIENTS + 4)
            ]
            closed = 0
            for s in flood[MAX_CLIENTS:]:
                s.settimeout(CLIENT_TIMEOUT / 2)
                closed += s.recv(1) == b""
            assert closed == 4
            elapsed, _status = timed(sup.status)
            assert elapsed < 1.0
        wait_for(lambda: _scrapes(port), timeout=10, what="a scrape once the flood is gone")


def _scrapes(port: int) -> bool:
    try:
        scrape(port, timeout=1.0)
    except OSError:
        return False
    return True


def with_metrics(release: BuildResult, address: str, dest: Path) -> Path:
    """``release`` with ``[tool.hotswap] metrics = address`` in its manifest (a new release id,
    the same files): what ``hotswap build`` makes of that config, without building again."""
    members = []
    with tarfile.open(release.tarball) as tar:
        for info in tar:
            if info.isdir():
                members.append(forge.directory(info.name, info.mode))
                continue
            extracted = tar.extractfile(info)
            assert extracted is not None
            data = extracted.read()
            if info.name == MANIFEST_NAME:
                manifest = json.loads(data)
                manifest["app"]["metrics"] = address
                manifest["release_id"] = release_id_for(manifest)
                data = forge.dump_manifest(manifest)
                name = f"{manifest['name']}-{manifest['release_id']}.tar.gz"
            members.append(forge.file(info.name, data, info.mode))
    return forge.write_archive(dest / name, members)


def test_the_release_config_names_the_metrics_address_and_the_flag_wins(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    configured = free_port()
    tarball = with_metrics(release_v1, f"127.0.0.1:{configured}", tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with supervisor(tarball, tmp_path / "a") as sup:
        assert value(scrape(configured), "hotswap_active_generation") == 1
        assert f"metrics on http://127.0.0.1:{configured}/metrics" in sup.log()
    flag = free_port()
    with supervisor(tarball, tmp_path / "b", args=["--metrics", f"127.0.0.1:{flag}"]):
        assert value(scrape(flag), "hotswap_active_generation") == 1
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", configured)) != 0  # not bound


def test_a_worker_restart_moves_the_worker_gauges_and_no_swap_counter(
    tmp_path: Path, release_v1: BuildResult
) -> None:
    port = free_port()
    args = ["--workers", "2", "--metrics", f"127.0.0.1:{port}"]
    with supervisor(release_v1.tarball, tmp_path, args=args) as sup:
        before = scrape(port)
        assert value(before, "hotswap_workers_alive") == 2
        assert value(before, "hotswap_worker_up", worker="1") == 1
        victim = sup.status()["active"]["workers"][1]["pid"]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> Samples | None:
            samples = scrape(port)
            return samples if value(samples, "hotswap_worker_restarts", worker="1") == 1 else None

        after = wait_for(restarted, timeout=30, what="worker 1's restart in /metrics")
        assert value(after, "hotswap_workers_alive") == 2
        assert value(after, "hotswap_worker_up", worker="1") == 1
        assert value(after, "hotswap_active_worker_restarts") == 1
        assert value(after, "hotswap_worker_restarts", worker="0") == 0
        assert moved(before, after, "hotswap_swaps_total") == {}  # a worker restart is no swap
        assert moved(before, after, "hotswap_generation_restarts_total") == {}
        assert value(after, "hotswap_active_generation") == 1
