"""The record of what ran while this worker started (see :mod:`hotswap.hot.startup`).

Standard library only: a worker imports it at boot, long before (and often without) the hot
upgrader.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from typing import Any

Ran = Mapping[str, frozenset[str]]  # module -> qualnames of its functions that ran

_lock = threading.Lock()
_ran: dict[str, frozenset[str]] = {}
_active: _Recorder | None = None


class _Recorder:
    """The code objects that start running while it is on, on this thread and on threads
    started meanwhile."""

    def __init__(self) -> None:
        self.seen: set[types.CodeType] = set()
        self.stopped = False
        self.previous = sys.getprofile()
        add = self.seen.add
        me = self

        def hook(frame: types.FrameType, event: str, _arg: Any) -> None:
            if event == "call":
                if me.stopped:
                    sys.setprofile(None)
                    return
                add(frame.f_code)

        self.hook = hook

    def start(self) -> bool:
        if self.previous is not None:  # a profiler of the app's own: not ours to replace
            return False
        threading.setprofile(self.hook)
        sys.setprofile(self.hook)
        return True

    def stop(self) -> dict[str, frozenset[str]]:
        self.stopped = True  # other threads drop the hook at their next call
        threading.setprofile(None)
        if sys.getprofile() is self.hook:
            sys.setprofile(None)
        by_file: dict[str, str] = {}
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None) if isinstance(mod, types.ModuleType) else None
            if isinstance(f, str):
                by_file.setdefault(f, name)
        out: dict[str, set[str]] = {}
        for code in list(self.seen):
            module = by_file.get(code.co_filename)
            # functions only: a module's or a class body's code is import, which the analysis
            # of the upgrade follows statement by statement
            if module is not None and code.co_flags & inspect.CO_OPTIMIZED:
                out.setdefault(module, set()).add(code.co_qualname)
        self.seen.clear()
        return {m: frozenset(q) for m, q in out.items()}


def begin() -> bool:
    """Start recording (a worker, right after importing ``app.entry``). False if a profiler
    of the app's own runs (nothing is recorded then)."""
    global _active
    with _lock:
        if _active is not None:
            return True
        rec = _Recorder()
        if not rec.start():
            return False
        _active = rec
        return True


def end() -> None:
    """Stop recording and keep what ran (a worker, when it reports ready). Idempotent."""
    global _active
    with _lock:
        rec, _active = _active, None
        if rec is None:
            return
        for module, names in rec.stop().items():
            _ran[module] = _ran.get(module, frozenset()) | names


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Record what runs in the block as start-up code (see the module docstring)."""
    begin()
    try:
        yield
    finally:
        end()


def ran() -> Ran:
    """What ran at start-up in this process, by module."""
    with _lock:
        return dict(_ran)


def of_files(prefix: str) -> dict[str, list[str]]:
    """The record of the modules whose files start with ``prefix`` (a release's ``lib/``):
    what a worker reports with ready, for ``hotswap check`` to refuse what it refuses."""
    out: dict[str, list[str]] = {}
    for module, names in ran().items():
        f = getattr(sys.modules.get(module), "__file__", None)
        if isinstance(f, str) and f.startswith(prefix):
            out[module] = sorted(names)
    return out


def adopt(record: Mapping[str, Any]) -> None:
    """Take a worker's record as this process's own (``hotswap check``'s child)."""
    with _lock:
        for module, names in record.items():
            if isinstance(module, str) and isinstance(names, list):
                kept = frozenset(n for n in names if isinstance(n, str))
                _ran[module] = _ran.get(module, frozenset()) | kept


def forget() -> None:
    """Drop the record (tests)."""
    global _active
    with _lock:
        if _active is not None:
            _active.stop()
            _active = None
        _ran.clear()
