"""Give a live function a new code object *and* a new closure, in place.

``func.__code__ = c`` requires ``c`` to have as many free variables as ``func.__closure__`` has
cells, and ``__closure__`` is read-only from Python. So a method that newly calls ``super()``
(which adds a ``__class__`` free variable) or a closure whose captured variables changed cannot
be patched through the public attributes: IPython's autoreload aborts half-way with
``ValueError``, jurigged replaces the function (old references stay stale).

We write the ``func_closure`` slot of ``PyFunctionObject`` directly. The offset is not guessed:
:func:`_probe` builds a function whose globals, builtins, name, qualname, code, defaults,
kw-defaults and closure are all distinct objects and requires their addresses to sit in
consecutive words in that order (CPython's ``COMMON_FIELDS(func_)``, 3.11 to 3.13). If the
layout does not match, or the interpreter is not CPython, :func:`available` is False and the
engine refuses such changes instead of writing memory.
"""

from __future__ import annotations

import ctypes
import sys
import types
from typing import Any

_WORD = ctypes.sizeof(ctypes.c_void_p)
_offset: int | None = None
_probed = False

CellTuple = tuple[Any, ...] | None  # tuple of cell objects (types.CellType), or None


def _probe() -> int | None:
    if sys.implementation.name != "cpython":
        return None
    z = object()

    def sample(a: object = z, *, b: object = z) -> object:
        return z

    fields = [
        sample.__globals__,
        getattr(sample, "__builtins__"),  # noqa: B009 (not in the typeshed stubs)
        sample.__name__,
        sample.__qualname__,
        sample.__code__,
        sample.__defaults__,
        sample.__kwdefaults__,
        sample.__closure__,
    ]
    base = id(sample)
    limit = type(sample).__basicsize__ // _WORD
    words = [ctypes.c_void_p.from_address(base + i * _WORD).value for i in range(limit)]
    try:
        first = words.index(id(fields[0]))
    except ValueError:
        return None
    for k, obj in enumerate(fields):
        if first + k >= limit or words[first + k] != id(obj):
            return None
    return (first + len(fields) - 1) * _WORD


def available() -> bool:
    """True when closures can be rewritten safely on this interpreter."""
    global _offset, _probed
    if not _probed:
        _offset = _probe()
        _probed = True
    return _offset is not None


def cell(value: object) -> Any:
    """A new closure cell holding ``value``."""
    return types.CellType(value)


def set_closure(fn: types.FunctionType, cells: CellTuple, code: types.CodeType) -> None:
    """Set ``fn.__closure__ = cells`` and ``fn.__code__ = code`` together.

    ``cells`` must have exactly ``len(code.co_freevars)`` cells (or be None when it has none).
    """
    nfree = len(code.co_freevars)
    if (0 if cells is None else len(cells)) != nfree:
        raise ValueError(f"{fn.__qualname__}: {nfree} free variables, closure of {cells!r}")
    if fn.__closure__ is cells:
        fn.__code__ = code
        return
    if not available():
        raise RuntimeError("cannot rewrite a function closure on this interpreter")
    assert _offset is not None
    slot = ctypes.c_void_p.from_address(id(fn) + _offset)
    old = fn.__closure__
    if cells is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(cells))
    slot.value = None if cells is None else id(cells)
    if old is not None:
        # The function's own reference; ``old`` (our local) still holds one more.
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(old))
    # The setter checks the new code against the (new) closure and resets the
    # function's version so specialised call sites are invalidated.
    fn.__code__ = code
