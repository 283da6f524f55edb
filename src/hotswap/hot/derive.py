"""What reads what changed: the unchanged statements an upgrade must re-derive, or refuse.

A fresh import of the new release runs every statement; the upgrade runs only the changed ones,
so an unchanged statement that *read* a name the upgrade rebinds holds a value computed from
the old object. For each body (the module, a class) and each name it rebinds, in source order:

======================================  ===================================================
unchanged statement reading the name    plan
======================================  ===================================================
decorator or class header               refused (``stale_registration``): it registered on
                                        the old object and re-running it would register twice
``def`` whose defaults or annotations   :class:`PatchDef` ``why="defaults"``: re-evaluated
read it                                 in the scope the body had there, copied to live
                                        functions
``class`` whose body reads it           the same analysis inside the class, applied to the
                                        live class (``Cls.template = _TEMPLATE``)
a plain assignment                      :class:`Exec` ``why="derived"``: run again, and what it
                                        binds is rebound in turn
an annotated name whose annotation      :class:`Exec` ``why="annotation"``: the annotation
alone reads it                          alone is evaluated again (``__annotations__``), the
                                        value is not (``READERS: ReadersType = {...}``)
anything else (a call, an augmented     refused (``derived_state``), naming the statement
assignment, a container that run-time
code fills)
======================================  ===================================================

:func:`state_shape_changes` answers the other question about classes: does a changed method set
instance attributes differently (another attribute, a value of another kind)? Live instances
made by the old code would then meet new methods with old state (``instance_state``).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from hotswap.hot.names import (
    DEF_TYPES,
    NAMESPACE,
    Def,
    bound_names,
    dotted_reads,
    dump,
    runtime_names,
)
from hotswap.hot.plan import BodyPlan, Exec, PatchClass, PatchDef
from hotswap.hot.verdict import Reason

if TYPE_CHECKING:
    from hotswap.hot.units import Lines

_CONTAINERS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
_CONTAINER_CALLS = ("dict", "list", "set", "defaultdict", "OrderedDict", "deque", "WeakSet")
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


def follow_rebound_names(
    plan: BodyPlan,
    risky: set[str],
    *,
    src: Lines,
    prefix: str,
    module: str,
    refusals: list[Reason],
    warnings: list[str],
    lazy: bool = False,
    imported: frozenset[str] = frozenset(),
) -> None:
    """Add to ``plan`` what its unchanged statements need because ``risky`` names get new
    objects, or refuse (see the module docstring). ``lazy``: the old module had
    ``from __future__ import annotations``, so its annotations never read anything.
    ``imported``: names only another module's upgrade rebinds here (``from m import`` copies);
    a module statement that read only those and cannot be re-run becomes a guard of the
    commit (it fails, rolled back, if one of them does get a new object: the same ``None``
    often comes back) instead of a refusal."""
    from hotswap.hot.diff import diff_body  # the class case recurses into the diff

    if not risky:
        return
    risky = set(risky)
    added = False
    still_same: list[tuple[ast.stmt, ast.stmt]] = []
    for prev, stmt in plan.same:
        if isinstance(stmt, DEF_TYPES | ast.ClassDef):
            where = f"{module}.{prefix}{stmt.name}"
            header = _reads_in(stmt.decorator_list)
            if isinstance(stmt, ast.ClassDef):
                header |= _reads_in(stmt.bases) | _reads_in(k.value for k in stmt.keywords)
            used = header & risky
            if used:
                refusals.append(
                    Reason(
                        "stale_registration",
                        f"{where} (line {stmt.lineno}) was decorated or based on "
                        f"{', '.join(sorted(used))}, which this upgrade rebinds: its "
                        "registration was made on the old object and would not be redone",
                        subject=where,
                    )
                )
                still_same.append((prev, stmt))
                continue
            if isinstance(stmt, DEF_TYPES):
                assert isinstance(prev, DEF_TYPES)
                if _reads_in(_evaluated_at_def(stmt)) & risky:
                    plan.ops.append(PatchDef(stmt, prefix + stmt.name, prev, why="defaults"))
                    added = True
                still_same.append((prev, stmt))
                continue
            assert isinstance(prev, ast.ClassDef)
            if (runtime_names(stmt) | dotted_reads(stmt)) & risky:
                body = diff_body(
                    prev.body,
                    stmt.body,
                    src=src,
                    prefix=f"{prefix}{stmt.name}.",
                    module=module,
                    refusals=refusals,
                    warnings=warnings,
                    is_class=True,
                    outer=frozenset(risky - {NAMESPACE}),
                    lazy=lazy,
                )
                if not body.is_empty():
                    plan.ops.append(PatchClass(stmt.name, prefix + stmt.name, stmt, prev, body))
                    added = True
                    continue
            still_same.append((prev, stmt))
            continue
        used, in_annotation = _reads(stmt)
        used &= risky
        if _self_assignment(stmt):  # `__version__ = __version__` after its import: a no-op
            used = set()
        if not used:
            if not lazy and in_annotation & risky:
                assert isinstance(stmt, ast.AnnAssign)
                if stmt.simple:  # a non-simple target's annotation is evaluated, never stored
                    bare = ast.AnnAssign(stmt.target, stmt.annotation, None, stmt.simple)
                    plan.ops.append(Exec(ast.copy_location(bare, stmt), frozenset(), "annotation"))
                    added = True
            still_same.append((prev, stmt))
            continue
        why = _not_rerunnable(stmt)
        what = ast.unparse(stmt).splitlines()[0][:80]
        subject = f"{module}.{prefix}".rstrip(".")
        whole = sorted(u for u in used if u == NAMESPACE or u.endswith(".*"))
        if whole:
            spaces = ", ".join("its namespace" if u == NAMESPACE else u[:-2] for u in whole)
            refusals.append(
                Reason(
                    "derived_state",
                    f"{subject} line {stmt.lineno}: `{what}` is unchanged but read the whole "
                    f"of {spaces} (vars(), dir(), __dict__), which this upgrade changes; "
                    "running it again would not see what a fresh import sees at that point; "
                    "use a blue-green upgrade",
                    subject=f"{subject}:{stmt.lineno}",
                )
            )
            still_same.append((prev, stmt))
            continue
        target = stmt.target if isinstance(stmt, ast.AugAssign) else None
        if isinstance(target, ast.Name) and target.id in used and target.id in risky:
            # `x += y` after x got a new object: a fresh import ran it once on that object
            plan.ops.append(Exec(stmt, frozenset({target.id}), "derived", fresh_target=target.id))
            added = True
            continue
        if why is None or (why == _FILLED and not prefix and _single_name(stmt)):
            names = bound_names(stmt)
            op = Exec(stmt, frozenset(names), "derived")
            plan.ops.append(op)
            if why is not None:  # run again only if the live container holds nothing more
                plan.containers.append(
                    (
                        op,
                        Reason(
                            "derived_state",
                            f"{subject} line {stmt.lineno}: `{what}` is unchanged but ran with "
                            f"the old {', '.join(sorted(used))}, and {why} (it holds more "
                            "than the statement makes, or what it holds could not be told); "
                            "recompute it in a changed statement or use a blue-green upgrade",
                            subject=f"{subject}:{stmt.lineno}",
                        ),
                    )
                )
            risky |= names
            added = True
            continue
        reason = Reason(
            "derived_state",
            f"{subject} line {stmt.lineno}: `{what}` is unchanged but ran with the old "
            f"{', '.join(sorted(used))}, and {why}; recompute it in a changed statement "
            "or use a blue-green upgrade",
            subject=f"{subject}:{stmt.lineno}",
        )
        if not prefix and used <= imported:
            plan.guards.append((frozenset(used), reason))
            warnings.append(
                f"{subject} line {stmt.lineno}: `{what}` ran with {', '.join(sorted(used))} "
                "imported from a changed module; the commit fails (rolled back) if "
                "the upgrade gives it a new object"
            )
        else:
            refusals.append(reason)
        still_same.append((prev, stmt))
    plan.same = still_same
    if added:
        plan.ops.sort(key=lambda op: op.lineno)


def _import_guard(stmt: ast.stmt) -> bool:
    """``if TEST: ... raise`` with no ``else`` (the module imported, so its body never ran), or
    whose body only imports, raises or holds such guards: running it again does nothing a
    fresh import would not (imports are idempotent)."""
    if not isinstance(stmt, ast.If) or stmt.orelse:
        return False
    if isinstance(stmt.body[-1], ast.Raise):
        return True  # it never ran to its end: the module imported
    for s in stmt.body:
        if isinstance(s, ast.Raise | ast.Import | ast.ImportFrom | ast.Pass):
            continue
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
            continue
        if not _import_guard(s):
            return False
    return any(isinstance(s, ast.Raise | ast.If) for s in stmt.body)


_FILLED = "it makes a container run-time code may have filled"


def _single_name(stmt: ast.stmt) -> bool:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return len(targets) == 1 and isinstance(targets[0], ast.Name)


def _self_assignment(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and isinstance(stmt.value, ast.Name)
        and stmt.value.id == stmt.targets[0].id
    )


def _reads(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """The names an unchanged statement read when it ran: outside its annotation, and in it
    (an annotated assignment's annotation is evaluated apart from its value)."""
    if isinstance(stmt, ast.AnnAssign):
        rest = runtime_names(stmt.target)
        if stmt.value is not None:
            rest |= runtime_names(stmt.value)
        return rest | _reads_in([stmt.target, stmt.value]), _reads_in([stmt.annotation])
    reads = runtime_names(stmt) | dotted_reads(stmt)
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        reads.add(stmt.target.id)  # `x += y` reads x
    return reads, set()


def _reads_in(nodes: Iterable[ast.AST | None]) -> set[str]:
    """Names and what inside objects (:func:`dotted_reads`) the expressions read."""
    out: set[str] = set()
    for n in nodes:
        if n is not None:
            out |= runtime_names(n) | dotted_reads(n)
    return out


def _evaluated_at_def(node: Def) -> list[ast.AST]:
    """The expressions a ``def`` statement evaluates when it runs (besides decorators)."""
    a = node.args
    out: list[ast.AST] = [*a.defaults, *(d for d in a.kw_defaults if d is not None)]
    for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
        if arg is not None and arg.annotation is not None:
            out.append(arg.annotation)
    if node.returns is not None:
        out.append(node.returns)
    return out


def _not_rerunnable(stmt: ast.stmt) -> str | None:
    """Why running ``stmt`` again would not give what a fresh import gives; None if it would."""
    if isinstance(stmt, ast.AugAssign):
        return "an augmented assignment cannot be run twice"
    if _import_guard(stmt):
        # An import-time guard (`if CONFIG_BAD: raise ...`): the module imported, so it never
        # raised; run again, it raises (the upgrade rolls back) where a fresh import would.
        return None
    targets: list[ast.expr]
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets, value = [stmt.target], stmt.value
    elif isinstance(stmt, ast.Assign):
        targets, value = stmt.targets, stmt.value
    else:
        return "it is not an assignment (running it again would repeat what it did)"
    if bound_names(stmt) & runtime_names(value):
        return "it reads what it binds"
    if isinstance(value, _CONTAINERS) or (
        isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] in _CONTAINER_CALLS
    ):
        return _FILLED
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Starred | ast.Call):
                return "its target is not a plain name, attribute or item"
    return None


# -- instance state -----------------------------------------------------------------------------


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
