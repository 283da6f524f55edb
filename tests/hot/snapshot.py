"""A fingerprint of everything a hot upgrade may touch, compared by identity.

``take(pkg)`` records, for every module of a package: its dict (names → object identities),
every class in it (its dict, enum member tables), every function reachable from them (code,
defaults, kw-defaults, closure, annotations, doc, dict), the state of instances and containers
the module binds; plus ``sys.modules`` and ``sys.path``. Two snapshots are equal when every entry
is the *same object* as before. The snapshot keeps what it saw alive, so ids cannot be reused.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Any


class Snapshot:
    def __init__(self, pkg: str) -> None:
        self.keep: list[object] = []
        self.rows: list[tuple[Any, ...]] = []
        self._seen: set[int] = set()
        self.rows.append(("sys.path", tuple(sys.path)))
        self.rows.append(
            ("sys.modules", tuple(sorted(k for k in sys.modules if k.startswith(pkg))))
        )
        for name in sorted(k for k in sys.modules if k == pkg or k.startswith(pkg + ".")):
            mod = sys.modules[name]
            self.rows.append(("module", name, self._id(mod)))
            self._namespace(f"{name}", mod.__dict__, mod.__name__)

    def _id(self, obj: object) -> int:
        self.keep.append(obj)
        return id(obj)

    def _items(self, d: Any) -> tuple[tuple[str, int], ...]:
        return tuple(sorted((str(k), self._id(v)) for k, v in d.items()))

    def _namespace(self, where: str, d: dict[str, Any], modname: str) -> None:
        self.rows.append(("dict", where, self._items(d)))
        for key, value in list(d.items()):
            self._value(f"{where}.{key}", value, modname)

    def _value(self, where: str, value: object, modname: str) -> None:
        if id(value) in self._seen:
            return
        self._seen.add(id(value))
        self.keep.append(value)
        if isinstance(value, type):
            if value.__module__ != modname:
                return
            self.rows.append(("class", where, self._items(value.__dict__)))
            for attr in ("_member_names_", "_member_map_", "_value2member_map_"):
                table = value.__dict__.get(attr)
                if isinstance(table, list):
                    self.rows.append((attr, where, tuple(self._id(v) for v in table)))
                elif isinstance(table, dict):
                    self.rows.append((attr, where, self._items(table)))
            for key, item in list(value.__dict__.items()):
                self._value(f"{where}.{key}", item, modname)
        elif isinstance(value, types.FunctionType):
            self.rows.append(
                (
                    "function",
                    where,
                    self._id(value.__code__),
                    self._id(value.__defaults__),
                    self._id(value.__kwdefaults__),
                    self._id(value.__closure__),
                    self._items(value.__annotations__),
                    self._id(value.__annotations__),
                    self._id(value.__doc__),
                    self._items(value.__dict__),
                )
            )
            for cell in value.__closure__ or ():
                with contextlib.suppress(ValueError):
                    self._value(f"{where}.<cell>", cell.cell_contents, modname)
            wrapped = value.__dict__.get("__wrapped__")
            if wrapped is not None:
                self._value(f"{where}.__wrapped__", wrapped, modname)
        elif isinstance(value, staticmethod | classmethod):
            self._value(f"{where}.__func__", value.__func__, modname)
        elif isinstance(value, property):
            for part in ("fget", "fset", "fdel"):
                f = getattr(value, part)
                if f is not None:
                    self._value(f"{where}.{part}", f, modname)
        elif isinstance(value, dict):
            self.rows.append(("dict-value", where, self._items(value)))
        elif isinstance(value, list | tuple | set | frozenset):
            self.rows.append(("seq", where, tuple(sorted(self._id(v) for v in value))))
        elif isinstance(value, types.ModuleType):
            return
        elif type(value).__module__ == modname and hasattr(value, "__dict__"):
            self.rows.append(("instance", where, self._items(vars(value))))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.rows == other.rows

    def diff(self, other: Snapshot) -> list[str]:
        a, b = set(map(repr, self.rows)), set(map(repr, other.rows))
        return sorted(a ^ b)[:10]

    __hash__ = None  # type: ignore[assignment]


def take(pkg: str) -> Snapshot:
    return Snapshot(pkg)
