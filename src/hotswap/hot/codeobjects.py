"""Code objects: load a release's compiled modules and give each live function its new code.

Each changed module is loaded whole (:func:`load_code`: from the shipped ``.pyc`` when it
matches the source, else compiled from source), and its code objects are indexed so that a live
function can be given the code compiled from the same ``def`` in the new file
(:func:`function_patches`); :func:`closure_for` builds the closure that code needs from the
function's current cells, by free-variable name.
"""

from __future__ import annotations

import _imp
import ast
import bisect
import hashlib
import importlib.util
import marshal
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hotswap.hot import closure
from hotswap.hot.heap import HeapIndex
from hotswap.hot.names import first_line
from hotswap.hot.plan import BodyPlan, Def, ModulePlan, PatchClass, PatchDef


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


Shape = tuple[Any, ...]


def shape(code: types.CodeType) -> Shape:
    """What a code object does, without where it sits: equal shapes run the same bytecode on the
    same names and constants, whatever their lines or file. Two codes that differ only in shape
    keys of line numbers are the same definition that moved."""
    consts = tuple(
        shape(c) if isinstance(c, types.CodeType) else (type(c).__name__, c) for c in code.co_consts
    )
    return (
        code.co_qualname,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_exceptiontable,
        consts,
    )


class CodeMap:
    """Which code of the new file each definition of the old file becomes.

    Definitions are matched by identity: the diff pairs statements (unchanged ones, changed
    defs patched in place, the bodies of patched classes), and inside a pair of statements
    the code objects pair by qualname and order. Statements the upgrade runs again (changed,
    added, re-decorated) pair nothing: their old objects keep their old code, whole.
    A live function is recognised by the *shape* of its code (:func:`shape`), so one that kept
    its code object because only its lines moved is still found by the next upgrade.
    """

    def __init__(self, old: types.CodeType, new: types.CodeType, body: BodyPlan) -> None:
        self._old = sorted(_walk_codes(old), key=lambda c: c.co_firstlineno)
        self._new = sorted(_walk_codes(new), key=lambda c: c.co_firstlineno)
        self._old_lines = [c.co_firstlineno for c in self._old]
        self._new_lines = [c.co_firstlineno for c in self._new]
        self.pairs: dict[str, list[tuple[types.CodeType, types.CodeType]]] = {}
        self._shapes: dict[int, int] = {}  # id(code) -> shape number
        self._ids: dict[Shape, int] = {}
        self._matched: dict[tuple[int, int], tuple[types.CodeType, types.CodeType] | None] = {}
        self._keep: list[object] = []  # keeps the ids of cached shapes and matches unique
        self._body(body)

    def _body(self, body: BodyPlan) -> None:
        for prev, stmt in body.same:
            self._span(prev, stmt, changed=False)
        for op in body.ops:
            if isinstance(op, PatchDef):
                self._span(op.old_node, op.node, changed=op.why == "changed")
            elif isinstance(op, PatchClass):
                self._body(op.body)

    def _codes(self, node: ast.stmt, codes: list[types.CodeType], lines: list[int]) -> list[Any]:
        lo = first_line(node) if isinstance(node, Def | ast.ClassDef) else node.lineno
        hi = node.end_lineno or node.lineno
        return codes[bisect.bisect_left(lines, lo) : bisect.bisect_right(lines, hi)]

    def _span(self, old: ast.stmt, new: ast.stmt, *, changed: bool) -> None:
        by_name: dict[str, tuple[list[types.CodeType], list[types.CodeType]]] = {}
        for c in self._codes(old, self._old, self._old_lines):
            by_name.setdefault(c.co_qualname, ([], []))[0].append(c)
        for c in self._codes(new, self._new, self._new_lines):
            by_name.setdefault(c.co_qualname, ([], []))[1].append(c)
        for qualname, (olds, news) in by_name.items():
            if len(olds) == len(news):
                pairs = list(zip(olds, news, strict=True))
            elif changed and isinstance(old, Def) and isinstance(new, Def):
                # nested definitions were added or removed: pair only the def itself
                pairs = [
                    (o, n)
                    for o in olds
                    if o.co_firstlineno == first_line(old)
                    for n in news
                    if n.co_firstlineno == first_line(new)
                ]
            else:
                pairs = []
            if pairs:
                self.pairs.setdefault(qualname, []).extend(pairs)

    def shape_of(self, code: types.CodeType) -> int:
        """A small number standing for the code's :func:`shape` (computed once per code object,
        so comparing shapes in the window compares two ints)."""
        key = id(code)
        got = self._shapes.get(key)
        if got is None:
            got = self._shapes[key] = self._ids.setdefault(shape(code), len(self._ids))
            self._keep.append(code)
        return got

    def match(self, fn: types.FunctionType) -> tuple[types.CodeType, types.CodeType] | None:
        """``(old, new)`` code of the definition ``fn`` was made from, or None if it is not one
        this upgrade maps (made by a statement that runs again, or by code of another module)."""
        code = fn.__code__
        key = (id(fn), id(code))
        if key in self._matched:
            return self._matched[key]
        got = self._match(code)
        self._matched[key] = got
        self._keep.append(fn)
        return got

    def _match(self, code: types.CodeType) -> tuple[types.CodeType, types.CodeType] | None:
        candidates = self.pairs.get(code.co_qualname)
        if not candidates:
            return None
        mine = self.shape_of(code)
        found = [(o, n) for o, n in candidates if self.shape_of(o) == mine]
        for o, n in found:
            if o.co_firstlineno == code.co_firstlineno:
                return o, n
        if found:
            return found[0]
        # already given its new code by this commit (defaults are copied after the code)
        for o, n in candidates:
            if n is code or self.shape_of(n) == mine:
                return o, n
        return None


def function_patches(
    plan: ModulePlan, index: HeapIndex, among: list[types.FunctionType] | None = None
) -> Iterator[tuple[types.FunctionType, types.CodeType]]:
    """Every live function of the module with the new code compiled from the same def (also
    when the def only moved: its line numbers and file are the new release's, as after a fresh
    import; registries holding the old code object are updated by the commit)."""
    codes = plan.codes
    if among is None:
        fns = [fn for q in codes.pairs for fn in index.functions_of(plan.module, q)]
    else:  # only these (the functions made since prepare)
        mdict = plan.module.__dict__
        fns = [f for f in among if f.__globals__ is mdict and f.__code__.co_qualname in codes.pairs]
    for fn in fns:
        got = codes.match(fn)
        # an equal code (same bytecode, names, constants and lines) needs no patch
        if got is not None and fn.__code__ != got[1]:
            yield fn, got[1]


def functions_of_def(
    plan: ModulePlan, index: HeapIndex, qualname: str, old_firstlineno: int
) -> list[types.FunctionType]:
    """The live functions made from the ``def`` at ``old_firstlineno`` of the old file."""
    out = []
    for fn in index.functions_of(plan.module, qualname):
        got = plan.codes.match(fn)
        if got is not None and got[0].co_firstlineno == old_firstlineno:
            out.append(fn)
    return out


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
