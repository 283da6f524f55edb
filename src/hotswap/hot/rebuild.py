"""Rebuild a container an unchanged statement made, to tell whether run-time code filled it.

``FILTERS = {"abs": abs, "upper": do_upper, ...}`` reads a function the upgrade rebinds; run
again, it gives the new release's dict, as a fresh import does, unless code added to the live
dict at run time (a plugin's registration), which a re-run would drop. :func:`rebuild` evaluates
the statement's value again against the live namespace *before* anything changes, touching
nothing: only displays, comprehensions, names, module attributes, comparisons of plain values
and a few builtins (``dict``, ``list``, ``sorted``, ``d.items()``...) are evaluated; anything
else raises :class:`NotPure` and the statement stays refused. If the rebuilt value equals the
live one, nobody filled it, and the commit may run the statement again (checked once more in
the window).
"""

from __future__ import annotations

import ast
import builtins
import types
from collections.abc import Iterable
from typing import Any


class NotPure(Exception):
    """The expression may do more than build a container from names."""


_PLAIN = (str, int, float, bool, type(None), bytes, tuple, frozenset)
_CONTAINERS = (list, tuple, set, frozenset, dict, range, str)
_CALLS: dict[object, Any] = {
    builtins.dict: dict,
    builtins.list: list,
    builtins.tuple: tuple,
    builtins.set: set,
    builtins.frozenset: frozenset,
    builtins.sorted: sorted,
}
_VIEWS: tuple[type, ...] = (type({}.items()), type({}.keys()), type({}.values()))
_METHODS = ("items", "keys", "values", "copy")
_COMPARE: dict[type[ast.cmpop], Any] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def rebuild(expr: ast.expr, namespace: dict[str, Any]) -> object:
    """The value of ``expr`` against ``namespace`` (then builtins), or :class:`NotPure`."""
    return _Eval(namespace).eval(expr, {})


class _Eval:
    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns

    def eval(self, node: ast.expr, local: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            for scope in (local, self.ns, vars(builtins)):
                if node.id in scope:
                    return scope[node.id]
            raise NotPure(f"{node.id} is not bound")
        if isinstance(node, ast.Attribute):
            base = self.eval(node.value, local)
            if isinstance(base, types.ModuleType) and node.attr in vars(base):
                return vars(base)[node.attr]
            raise NotPure("an attribute of something other than a module")
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items: list[Any] = []
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    items.extend(self._iterable(self.eval(elt.value, local)))
                else:
                    items.append(self.eval(elt, local))
            kind = {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)]
            return kind(items)
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    extra = self.eval(value, local)
                    if type(extra) is not dict:
                        raise NotPure("** of something other than a dict")
                    out.update(extra)
                else:
                    out[self._plain(self.eval(key, local))] = self.eval(value, local)
            return out
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            values = [self.eval(node.elt, scope) for scope in self._scopes(node.generators, local)]
            return set(values) if isinstance(node, ast.SetComp) else values
        if isinstance(node, ast.DictComp):
            return {
                self._plain(self.eval(node.key, scope)): self.eval(node.value, scope)
                for scope in self._scopes(node.generators, local)
            }
        if isinstance(node, ast.Compare):
            left = self._plain(self.eval(node.left, local))
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self.eval(right_node, local)
                if type(op) not in _COMPARE:
                    raise NotPure("an ordering comparison")
                if not isinstance(right, _PLAIN + _CONTAINERS):
                    raise NotPure("a comparison with an object")
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Call) and not node.keywords:
            args = [self.eval(a, local) for a in node.args if not isinstance(a, ast.Starred)]
            if len(args) != len(node.args):
                raise NotPure("a call with *args")
            if isinstance(node.func, ast.Attribute) and node.func.attr in _METHODS and not args:
                target = self.eval(node.func.value, local)
                if type(target) is dict:
                    return getattr(target, node.func.attr)()
                raise NotPure("a method of something other than a dict")
            func = self.eval(node.func, local)
            make = next((m for f, m in _CALLS.items() if f is func), None)
            if make is not None and len(args) <= 1:
                if args:
                    return make(self._iterable(args[0]))
                return make()
        raise NotPure(type(node).__name__)

    def _scopes(
        self, generators: list[ast.comprehension], local: dict[str, Any]
    ) -> Iterable[dict[str, Any]]:
        if not generators:
            yield local
            return
        first, rest = generators[0], generators[1:]
        if first.is_async:
            raise NotPure("an async comprehension")
        for item in self._iterable(self.eval(first.iter, local)):
            scope = dict(local)
            self._bind(first.target, item, scope)
            if all(self.eval(cond, scope) is True for cond in first.ifs):
                yield from self._scopes(rest, scope)

    def _bind(self, target: ast.expr, value: Any, scope: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            scope[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            values = list(self._iterable(value))
            if len(values) != len(target.elts):
                raise NotPure("unpacking of another length")
            for t, v in zip(target.elts, values, strict=True):
                self._bind(t, v, scope)
        else:
            raise NotPure("a comprehension target that is not a name")

    def _iterable(self, value: Any) -> Iterable[Any]:
        if type(value) in _CONTAINERS or type(value) in _VIEWS:
            return value  # type: ignore[no-any-return]
        raise NotPure("iteration over something other than a builtin container")

    def _plain(self, value: Any) -> Any:
        if not isinstance(value, _PLAIN) and not isinstance(value, type | types.FunctionType):
            raise NotPure("a key that is not a plain value")
        return value
