"""When to restart a generation that died outside an upgrade. Pure: the caller passes the time.

Backoff starts at ``initial`` seconds and doubles to ``maximum``; more than ``max_restarts``
restarts within ``window`` seconds and the supervisor gives up and exits non-zero, so systemd
(or whatever runs it) can restart it, rather than flapping forever (Einhorn's failure mode).
A generation that stayed up for a whole ``window`` resets the backoff.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hotswap import contract


@dataclass
class RestartPolicy:
    initial: float = contract.RESTART_INITIAL
    maximum: float = contract.RESTART_MAXIMUM
    max_restarts: int = contract.MAX_RESTARTS
    window: float = contract.RESTART_WINDOW
    _restarts: deque[float] = field(default_factory=deque)
    _delay: float = 0.0

    def on_exit(self, now: float, uptime: float) -> float | None:
        """A generation died at ``now`` after ``uptime`` seconds. Returns the delay before the
        next restart, or None when there were too many restarts in the window (give up)."""
        while self._restarts and now - self._restarts[0] > self.window:
            self._restarts.popleft()
        if uptime >= self.window:
            self._delay = 0.0
        if len(self._restarts) >= self.max_restarts:
            return None
        self._delay = self.initial if self._delay == 0.0 else min(self._delay * 2, self.maximum)
        self._restarts.append(now)
        return self._delay

    def reset(self) -> None:
        self._restarts.clear()
        self._delay = 0.0
