"""The undo journal: every change a hot upgrade makes to a live object, and how to take it back.

Promise 9 (a failed hot upgrade changes nothing) rests on this file. Each write the commit makes
goes through a :class:`Journal` method that first records how to restore the old value; on any
failure :meth:`Journal.rollback` replays the records newest first. Restoring keeps identities:
a module dict, a class's ``_member_map_`` or an instance ``__dict__`` is put back *in place*
(``clear`` + ``update``), never replaced by a copy, so references other code holds stay valid.

Class attributes are written with ``type.__setattr__``/``type.__delattr__`` so metaclass hooks
(``EnumType`` forbids reassigning members) do not interfere, and so the interpreter's slot
wrappers (``__eq__`` → ``tp_richcompare``) follow the dict.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Callable, MutableMapping
from typing import Any

from hotswap.hot import closure

MISSING: Any = object()
"""Marks "this name was not bound" in a record."""

_CONTAINERS = (dict, list, set, bytearray)


class Journal:
    """Undo records for one hot upgrade. Not thread-safe: it lives inside the window."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._seen: set[int] = set()
        self._keep: list[object] = []  # keeps snapshotted objects alive so ids stay unique

    def __len__(self) -> int:
        return len(self._undo)

    def record(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def _once(self, obj: object) -> bool:
        """True the first time ``obj`` is snapshotted in this journal."""
        key = id(obj)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._keep.append(obj)
        return True

    # -- containers, restored in place ------------------------------------------------------

    def snapshot_dict(self, d: MutableMapping[Any, Any]) -> None:
        if not self._once(d):
            return
        saved = dict(d)

        def undo() -> None:
            for key in [k for k in d if k not in saved]:
                del d[key]
            for key, value in saved.items():
                if key not in d or d[key] is not value:
                    d[key] = value

        self.record(undo)

    def snapshot_container(self, c: object) -> None:
        """Snapshot a dict, list, set or bytearray so its contents can be put back in place."""
        if isinstance(c, dict):
            self.snapshot_dict(c)
        elif isinstance(c, list | bytearray):
            if not self._once(c):
                return
            saved_seq = c[:]

            def undo_seq() -> None:
                c[:] = saved_seq

            self.record(undo_seq)
        elif isinstance(c, set):
            if not self._once(c):
                return
            saved_set = set(c)

            def undo_set() -> None:
                c.clear()
                c.update(saved_set)

            self.record(undo_set)

    def snapshot_namespace(self, d: dict[str, Any], names: set[str] | None = None) -> None:
        """Snapshot a module dict, and one level down the containers it binds under ``names``.

        ``names`` are the globals the code about to run can reach (its ``co_names``); their dict,
        list and set values are copied too, so ``REGISTRY.append(x)`` in a re-run statement or a
        ``__code_change__`` is undone. Containers the code cannot name are not copied, which keeps
        the cost out of large caches the upgrade never touches.
        """
        self.snapshot_dict(d)
        if names:
            for name in names:
                value = d.get(name)
                if type(value) in _CONTAINERS:
                    self.snapshot_container(value)
        ann = d.get("__annotations__")
        if isinstance(ann, dict):
            self.snapshot_dict(ann)

    # -- attributes -------------------------------------------------------------------------

    def setattr(self, obj: object, name: str, value: object) -> None:
        old = getattr(obj, name, MISSING)

        def undo() -> None:
            if old is MISSING:
                if hasattr(obj, name):
                    delattr(obj, name)
            else:
                setattr(obj, name, old)

        self.record(undo)
        setattr(obj, name, value)

    def snapshot_class(self, cls: type) -> None:
        """Record a class's own dict; undo puts every entry back through ``type.__setattr__``."""
        if not self._once(cls):
            return
        saved = dict(cls.__dict__)

        def undo() -> None:
            current = cls.__dict__
            for key in [k for k in current if k not in saved]:
                type.__delattr__(cls, key)
            for key, value in saved.items():
                if key in ("__dict__", "__weakref__"):
                    continue
                if key not in current or current[key] is not value:
                    type.__setattr__(cls, key, value)

        self.record(undo)

    # -- functions --------------------------------------------------------------------------

    def snapshot_function(self, fn: types.FunctionType) -> None:
        if not self._once(fn):
            return
        code = fn.__code__
        defaults = fn.__defaults__
        kwdefaults = fn.__kwdefaults__
        annotations = fn.__annotations__
        doc = fn.__doc__
        fdict = dict(fn.__dict__)
        cells = fn.__closure__

        def undo() -> None:
            if fn.__closure__ is not cells:
                closure.set_closure(fn, cells, code)
            elif fn.__code__ is not code:
                fn.__code__ = code
            fn.__defaults__ = defaults
            fn.__kwdefaults__ = kwdefaults
            fn.__annotations__ = annotations
            fn.__doc__ = doc
            d = fn.__dict__
            d.clear()
            d.update(fdict)

        self.record(undo)

    # -- instances --------------------------------------------------------------------------

    def snapshot_instance(self, obj: object) -> None:
        """Record an instance's ``__dict__`` and slots, and one level of containers in them."""
        if not self._once(obj):
            return
        d = getattr(obj, "__dict__", None)
        if isinstance(d, dict):
            self.snapshot_dict(d)
            for value in list(d.values()):
                if type(value) in _CONTAINERS:
                    self.snapshot_container(value)
        slots = _slot_names(type(obj))
        if slots:
            saved = {n: getattr(obj, n, MISSING) for n in slots}

            def undo() -> None:
                for n, v in saved.items():
                    if v is MISSING:
                        if hasattr(obj, n):
                            object.__delattr__(obj, n)
                    elif getattr(obj, n, MISSING) is not v:
                        object.__setattr__(obj, n, v)

            self.record(undo)
            for value in saved.values():
                if type(value) in _CONTAINERS:
                    self.snapshot_container(value)

    # -- replay -----------------------------------------------------------------------------

    def rollback(self) -> list[str]:
        """Replay every record, newest first. Returns the errors of records that failed (the
        rest are still replayed); an empty list means the process is exactly as before."""
        errors: list[str] = []
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except BaseException as exc:  # keep restoring the rest, whatever happened
                errors.append(f"{type(exc).__name__}: {exc}")
        self.discard()
        return errors

    def discard(self) -> None:
        """Forget every record (the upgrade is final)."""
        self._undo.clear()
        self._seen.clear()
        self._keep.clear()


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for s in slots:
            if s in ("__dict__", "__weakref__"):
                continue
            if s.startswith("__") and not s.endswith("__"):
                s = f"_{klass.__name__.lstrip('_')}{s}"
            names.append(s)
    return names


def record_sys_modules(journal: Journal) -> None:
    """Record ``sys.modules`` so modules imported during the window are forgotten on undo, along
    with the attribute their import set on the parent package."""
    saved = dict(sys.modules)

    def undo() -> None:
        for name in [n for n in sys.modules if n not in saved]:
            mod = sys.modules.pop(name)
            parent, _, leaf = name.rpartition(".")
            pmod = saved.get(parent) if parent else None
            if pmod is not None and getattr(pmod, leaf, None) is mod:
                with contextlib.suppress(AttributeError):
                    delattr(pmod, leaf)
        for name, mod in saved.items():
            if sys.modules.get(name) is not mod:
                sys.modules[name] = mod

    journal.record(undo)
