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
from typing import TYPE_CHECKING

from hotswap.hot.names import DEF_TYPES, Def, bound_names, dump, names_in, runtime_names
from hotswap.hot.plan import BodyPlan, Exec, PatchClass, PatchDef
from hotswap.hot.verdict import Reason

if TYPE_CHECKING:
    from hotswap.hot.diff import Lines

_CONTAINERS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
_CONTAINER_CALLS = ("dict", "list", "set", "defaultdict", "OrderedDict", "deque", "WeakSet")
_STATE_METHODS = ("__init__", "__new__", "__setstate__", "__post_init__")


def follow_rebound_names(
    plan: BodyPlan,
    risky: set[str],
    *,
    src: Lines,
    prefix: str,
    module: str,
    refusals: list[Reason],
    warnings: list[str],
) -> None:
    """Add to ``plan`` what its unchanged statements need because ``risky`` names get new
    objects, or refuse (see the module docstring)."""
    from hotswap.hot.diff import diff_body  # the class case recurses into the diff

    if not risky:
        return
    risky = set(risky)
    added = False
    still_same: list[tuple[ast.stmt, ast.stmt]] = []
    for prev, stmt in plan.same:
        if isinstance(stmt, DEF_TYPES | ast.ClassDef):
            where = f"{module}.{prefix}{stmt.name}"
            header = names_in(stmt.decorator_list)
            if isinstance(stmt, ast.ClassDef):
                header |= names_in(stmt.bases) | names_in(k.value for k in stmt.keywords)
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
                if names_in(_evaluated_at_def(stmt)) & risky:
                    plan.ops.append(PatchDef(stmt, prefix + stmt.name, prev, why="defaults"))
                    added = True
                still_same.append((prev, stmt))
                continue
            assert isinstance(prev, ast.ClassDef)
            if runtime_names(stmt) & risky:
                body = diff_body(
                    prev.body,
                    stmt.body,
                    src=src,
                    prefix=f"{prefix}{stmt.name}.",
                    module=module,
                    refusals=refusals,
                    warnings=warnings,
                    is_class=True,
                    outer=frozenset(risky),
                )
                if not body.is_empty():
                    plan.ops.append(PatchClass(stmt.name, prefix + stmt.name, stmt, prev, body))
                    added = True
                    continue
            still_same.append((prev, stmt))
            continue
        used = runtime_names(stmt) & risky
        if not used:
            still_same.append((prev, stmt))
            continue
        why = _not_rerunnable(stmt)
        if why is None:
            names = bound_names(stmt)
            plan.ops.append(Exec(stmt, frozenset(names), "derived"))
            risky |= names
            added = True
            continue
        what = ast.unparse(stmt).splitlines()[0][:80]
        subject = f"{module}.{prefix}".rstrip(".")
        refusals.append(
            Reason(
                "derived_state",
                f"{subject} line {stmt.lineno}: `{what}` is unchanged but ran with the old "
                f"{', '.join(sorted(used))}, and {why}; recompute it in a changed statement "
                "or use a blue-green upgrade",
                subject=f"{subject}:{stmt.lineno}",
            )
        )
        still_same.append((prev, stmt))
    plan.same = still_same
    if added:
        plan.ops.sort(key=lambda op: op.lineno)


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
        return "it makes a container run-time code may have filled"
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Starred | ast.Call):
                return "its target is not a plain name, attribute or item"
    return None


# -- instance state -----------------------------------------------------------------------------


def state_shape_changes(plan: BodyPlan, prefix: str) -> tuple[str, ...]:
    """For a class body: the changed methods that set instance attributes differently."""
    out: list[str] = []
    for op in plan.ops:
        if isinstance(op, PatchDef) and op.why == "changed":
            old, new = _state_writes(op.old_node), _state_writes(op.node)
        elif (
            isinstance(op, Exec)
            and isinstance(op.node, DEF_TYPES)
            and op.why == "added"
            and op.node.name in _STATE_METHODS
        ):
            old, new = Counter(), _state_writes(op.node)
        else:
            continue
        if old != new:
            name = op.node.name if isinstance(op.node, DEF_TYPES) else "?"
            attrs = sorted({k[0] for k in (old - new) + (new - old)})
            out.append(f"{prefix}{name} now sets {', '.join(attrs)} differently")
    return tuple(out)


def _state_writes(fn: Def) -> Counter[tuple[str, str]]:
    """``(attribute, kind of value)`` for each ``self.attribute = ...`` in a method."""
    out: Counter[tuple[str, str]] = Counter()
    for dec in fn.decorator_list:
        if ast.unparse(dec).split(".")[-1] in ("staticmethod", "classmethod"):
            return out
    params = [*fn.args.posonlyargs, *fn.args.args]
    if not params:
        return out
    me = params[0].arg
    for node in ast.walk(fn):
        pairs: list[tuple[ast.expr, str]] = []
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Tuple | ast.List):
                    pairs += [(e, "unpacked") for e in t.elts]
                else:
                    pairs.append((t, _kind(node.value)))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs.append((node.target, _kind(node.value)))
        elif isinstance(node, ast.AugAssign):
            pairs.append((node.target, f"{type(node.op).__name__}={_kind(node.value)}"))
        for target, kind in pairs:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == me
            ):
                out[(target.attr, kind)] += 1
    return out


def _kind(value: ast.expr) -> str:
    """A literal's type (``0`` and ``30`` are the same kind of state), else the expression."""
    if isinstance(value, ast.Constant):
        return type(value.value).__name__
    if isinstance(value, ast.UnaryOp) and isinstance(value.operand, ast.Constant):
        return type(value.operand.value).__name__
    return dump(value)
