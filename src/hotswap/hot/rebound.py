"""Which names the statements an upgrade runs give new objects, and which they leave alone.

:func:`rebinding` is the set :mod:`.derive` follows (what an unchanged statement read that is
now another object); :func:`kept_names` the names a later, unchanged statement binds again, so
their live value stays (an ``@overload`` added above the implementation); :func:`replacement`
the module-level classes made anew rather than patched; :func:`changed_inside` the attributes
of classes patched in place that get other objects (``C.x``).
"""

from __future__ import annotations

import ast

from hotswap.hot.layout import (
    class_body_refusals,
    dotted_bases,
    header_change,
    looks_enum,
    looks_typed_dict,
)
from hotswap.hot.names import DEF_TYPES, ann_names, bound_names, dumps, runtime_names
from hotswap.hot.plan import BodyPlan, Exec, PatchClass
from hotswap.hot.units import Lines, same_unit


def changed_inside(plan: BodyPlan, prefix: str = "") -> set[str]:
    """``C.x`` for each attribute ``x`` of a class patched in place (``C``) that gets another
    object (rebound, added, removed), and ``C.*`` when there is any: an unchanged statement
    that read ``C.x`` (or the whole of ``C``) read the old one. Methods patched in place keep
    their objects, so they are not in it."""
    out: set[str] = set()
    for op in plan.ops:
        if not isinstance(op, PatchClass):
            continue
        name = f"{prefix}{op.name}"
        inner = {n for o in op.body.ops if isinstance(o, Exec) for n in o.names - o.keep}
        inner |= op.body.removed
        inner |= {n[len(name) + 1 :] for n in changed_inside(op.body, name + ".")}
        if inner:
            out |= {f"{name}.{n}" for n in inner if n != "*"} | {f"{name}.*"}
    return out


def kept_names(
    pairs: list[tuple[ast.stmt, ast.stmt | None]], src: Lines, module_level: bool = False
) -> dict[int, frozenset[str]]:
    """For each statement the upgrade runs, the names it binds that a later statement the
    upgrade does not run binds too: the live value of those is the later one's, and stays."""
    out: dict[int, frozenset[str]] = {}
    later: set[str] = set()
    for stmt, prev in reversed(pairs):
        names = bound_names(stmt)
        if _runs_again(stmt, prev, src, module_level):
            if names & later:
                out[id(stmt)] = frozenset(names & later)
        else:
            later |= names - _reads_own(stmt)
    return out


def _reads_own(stmt: ast.stmt) -> set[str]:
    """Names an assignment binds from their own earlier value (``x += y``, ``x = x + y``): it
    does not replace what an earlier statement bound, it derives from it."""
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        return {stmt.target.id}
    if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
        return bound_names(stmt) & runtime_names(stmt.value)
    return set()


def _runs_again(
    stmt: ast.stmt, prev: ast.stmt | None, src: Lines, module_level: bool = False
) -> bool:
    if prev is None:
        return True
    if module_level and isinstance(stmt, ast.ClassDef) and isinstance(prev, ast.ClassDef):
        return not same_unit(prev, stmt, src) and replacement(prev, stmt) is not None
    return (
        isinstance(stmt, DEF_TYPES)
        and isinstance(prev, DEF_TYPES)
        and not same_unit(prev, stmt, src)
        and dumps(prev.decorator_list) != dumps(stmt.decorator_list)
    )


def replacement(old: ast.ClassDef, new: ast.ClassDef) -> str | None:
    """Why a module-level class cannot be patched in place and is made anew instead (its
    bases, metaclass, keywords, class decorators or ``__slots__`` changed), or None. The
    commit then runs the new ``class`` statement, as a fresh import does; live instances or
    subclasses of the old class would keep it, so prepare refuses those (``class_layout``).
    Enums are never made anew: their members are held by identity."""
    if looks_enum(old) or looks_enum(new):
        return None
    dotted = dotted_bases(old, new)
    why = header_change(old, new, bases=dotted is None)
    if why is None:
        layout = [r for r in class_body_refusals(old, new, "") if r.code == "class_layout"]
        if layout:
            why = layout[0].message.removeprefix(": ")
        elif looks_typed_dict(new) and (
            ann_names(old.body) != ann_names(new.body) or dumps(old.body) != dumps(new.body)
        ):
            # its keys are derived by its metaclass; its "instances" are plain dicts
            why = "the keys of a TypedDict changed (its metaclass derives them)"
    return why


def rebinding(
    pairs: list[tuple[ast.stmt, ast.stmt | None]],
    keep: dict[int, frozenset[str]],
    src: Lines,
    module_level: bool = False,
) -> set[str]:
    """Names whose objects the statements the upgrade runs replace (imports rebind to the same
    objects, or to ones the importer rebinding follows)."""
    out: set[str] = set()
    for stmt, prev in pairs:
        if _runs_again(stmt, prev, src, module_level) and not isinstance(
            stmt, ast.Import | ast.ImportFrom
        ):
            out |= bound_names(stmt) - keep.get(id(stmt), frozenset())
    return out
