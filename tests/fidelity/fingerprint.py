"""What a fresh import and a hot-upgraded process must agree on, as comparable plain data.

Runs inside the harness's child interpreters (standard library only). :func:`modules` describes
every module imported from a release's ``lib/``: each name of its dict with the kind of its value
and, for functions and classes defined there, their code (``co_code``, constants, names,
variables, flags, first line: nested code objects recursively), defaults, keyword defaults,
annotations and doc, and every member of their class dicts. Paths under a release are written
``<lib>/...`` and object addresses are dropped, so two releases of the same code describe alike.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import re
import sys
import types
from typing import Any

_ADDR = re.compile(r" at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{6,}")
_SIMPLE = (type(None), bool, int, float, complex, str, bytes)
_SKIP_CLASS = {"__dict__", "__weakref__", "__module__"}
_SKIP_MODULE = {
    "__warningregistry__",
    "__builtins__",
    "__loader__",
    "__spec__",
    "__cached__",
    "__file__",
    "__path__",
}


class Describer:
    """Describes values relative to the release roots ``libs`` (old and new ``lib/`` paths)."""

    def __init__(self, libs: list[str]) -> None:
        self.libs = sorted(libs, key=len, reverse=True)
        self.classes: dict[str, dict[str, Any]] = {}

    def norm(self, text: str) -> str:
        for lib in self.libs:
            text = text.replace(lib, "<lib>")
        return _ADDR.sub("", text)

    def digest(self, obj: Any) -> str:
        return hashlib.sha1(self.norm(repr(obj)).encode()).hexdigest()[:12]

    def code(self, co: types.CodeType) -> tuple[Any, ...]:
        consts = tuple(self.code(c) if isinstance(c, types.CodeType) else c for c in co.co_consts)
        return (
            co.co_qualname,
            co.co_code,
            consts,
            co.co_names,
            co.co_varnames,
            co.co_freevars,
            co.co_cellvars,
            co.co_argcount,
            co.co_posonlyargcount,
            co.co_kwonlyargcount,
            co.co_flags,
            co.co_firstlineno,
            self.norm(co.co_filename),
        )

    def function(self, f: types.FunctionType) -> dict[str, str]:
        return {
            "kind": "function",
            "code": self.digest(self.code(f.__code__)),
            "defaults": self.digest(tuple(self.value(d) for d in f.__defaults__ or ())),
            "kwdefaults": self.digest(
                sorted((k, self.value(v)) for k, v in (f.__kwdefaults__ or {}).items())
            ),
            "annotations": self.digest(sorted((k, self.value(v)) for k, v in _annotations(f))),
            "doc": self.digest(f.__doc__),
        }

    def value(self, v: Any, home: str = "", depth: int = 0) -> Any:
        """A JSON-able description of ``v``; ``home`` is the module (or class path) it is in."""
        if isinstance(v, _SIMPLE):
            text = self.norm(repr(v))
            return text if len(text) <= 120 else "h:" + self.digest(text)
        if isinstance(v, types.ModuleType):
            return "module:" + v.__name__
        if isinstance(v, enum.Enum):
            return f"enum:{type(v).__qualname__}.{v.name}={self.value(v.value, depth=depth + 1)}"
        if isinstance(v, type):
            path = f"{v.__module__}.{v.__qualname__}"
            if home and _defined_in(v, home):
                self.describe_class(v)
                return "class:" + path
            return "ref:" + path
        if isinstance(v, types.FunctionType):
            if home and _defined_in(v, home):
                return self.function(v)
            return f"ref:{v.__module__}.{v.__qualname__}"
        if isinstance(v, (staticmethod, classmethod)):
            return {"kind": type(v).__name__, "func": self.value(v.__func__, home, depth + 1)}
        if isinstance(v, property):
            return {
                "kind": "property",
                **{a: self.value(getattr(v, a), home, depth + 1) for a in ("fget", "fset", "fdel")},
            }
        if isinstance(v, functools.partial):
            return {"kind": "partial", "func": self.value(v.func, home, depth + 1)}
        if isinstance(v, (types.BuiltinFunctionType, types.MethodWrapperType)):
            return "builtin:" + getattr(v, "__qualname__", type(v).__name__)
        wrapped = _safe_getattr(v, "__wrapped__")
        if callable(v) and wrapped is not None and depth < 3:
            return {
                "kind": "wrapper:" + type(v).__qualname__,
                "wrapped": self.value(wrapped, home, depth + 1),
            }
        if isinstance(v, (tuple, list, set, frozenset)) and depth < 3:
            items = [self.value(x, depth=depth + 1) for x in v]
            if isinstance(v, (set, frozenset)):
                items = sorted(items, key=repr)
            return f"{type(v).__name__}:" + self.digest(items)
        if isinstance(v, dict) and depth < 3:
            items = sorted(((repr(k), self.value(x, depth=depth + 1)) for k, x in v.items()))
            return "dict:" + self.digest(items)
        return self.instance(v, nested=depth > 0)

    def instance(self, v: Any, nested: bool = False) -> str:
        """The class and attribute names (and their types, unless ``nested`` in a container:
        objects that import-time code used hold scratch state, a rebuilt one does not)."""
        t = type(v)
        kind = f"instance:{t.__module__}.{t.__qualname__}"
        state = _safe_getattr(v, "__dict__")
        if isinstance(state, dict):
            keys = sorted(k if nested else (k, type(x).__qualname__) for k, x in state.items())
            return kind + ":" + self.digest(keys)
        if t.__repr__ is not object.__repr__:
            try:
                text = repr(v)
            except Exception:
                return kind
            return kind + ":" + self.digest(text)
        return kind

    def describe_class(self, cls: type) -> None:
        path = f"{cls.__module__}.{cls.__qualname__}"
        if path in self.classes:
            return
        out: dict[str, Any] = {}
        self.classes[path] = out  # before the members: a nested class may refer back
        home = f"{cls.__module__}:{cls.__qualname__}"
        for name, v in cls.__dict__.items():
            if name in _SKIP_CLASS:
                continue
            if name == "__annotations__" and isinstance(v, dict):
                out[name] = self.digest(sorted((k, self.value(x)) for k, x in v.items()))
                continue
            out[name] = self.value(v, home)
        out["__mro__"] = [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__]

    def module(self, mod: types.ModuleType) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, v in sorted(vars(mod).items()):
            if name in _SKIP_MODULE:
                continue
            out[name] = self.value(v, mod.__name__)
        return out


def _defined_in(obj: Any, home: str) -> bool:
    """Is ``obj`` (a class or function) defined in module ``home`` (or class ``mod:Qual``)?"""
    module, _, qual = home.partition(":")
    if getattr(obj, "__module__", None) != module:
        return False
    q = getattr(obj, "__qualname__", "")
    if not qual:
        return "." not in q.replace(".<locals>.", "#")
    return bool(q.startswith(qual + "."))


def _annotations(f: types.FunctionType) -> list[tuple[str, Any]]:
    try:
        return list(inspect.get_annotations(f).items())
    except Exception:
        return []


def _safe_getattr(v: Any, name: str) -> Any:
    try:
        return getattr(v, name, None)
    except Exception:
        return None


def release_modules(libs: list[str]) -> dict[str, types.ModuleType]:
    """``sys.modules`` entries whose file is under one of ``libs``."""
    out: dict[str, types.ModuleType] = {}
    for key, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if isinstance(f, str) and any(f.startswith(lib + "/") for lib in libs):
            out[key] = mod
    return out


def modules(libs: list[str]) -> dict[str, Any]:
    """The description of every module imported from ``libs`` and of the classes they define."""
    d = Describer(libs)
    mods = {name: d.module(mod) for name, mod in sorted(release_modules(libs).items())}
    return {"modules": mods, "classes": d.classes}
