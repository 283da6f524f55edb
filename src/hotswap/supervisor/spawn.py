"""The one seam between the supervisor and the operating system's process calls.

Spawning, signalling, waiting and fd inheritance all go through :class:`Spawner` and the
:class:`ChildProcess` it returns (tableflip's ``env.go``), so nothing else calls ``os.fork``,
``os.kill`` or ``waitpid``.

Inherited descriptors are placed with ``posix_spawn`` file actions, not ``pass_fds``: systemd's
``LISTEN_FDS`` protocol needs the listeners at fds 3, 4, ... and ``pass_fds`` cannot renumber.
Every source is first dup'ed to a high scratch number and then to its target, so a source that
already sits on another target's number is never clobbered, and ``dup2`` always clears
close-on-exec (it would not if source and target were equal). Every other descriptor of the
supervisor is close-on-exec (PEP 446), so nothing else leaks into a child.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hotswap.contract import LISTEN_FDS_START

_SCRATCH = 512  # scratch fd numbers used while renumbering in the child


@dataclass
class ChildProcess:
    """A spawned child: its pid, a pidfd to wait on, and its exit status once reaped."""

    pid: int
    pidfd: int
    returncode: int | None = field(default=None)

    def poll(self) -> int | None:
        """Reap without blocking; the exit status (negative: killed by that signal)."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -255
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, sig)

    def kill(self) -> None:
        """SIGKILL it and everything in its process group (what it forked and left there)."""
        self.kill_group()
        self.send_signal(signal.SIGKILL)

    def kill_group(self) -> None:
        """SIGKILL the process group it leads (it was spawned in a session of its own). Only
        while it is not reaped: until then its pid, the group's id, cannot be reused."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class Spawner:
    """Starts child processes with an exact descriptor layout."""

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdin: int,
        stdout: int,
        stderr: int,
        fds: Sequence[int] = (),
    ) -> ChildProcess:
        """Run ``argv`` with ``fds[i]`` at descriptor ``3 + i`` and the given stdio, in a new
        session (terminal signals go to the supervisor, which decides what children do)."""
        targets = [(stdin, 0), (stdout, 1), (stderr, 2)]
        targets += [(fd, LISTEN_FDS_START + i) for i, fd in enumerate(fds)]
        actions: list[tuple[int, ...]] = []
        for i, (src, _target) in enumerate(targets):
            actions.append((os.POSIX_SPAWN_DUP2, src, _SCRATCH + i))
        for i, (_src, target) in enumerate(targets):
            actions.append((os.POSIX_SPAWN_DUP2, _SCRATCH + i, target))
        for i in range(len(targets)):
            actions.append((os.POSIX_SPAWN_CLOSE, _SCRATCH + i))
        pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
        return ChildProcess(pid, os.pidfd_open(pid))
