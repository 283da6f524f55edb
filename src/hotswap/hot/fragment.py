"""Class fragments: changed class-body statements run against a live class.

A changed class becomes a *fragment*: a ``class`` statement whose metaclass is a
:class:`Capture`. The capture hands the class body a copy of the live class's namespace and
keeps the resulting namespace instead of making a class, so the changed statements run with
class-body semantics (class-scope names, ``__class__`` cells, name mangling) and the commit
then copies what they bound onto the live class. Changed ``def``\\s appear in fragments (and at
module level) without their decorators, under names from a :class:`NameAllocator`, so their
defaults and annotations are evaluated in the right scope without registering anything twice.
"""

from __future__ import annotations

import ast
import copy
import inspect
import types
from typing import Any

from hotswap.hot.plan import ClassStep, Def, Exec, PatchDef

AT = "__hotswap_at__"  # the fragment calls it with the line of the statement it runs next


class Capture:
    """Stands in for a metaclass: runs a class body over a copy of a live class's namespace.

    The copy is a :class:`ScopedNamespace`: while the fragment runs the statement of line N, a
    name of the live class that the new body binds only at line N or later (or never) is hidden,
    so it resolves to the module global, as it did when the class body first ran there.
    """

    def __init__(
        self, cls: type, children: dict[str, Capture], first_bound: dict[str, int] | None = None
    ) -> None:
        self.cls = cls
        self.children = children
        self.first_bound = first_bound or {}
        self.ns: dict[str, Any] | None = None

    def __prepare__(self, name: str, bases: tuple[type, ...], **kw: Any) -> dict[str, Any]:
        data = {k: v for k, v in self.cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        data["__annotations__"] = inspect.get_annotations(self.cls)
        data.update(self.children)
        hidden = {k: self.first_bound.get(k, _NEVER) + 1 for k in data if k not in _VISIBLE}
        for k in self.children:
            hidden.pop(k, None)
        return ScopedNamespace(data, hidden)

    def __call__(self, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> Any:
        self.ns = dict(ns)
        return self


_NEVER = 1 << 30
_VISIBLE = frozenset({"__module__", "__qualname__", "__annotations__", "__doc__", AT})


class ScopedNamespace(dict[str, Any]):
    """A class namespace that hides names until the line that binds them (see :class:`Capture`).
    A class body reads names through ``__getitem__`` when its namespace is not a plain dict."""

    def __init__(self, data: dict[str, Any], hidden: dict[str, int]) -> None:
        super().__init__(data)
        self._hidden = hidden
        self._line = 0
        super().__setitem__(AT, self._at)

    def _at(self, line: int) -> None:
        self._line = line

    def __getitem__(self, key: str) -> Any:
        visible_from = self._hidden.get(key)
        if visible_from is not None and self._line < visible_from:
            raise KeyError(key)
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._hidden.pop(key, None)
        super().__setitem__(key, value)


class NameAllocator:
    """Hands out the temporary names decorator-less copies of changed ``def``\\s bind."""

    def __init__(self, prefix: str = "__hotswap_def") -> None:
        self._prefix = prefix
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self._prefix}_{self._n}__"


def fragment(step: ClassStep, capture_name: str) -> ast.ClassDef:
    """``class C(metaclass=<capture>): <changed statements>`` for one class (and nested ones)."""
    body: list[ast.stmt] = []
    defs = {id(d.op): d for d in step.defs}
    children = {id(c.op): c for c in step.children}
    for op in step.op.body.ops:
        if isinstance(op, Exec):
            body += [_at(op.node), op.node]
        elif isinstance(op, PatchDef):
            temp = defs[id(op)].temp
            body += [_at(op.node), stripped(op.node, temp, op.why != "annotations")]
        elif id(op) in children:
            child = children[id(op)]
            body += [_at(op.node), fragment(child, f"__hotswap_capture_{child.op.name}__")]
    node = step.op.node
    meta = ast.copy_location(ast.Name(capture_name, ast.Load()), node)
    frag = ast.ClassDef(
        name=node.name,
        bases=[],
        keywords=[ast.copy_location(ast.keyword(arg="metaclass", value=meta), node)],
        body=body or [ast.copy_location(ast.Pass(), node)],
        decorator_list=[],
    )
    return ast.copy_location(frag, node)


def _at(node: ast.stmt) -> ast.stmt:
    """``__hotswap_at__(<line>)``: tells the namespace which statement runs next."""
    call = ast.Call(ast.Name(AT, ast.Load()), [ast.Constant(node.lineno)], [])
    return ast.fix_missing_locations(ast.copy_location(ast.Expr(call), node))


def stripped(node: Def, temp: str, defaults: bool = True) -> ast.stmt:
    """A copy of a def without decorators, bound to a temporary name; ``defaults=False``
    leaves its default values out too (``None`` in their place: nothing is evaluated but the
    annotations)."""
    new = copy.copy(node)
    new.decorator_list = []
    new.name = temp
    if not defaults:
        args = copy.copy(node.args)
        none: list[ast.expr] = [ast.copy_location(ast.Constant(None), d) for d in args.defaults]
        args.defaults = none
        args.kw_defaults = [
            None if d is None else ast.copy_location(ast.Constant(None), d)
            for d in args.kw_defaults
        ]
        new.args = args
    return new


def compile_statements(
    nodes: list[ast.stmt], filename: str, flags: int, imports: tuple[ast.stmt, ...] = ()
) -> types.CodeType:
    """Compile statements of the parsed file (they keep their line numbers). ``imports`` are
    the module's top-level imports, put in a branch that never runs: the compiler emits other
    bytecode for ``mod.f()`` when ``mod`` is a module-level import (``LOAD_ATTR`` rather than
    ``LOAD_METHOD``), so functions compiled here get the code a fresh import gives them."""
    prefix: list[ast.stmt] = []
    future = all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in nodes)
    if imports and not future:  # a ``__future__`` import compiles only as the first statement
        never = ast.If(test=ast.Constant(False), body=list(imports), orelse=[])
        prefix.append(ast.fix_missing_locations(ast.copy_location(never, imports[0])))
    tree = ast.Module(body=prefix + nodes, type_ignores=[])
    code: types.CodeType = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
    return code
