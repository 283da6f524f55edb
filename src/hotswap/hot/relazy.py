"""``from __future__ import annotations`` added to a module: what its unchanged code becomes.

A fresh import of the new release compiles every annotation of the module as a string; the
running process evaluated them when the old code ran. The code objects are the same (the flag
does not reach ``co_flags`` on this interpreter: :data:`SAME_CODE` checks it), so nothing runs
again; the annotations are made what a fresh import makes:

==========================================  ==============================================
unchanged statement                         plan
==========================================  ==============================================
annotated ``def`` (module level, classes)   :class:`PatchDef` ``why="annotations"``: the
                                            def, without decorators and with its defaults
                                            left out, compiled with the new flags; only
                                            its ``__annotations__`` are copied (in place,
                                            so ``functools.wraps`` wrappers follow)
``NAME: T`` (module or class body)          the bare annotation runs again, into
                                            ``__annotations__``; a dataclass is processed
                                            again (field types, ``__init__``, ``__doc__``),
                                            a NamedTuple gets the ``typing.ForwardRef``\\s
                                            its metaclass makes of strings
a module-level ``TypedDict``                made anew (its metaclass derives its keys from
                                            the annotations; its instances are dicts)
a ``def`` defining annotated functions or   refused (``derived_state``): their code would
classes in its body                         differ
==========================================  ==============================================

The other way (the import removed) is refused by the diff: every annotation would have to be
evaluated, at the point of the module where the old code left a string.
"""

from __future__ import annotations
import __future__

import ast
import types

from hotswap.hot.layout import looks_typed_dict
from hotswap.hot.names import DEF_TYPES, Def, bound_names
from hotswap.hot.plan import BodyPlan, Exec, PatchClass, PatchDef
from hotswap.hot.verdict import Reason


def _flags_of(flags: int) -> int:
    code = compile("def f(x: int) -> int:\n    return x\n", "<probe>", "exec", flags=flags)
    return next(int(c.co_flags) for c in code.co_consts if isinstance(c, types.CodeType))


#: Does ``from __future__ import annotations`` leave code objects as they are here?
SAME_CODE = _flags_of(0) == _flags_of(__future__.annotations.compiler_flag)


def annotations_become_strings(
    plan: BodyPlan,
    *,
    prefix: str,
    module: str,
    is_class: bool,
    refusals: list[Reason],
    redo_class: object,
) -> None:
    """Add to ``plan`` what its unchanged statements need now that the module's annotations
    are strings (see the module docstring). ``redo_class(prev, stmt)`` diffs an unchanged
    class body the same way and returns its :class:`BodyPlan`."""
    still: list[tuple[ast.stmt, ast.stmt]] = []
    patched = {id(op.node) for op in plan.ops if isinstance(op, PatchDef)}
    for prev, stmt in plan.same:
        where = f"{module}.{prefix}{getattr(stmt, 'name', '')}"
        if isinstance(stmt, DEF_TYPES):
            assert isinstance(prev, DEF_TYPES)
            if _annotated_inside(stmt):
                refusals.append(
                    Reason(
                        "derived_state",
                        f"{where} (line {stmt.lineno}) defines annotated functions or classes "
                        "in its body, and `from __future__ import annotations` was added: a "
                        "fresh import compiles them to other code; use a blue-green upgrade",
                        subject=where,
                    )
                )
            elif _annotated(stmt) and id(stmt) not in patched:
                plan.ops.append(PatchDef(stmt, prefix + stmt.name, prev, why="annotations"))
            still.append((prev, stmt))
        elif isinstance(stmt, ast.AnnAssign) and stmt.simple:
            bare = ast.AnnAssign(stmt.target, stmt.annotation, None, stmt.simple)
            plan.ops.append(Exec(ast.copy_location(bare, stmt), frozenset(), "annotation"))
            still.append((prev, stmt))
        elif isinstance(stmt, ast.ClassDef) and _annotates(stmt):
            assert isinstance(prev, ast.ClassDef)
            if looks_typed_dict(stmt) and not is_class:
                names = frozenset(bound_names(stmt))
                plan.ops.append(Exec(stmt, names, "replaced"))
                plan.replaced.append(
                    (
                        stmt.name,
                        f"{where}: `from __future__ import annotations` was added, and a "
                        "TypedDict's metaclass derives its keys from its annotations",
                    )
                )
                continue
            body = redo_class(prev, stmt)  # type: ignore[operator]
            assert isinstance(body, BodyPlan)
            if body.is_empty():
                still.append((prev, stmt))
            else:
                plan.ops.append(PatchClass(stmt.name, prefix + stmt.name, stmt, prev, body))
        else:
            still.append((prev, stmt))
    plan.same = still
    plan.ops.sort(key=lambda op: op.lineno)


def _annotated(node: Def) -> bool:
    a = node.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
    return node.returns is not None or any(p is not None and p.annotation for p in params)


def _annotated_inside(node: Def) -> bool:
    """Does the body of ``node`` define an annotated def or a class with annotations?"""
    for sub in (n for stmt in node.body for n in ast.walk(stmt)):
        if isinstance(sub, DEF_TYPES) and _annotated(sub):
            return True
        if isinstance(sub, ast.ClassDef) and any(isinstance(s, ast.AnnAssign) for s in sub.body):
            return True
    return False


def _annotates(node: ast.ClassDef) -> bool:
    """Does the class body annotate anything (a name, a method, a nested class)?"""
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign):
            return True
        if isinstance(stmt, DEF_TYPES) and (_annotated(stmt) or _annotated_inside(stmt)):
            return True
        if isinstance(stmt, ast.ClassDef) and _annotates(stmt):
            return True
    return False
