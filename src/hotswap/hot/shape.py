"""Instance state under changed methods: does a changed ``__init__`` (or another method) set
instance attributes differently, so that live instances made by the old code would meet new
methods with old state (``instance_state``)?

"Differently" is per attribute: the kinds of value the old method may store in it and the new
one may, as sets (how often, or in which branch, is not the shape). The kind of a value is its
type where the syntax tells it (:func:`_kind`), else the expression itself. A changed
``__init__`` that newly sets ``self.name = <constant>`` once at its top level gives old
instances that constant instead (``fills``).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator

from hotswap.hot.names import DEF_TYPES, Def, dump
from hotswap.hot.plan import BodyPlan, Exec, PatchDef

_STATE_METHODS = ("__init__", "__new__", "__setstate__", "__post_init__")
CONSTRUCTORS = frozenset(
    (
        "bool",
        "bytearray",
        "bytes",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "set",
        "str",
        "tuple",
    )
)
_DISPLAYS: dict[type[ast.expr], str] = {
    ast.List: "list", ast.ListComp: "list", ast.Tuple: "tuple", ast.Set: "set",
    ast.SetComp: "set", ast.Dict: "dict", ast.DictComp: "dict",
}  # fmt: skip


def state_shape_changes(
    plan: BodyPlan, prefix: str, shadowed: frozenset[str] = frozenset()
) -> tuple[tuple[str, ...], tuple[tuple[str, object], ...]]:
    """For a class body: the changed methods that set instance attributes differently, and the
    attributes live instances can be given instead (``fills``): a changed ``__init__`` that
    newly sets ``self.name = <constant>`` once, at its top level, gives every instance made by
    the new code that value first; an old instance lacking ``name`` gets it, and methods that
    only set it later (a cache filled on first use) need nothing more.

    "Differently" is per attribute: the kinds of value (:func:`_kind`) the old method may store
    in it and the new one may, as sets; how often or in which branch is not the shape
    (``self._specs = frozenset(...)`` in both arms of a new ``if`` is still a frozenset).
    ``shadowed``: builtin names the module binds, which then say nothing of a value's type."""
    fills = dict(_constant_fills(plan, shadowed))
    out: list[str] = []
    for op in plan.ops:
        if isinstance(op, PatchDef) and op.why == "changed":
            old, new = _state_writes(op.old_node, shadowed), _state_writes(op.node, shadowed)
        elif (
            isinstance(op, Exec)
            and isinstance(op.node, DEF_TYPES)
            and op.why == "added"
            and op.node.name in _STATE_METHODS
        ):
            old, new = Counter(), _state_writes(op.node, shadowed)
        else:
            continue
        attrs = sorted({a for a, _k in old} ^ {a for a, _k in new} | _kinds_differ(old, new))
        if attrs and not set(attrs) <= fills.keys():
            name = op.node.name if isinstance(op.node, DEF_TYPES) else "?"
            out.append(f"{prefix}{name} now sets {', '.join(attrs)} differently")
    if out:
        return tuple(out), ()
    return (), tuple(sorted(fills.items()))


def _kinds_differ(old: Counter[tuple[str, str]], new: Counter[tuple[str, str]]) -> set[str]:
    """Attributes both methods set, with another set of kinds of value."""
    kinds: dict[str, tuple[set[str], set[str]]] = {}
    for side, writes in enumerate((old, new)):
        for attr, kind in writes:
            kinds.setdefault(attr, (set(), set()))[side].add(kind)
    return {a for a, (was, now) in kinds.items() if was and now and was != now}


def _constant_fills(
    plan: BodyPlan, shadowed: frozenset[str] = frozenset()
) -> Iterator[tuple[str, object]]:
    """``(attribute, constant)`` a changed ``__init__`` newly sets once at its top level."""
    for op in plan.ops:
        if not (isinstance(op, PatchDef) and op.why == "changed" and op.node.name == "__init__"):
            continue
        old_attrs = {a for a, _kind in _state_writes(op.old_node, shadowed)}
        writes = _state_writes(op.node, shadowed)
        params = [*op.node.args.posonlyargs, *op.node.args.args]
        if not params:
            return
        me = params[0].arg
        for stmt in op.node.body:
            target: ast.expr | None = None
            value: ast.expr | None = None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign):
                target, value = stmt.target, stmt.value
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == me
                and isinstance(value, ast.Constant)
                and target.attr not in old_attrs
                and sum(n for (a, _k), n in writes.items() if a == target.attr) == 1
            ):
                yield target.attr, value.value


def _state_writes(fn: Def, shadowed: frozenset[str] = frozenset()) -> Counter[tuple[str, str]]:
    """``(attribute, kind of value)`` for each ``self.attribute = ...`` in a method."""
    out: Counter[tuple[str, str]] = Counter()
    for dec in fn.decorator_list:
        if ast.unparse(dec).split(".")[-1] in ("staticmethod", "classmethod"):
            return out
    params = [*fn.args.posonlyargs, *fn.args.args]
    if not params:
        return out
    me = params[0].arg
    local = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    local |= {
        n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }
    shadowed = shadowed | (local & CONSTRUCTORS)
    for node in ast.walk(fn):
        pairs: list[tuple[ast.expr, str]] = []
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Tuple | ast.List):
                    pairs += [(e, "unpacked") for e in t.elts]
                else:
                    pairs.append((t, _kind(node.value, shadowed)))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs.append((node.target, _kind(node.value, shadowed)))
        elif isinstance(node, ast.AugAssign):
            op = type(node.op).__name__
            pairs.append((node.target, f"{op}={_kind(node.value, shadowed)}"))
        for target, kind in pairs:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == me
            ):
                out[(target.attr, kind)] += 1
    return out


def _kind(value: ast.expr, shadowed: frozenset[str] = frozenset()) -> str:
    """The type of the value where the syntax tells it, else the expression itself: a
    literal's type (``0`` and ``30`` are the same kind of state), a display's or a
    comprehension's, a builtin constructor's (``frozenset(map(Specifier, parts))`` and
    ``frozenset(specifiers)``), unless the module or the method binds that name; and ``str``
    for an f-string or a concatenation with literal text (``"Expected " + str(self)`` and
    ``f"Expected {self}"``: the ``+`` only ran because the other operand was a string)."""
    if isinstance(value, ast.Constant):
        return type(value.value).__name__
    if isinstance(value, ast.UnaryOp) and isinstance(value.operand, ast.Constant):
        return type(value.operand.value).__name__
    display = _DISPLAYS.get(type(value))
    if display is not None:
        return display
    if (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in CONSTRUCTORS - shadowed
    ):
        return value.func.id
    if isinstance(value, ast.JoinedStr) or _concatenates_text(value):
        return "str"
    return dump(value)


def _concatenates_text(value: ast.expr) -> bool:
    """``"text" + x + ...``: a chain of ``+`` with literal text among its first two operands."""
    operands: list[ast.expr] = []
    node: ast.expr = value
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        operands.insert(0, node.right)
        node = node.left
    operands.insert(0, node)
    return len(operands) >= 2 and any(
        isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands[:2]
    )
