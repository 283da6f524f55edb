from __future__ import annotations

from hotswap.supervisor.policy import RestartPolicy


def test_backoff_doubles_to_the_maximum() -> None:
    p = RestartPolicy(initial=1, maximum=5, max_restarts=100, window=1000)
    assert [p.on_exit(float(t), uptime=0.1) for t in range(6)] == [1, 2, 4, 5, 5, 5]


def test_gives_up_after_too_many_restarts_in_the_window() -> None:
    p = RestartPolicy(max_restarts=3, window=60)
    assert [p.on_exit(t, uptime=1) for t in (0.0, 1.0, 2.0)] == [1, 2, 4]
    assert p.on_exit(3.0, uptime=1) is None


def test_restarts_outside_the_window_do_not_count_and_long_uptime_resets_backoff() -> None:
    p = RestartPolicy(max_restarts=2, window=10)
    assert p.on_exit(0.0, uptime=1) == 1
    assert p.on_exit(1.0, uptime=1) == 2
    assert p.on_exit(100.0, uptime=50) == 1  # both earlier restarts aged out; backoff reset
