"""Module-level ``if`` blocks an import decides the same way every time: the branch that runs.

``if TYPE_CHECKING: ... else: class _CustomDict(dict): ...`` (tomlkit) and ``if sys.platform
== "win32": ... else: class UnixFileLock(...): ...`` (filelock) run one branch, the same one in
a fresh import of the new release as when the old one was imported: ``typing.TYPE_CHECKING`` is
False at run time, and ``sys.platform``, ``sys.version_info``, ``sys.implementation.name``,
``sys.byteorder`` and ``os.name`` are this interpreter's. So the diff sees the statements of the
branch that runs as statements of the body (an ``if`` makes no scope): a changed method of a
class defined there is patched in place, where the whole ``if`` would otherwise be one changed
statement run again, making its classes anew. ``if __name__ == "__main__":`` never runs on
import. Any other test is left as it is (the ``if`` is one statement).
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Any

from hotswap.hot.names import inert

_UNDECIDED = object()
_SYS = {
    ("sys", "platform"): sys.platform,
    ("sys", "version_info"): sys.version_info,
    ("sys", "implementation", "name"): sys.implementation.name,
    ("sys", "byteorder"): sys.byteorder,
    ("os", "name"): os.name,
}


def runtime_body(stmts: list[ast.stmt], module: str) -> list[ast.stmt]:
    """``stmts`` as an import runs them: inert blocks left out, decided ``if``s flattened."""
    imported = {
        a.asname or a.name
        for s in stmts
        if isinstance(s, ast.Import)
        for a in s.names
        if a.name in ("sys", "os") and (a.asname is None or a.asname == a.name)
    }
    out: list[ast.stmt] = []
    for stmt in stmts:
        if module and inert(stmt, module):
            continue
        if isinstance(stmt, ast.If):
            taken = _value(stmt.test, imported)
            if taken is not _UNDECIDED:
                out += runtime_body(stmt.body if taken else stmt.orelse, module)
                continue
        out.append(stmt)
    return out


def _value(node: ast.expr, imported: set[str]) -> Any:
    """The value of a test made only of the names above, literals and simple operators."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        items = [_value(e, imported) for e in node.elts]
        return _UNDECIDED if _UNDECIDED in items else tuple(items)
    chain = _chain(node)
    if chain is not None:
        if chain[-1] == "TYPE_CHECKING":
            return False
        if chain[0] in imported and chain in _SYS:
            return _SYS[chain]
        return _UNDECIDED
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        v = _value(node.operand, imported)
        return v if v is _UNDECIDED else not v
    if isinstance(node, ast.BoolOp):
        values = [_value(v, imported) for v in node.values]
        if _UNDECIDED in values:
            return _UNDECIDED
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _value(node.left, imported)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _value(right_node, imported)
            if left is _UNDECIDED or right is _UNDECIDED:
                return _UNDECIDED
            ok = _compare(op, left, right)
            if ok is _UNDECIDED or not ok:
                return ok
            left = right
        return True
    if isinstance(node, ast.Subscript):
        base = _value(node.value, imported)
        if base is _UNDECIDED or not isinstance(base, tuple):
            return _UNDECIDED
        index = node.slice
        try:
            if isinstance(index, ast.Slice):
                lo, hi = (_value(b, imported) if b else None for b in (index.lower, index.upper))
                if index.step is not None or _UNDECIDED in (lo, hi):
                    return _UNDECIDED
                return tuple(base)[lo:hi]
            i = _value(index, imported)
            return base[i] if isinstance(i, int) else _UNDECIDED
        except (IndexError, TypeError):
            return _UNDECIDED
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("startswith", "endswith")
        and len(node.args) == 1
        and not node.keywords
    ):
        base, arg = _value(node.func.value, imported), _value(node.args[0], imported)
        if isinstance(base, str) and isinstance(arg, str | tuple):
            return getattr(base, node.func.attr)(arg)
    return _UNDECIDED


def _compare(op: ast.cmpop, a: Any, b: Any) -> Any:
    try:
        if isinstance(op, ast.Eq):
            return a == b
        if isinstance(op, ast.NotEq):
            return a != b
        if isinstance(op, ast.Lt):
            return a < b
        if isinstance(op, ast.LtE):
            return a <= b
        if isinstance(op, ast.Gt):
            return a > b
        if isinstance(op, ast.GtE):
            return a >= b
        if isinstance(op, ast.In):
            return a in b
        if isinstance(op, ast.NotIn):
            return a not in b
    except TypeError:
        return _UNDECIDED
    return _UNDECIDED


def _chain(node: ast.expr) -> tuple[str, ...] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return (node.id, *reversed(parts))
