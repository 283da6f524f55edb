"""Code objects: load a release's compiled modules and give each live function its new code.

Each changed module is loaded whole (:func:`load_code`: from the shipped ``.pyc`` when it
matches the source, else compiled from source), and its code objects are indexed so that a live
function can be given the code compiled from the same ``def`` in the new file
(:func:`function_patches`); :func:`closure_for` builds the closure that code needs from the
function's current cells, by free-variable name.
"""

from __future__ import annotations

import _imp
import hashlib
import importlib.util
import marshal
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hotswap.hot import closure
from hotswap.hot.heap import HeapIndex
from hotswap.hot.plan import ModulePlan


def source_vsn(data: bytes) -> str:
    """The default ``__vsn__`` of a module: a short hash of its source."""
    return hashlib.sha256(data).hexdigest()[:16]


def load_code(path: Path, source: bytes) -> types.CodeType:
    """The module's code: its ``.pyc`` if that matches ``source``, else compiled from source."""
    try:
        pyc = Path(importlib.util.cache_from_source(str(path)))
        data = pyc.read_bytes()
    except (OSError, NotImplementedError, ValueError):
        data = b""
    if len(data) >= 16 and data[:4] == importlib.util.MAGIC_NUMBER:
        flags = int.from_bytes(data[4:8], "little")
        valid = False
        if flags & 0b1:
            valid = data[8:16] == importlib.util.source_hash(source)
        elif flags == 0:
            try:
                st = path.stat()
                valid = int.from_bytes(data[8:12], "little") == (int(st.st_mtime) & 0xFFFFFFFF)
                valid = valid and int.from_bytes(data[12:16], "little") == len(source)
            except OSError:
                valid = False
        if valid:
            code = marshal.loads(data[16:])
            if isinstance(code, types.CodeType):
                _imp._fix_co_filename(code, str(path))  # type: ignore[attr-defined]
                return code
    compiled: types.CodeType = compile(source, str(path), "exec", dont_inherit=True)
    return compiled


def _walk_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield const
            yield from _walk_codes(const)


def ranked(code: types.CodeType) -> dict[tuple[str, int], tuple[int, types.CodeType]]:
    """``{(qualname, firstlineno): (rank, code)}``; rank counts same-qualname codes in order."""
    seen: dict[str, int] = {}
    out: dict[tuple[str, int], tuple[int, types.CodeType]] = {}
    for c in sorted(_walk_codes(code), key=lambda c: c.co_firstlineno):
        rank = seen.get(c.co_qualname, 0)
        seen[c.co_qualname] = rank + 1
        out.setdefault((c.co_qualname, c.co_firstlineno), (rank, c))
    return out


def ranks(code: types.CodeType) -> dict[tuple[str, int], int]:
    return {k: r for k, (r, _c) in ranked(code).items()}


# -- live checks --------------------------------------------------------------------------------


def function_patches(
    plan: ModulePlan, index: HeapIndex
) -> Iterator[tuple[types.FunctionType, types.CodeType]]:
    """Every live function of the module with the new code compiled from the same def."""
    for (qualname, line), rank in plan.old_keys.items():
        fns = index.functions_of(plan.module, qualname, line)
        if not fns:
            continue
        code = plan.new_codes.get((qualname, rank))
        if code is None:
            continue
        for fn in fns:
            if fn.__code__ != code or fn.__code__.co_freevars != code.co_freevars:
                yield fn, code


def closure_for(
    fn: types.FunctionType, code: types.CodeType, module: types.ModuleType
) -> tuple[Any, ...] | str | None:
    """The closure ``fn`` needs to run ``code``, built from its current cells by name;
    a string says why that is impossible."""
    old_free = fn.__code__.co_freevars
    new_free = code.co_freevars
    if old_free == new_free:
        return fn.__closure__
    cells = dict(zip(old_free, fn.__closure__ or (), strict=True))
    out: list[Any] = []
    for name in new_free:
        if name in cells:
            out.append(cells[name])
        elif name == "__class__":
            cls = _owner_class(module, code.co_qualname)
            if cls is None:
                return f"{code.co_qualname}: cannot find the class its super() refers to"
            out.append(closure.cell(cls))
        else:
            return (
                f"{code.co_qualname}: live closures have no value for the new free variable "
                f"{name!r} (they keep running the old code until recreated)"
            )
    if not closure.available():
        return f"{code.co_qualname}: its free variables changed (unsupported on this interpreter)"
    return tuple(out) or None


def _owner_class(module: types.ModuleType, qualname: str) -> type | None:
    parts = qualname.split(".")
    if "<locals>" in parts:
        parts = parts[: parts.index("<locals>")]
    cls = resolve(module, ".".join(parts[:-1]))
    return cls if isinstance(cls, type) else None


def resolve(module: types.ModuleType, qualname: str) -> object:
    obj: object = module
    for part in qualname.split(".") if qualname else ():
        if part.startswith("<"):
            return None
        d = getattr(obj, "__dict__", None)
        if not isinstance(d, dict | types.MappingProxyType) or part not in d:
            return None
        obj = d[part]
    return obj
