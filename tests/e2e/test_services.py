"""Services: long-lived components under the supervisor that generations call."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import hotswap
from hotswap.control import client
from hotswap.control.protocol import MAX_LINE
from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor, wait_for

COUNTER = {"services": [{"name": "counter", "entry": "fixture_app.services:Counter"}]}


def test_service_starts_first_survives_cutovers_and_is_callable_from_generations(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", tool=COUNTER)
    v2 = build_release("2.0.0", tool=COUNTER)
    with supervisor(v1.tarball, tmp_path) as sup:
        state = sup.state_dir
        status = sup.status()
        (svc,) = status["services"]
        assert svc["name"] == "counter" and svc["state"] == "live"
        info = hotswap.call_service("counter", "info", state_dir=state)
        assert info["pid"] == svc["pid"]
        # started before the first generation
        assert info["started_at"] < status["active"]["started_at"]
        assert sup.get_json("/count?by=2") == {"n": 2, "version": "1.0.0"}
        sup.upgrade(v2.tarball)
        # not restarted by the cutover: same process, same state
        assert sup.get_json("/count") == {"n": 3, "version": "2.0.0"}
        assert hotswap.call_service("counter", "info", state_dir=state)["pid"] == svc["pid"]
        assert hotswap.call_service("counter", "incr", 10, state_dir=state) == 13
    # stopped last, with its stop() hook
    assert (tmp_path / "state" / "counter-stopped").read_text() == "13"


def test_crashed_service_is_restarted(tmp_path: Path, build_release: BuildRelease) -> None:
    v1 = build_release("1.0.0", tool=COUNTER)
    with supervisor(v1.tarball, tmp_path) as sup:
        state = sup.state_dir
        first = hotswap.call_service("counter", "info", state_dir=state)["pid"]
        hotswap.call_service("counter", "incr", 5, state_dir=state)
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            svc = sup.status()["services"][0]
            return svc["state"] == "live" and svc["pid"] != first and svc["restarts"] == 1

        wait_for(restarted, what="the service restart")
        assert hotswap.call_service("counter", "incr", state_dir=state) == 1  # a fresh object
        assert sup.get_json()["version"] == "1.0.0"  # the generation was not touched


def test_service_errors_keep_their_codes(tmp_path: Path, build_release: BuildRelease) -> None:
    v1 = build_release("1.0.0", tool=COUNTER)
    with supervisor(v1.tarball, tmp_path) as sup:
        state = sup.state_dir
        with pytest.raises(hotswap.ChildError) as boom:
            hotswap.call_service("counter", "boom", state_dir=state)
        assert boom.value.code == "service_failed" and "boom, as asked" in boom.value.message
        with pytest.raises(hotswap.UsageError) as busy:
            hotswap.call_service("counter", "busy", state_dir=state)
        assert busy.value.code == "upgrade_in_progress"
        with pytest.raises(hotswap.UsageError) as missing:
            hotswap.call_service("nope", "x", state_dir=state)
        assert missing.value.code == "service_not_found"
        for method in ("_private", "stop", "nothing_here"):
            with pytest.raises(hotswap.UsageError) as bad:
                hotswap.call_service("counter", method, state_dir=state)
            assert bad.value.code == "bad_request"
        assert hotswap.call_service("counter", "incr", state_dir=state) == 1  # still fine


def test_a_service_result_that_cannot_be_sent_is_answered_with_a_code(
    tmp_path: Path, build_release: BuildRelease
) -> None:
    v1 = build_release("1.0.0", tool=COUNTER)
    with supervisor(v1.tarball, tmp_path) as sup:
        state = sup.state_dir
        for method, args in (("tags", []), ("huge", [MAX_LINE + 1])):
            with pytest.raises(hotswap.HotswapError) as unsent:
                # a bounded wait: before the fix the caller waited for ever
                client.call(
                    "service.call",
                    state_dir=state,
                    timeout=30,
                    name="counter",
                    method=method,
                    args=args,
                    kwargs={},
                )
            assert unsent.value.code == "unencodable_result", unsent.value
        assert hotswap.call_service("counter", "incr", state_dir=state) == 1  # still serving
