"""Fixtures for hot-upgrade tests: real module files in real release directories, really imported.

``hot`` gives each test its own top-level package name (``PKG`` in the sources it writes is
replaced by it), writes releases with :func:`hotswap.hot.testing.write_release`, imports from
them with ``running_release`` and forgets every module and ``sys.path`` entry afterwards. Every
test also checks that the upgrader left the garbage collector and the switch interval as they
were.
"""

from __future__ import annotations

import gc
import importlib
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hotswap.hot import HotUpgradeStats, hot_upgrade, startup
from hotswap.hot.heap import HeapIndex
from hotswap.hot.testing import running_release, write_release


class Hot:
    """Writes releases of one test package and upgrades the running one."""

    def __init__(self, base: Path, stack: ExitStack) -> None:
        self.pkg = "hs_" + uuid.uuid4().hex[:10]
        self.base = base
        self.stack = stack
        self.current: Path | None = None
        self._n = 0

    def files(self, files: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for rel, text in files.items():
            path = rel[1:] if rel.startswith("/") else f"{self.pkg}/{rel}"
            out[path] = textwrap.dedent(text).replace("PKG", self.pkg)
        out.setdefault(f"{self.pkg}/__init__.py", "")
        return out

    def release(self, files: dict[str, str], **kw: Any) -> Path:
        self._n += 1
        kw.setdefault("version", str(self._n))
        return write_release(self.base / f"r{self._n}", self.files(files), **kw)

    def start(self, root: Path, *modules: str) -> list[ModuleType]:
        self.stack.enter_context(running_release(root))
        self.current = root
        return [self.imp(m) for m in modules]

    def imp(self, module: str) -> ModuleType:
        return importlib.import_module(f"{self.pkg}.{module}" if module else self.pkg)

    def upgrade(self, root: Path, **kw: Any) -> HotUpgradeStats:
        """Upgrade in place; these tests run nothing concurrently unless they pass a loop or a
        gate, so they say ``no_quiesce``."""
        if "loop" not in kw and "gate" not in kw:
            kw.setdefault("no_quiesce", True)
        stats = hot_upgrade(root, current=self.current, **kw)
        self.current = root
        return stats

    def v1_v2(
        self, v1: dict[str, str], v2: dict[str, str], *modules: str
    ) -> tuple[Path, Path, list[ModuleType]]:
        r1, r2 = self.release(v1), self.release(v2)
        return r1, r2, self.start(r1, *modules)

    def started(
        self, v1: dict[str, str], v2: dict[str, str], module: str, start: str
    ) -> tuple[Path, ModuleType]:
        """Run ``v1`` and call ``module.start()`` as a worker's start-up (recorded, as from
        importing ``app.entry`` to ready); the release ``v2`` and the module."""
        _, r2, (m,) = self.v1_v2(v1, v2, module)
        with startup.recording():
            getattr(m, start)()
        return r2, m


@pytest.fixture
def hot(tmp_path: Path) -> Iterator[Hot]:
    with ExitStack() as stack:
        stack.callback(startup.forget)
        yield Hot(tmp_path, stack)


@pytest.fixture(autouse=True)
def _interpreter_left_as_found() -> Iterator[None]:
    enabled, interval = gc.isenabled(), sys.getswitchinterval()
    yield
    assert gc.isenabled() == enabled, "the upgrader left the cyclic GC paused"
    assert sys.getswitchinterval() == interval
    assert not [cb for cb in gc.callbacks if isinstance(getattr(cb, "__self__", None), HeapIndex)]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``predicate`` by blocking on a condition notified by the code under test.

    Only for states changed by threads that call :func:`notify` (test helpers below)."""
    deadline = _Clock.now() + timeout
    with _changed:
        while not predicate():
            left = deadline - _Clock.now()
            if left <= 0:
                raise AssertionError("condition not reached within the deadline")
            _changed.wait(left)


def notify() -> None:
    with _changed:
        _changed.notify_all()


_changed = threading.Condition()


class _Clock:
    @staticmethod
    def now() -> float:
        import time

        return time.monotonic()
