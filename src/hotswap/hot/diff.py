"""Diff two versions of a module's source at the level of definitions (pure: no live objects).

A module body (and each class body in it) is cut into *units*, one per top-level statement. A
``def``/``class`` unit is keyed by its name (and its rank among same-named ones, for property
getter/setter pairs); any other statement by its AST text. Then, walking the new body in order:

===================================  =========================================================
unit                                 plan
===================================  =========================================================
same AST as before                   nothing: not re-run, so its state (caches, locks,
                                     registries, routes) survives
``def`` changed, same decorators     :class:`PatchDef`: the live function object is patched in
                                     place (code, defaults, annotations, doc); decorators are
                                     not re-run, so nothing registers twice
``def`` whose decorators changed     :class:`Exec`: the new statement runs and rebinds the name
``class`` changed, same header       :class:`PatchClass`: the same walk inside the class body,
                                     applied to the live class
``class`` header changed             refused (bases, metaclass, decorators: layout)
any other new or changed statement   :class:`Exec`, in source order
statement gone                       names only it bound are unbound (``removed``)
===================================  =========================================================

Unchanged ``def``\\s whose default values read a name this upgrade rebinds become
:class:`PatchDef` too (their defaults are re-evaluated). Unchanged decorators or class headers that
read a rebound name are refused: they registered on the old object, and re-running them would
register twice. Other unchanged statements that read a rebound name get a warning.

Nothing here executes code; :mod:`hotswap.hot.prepare` compiles the plan (:mod:`.plan`) against
live modules.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from hotswap.hot.layout import class_body_refusals, header_change
from hotswap.hot.names import (
    DEF_TYPES,
    all_names,
    ann_names,
    bound_names,
    dump,
    dumps,
    first_line,
    future_flags,
    imported_modules,
    iter_classes,
    names_in,
    parse,
    runtime_names,
)
from hotswap.hot.plan import CODE_CHANGE, BodyPlan, Exec, ModuleDiff, Op, PatchClass, PatchDef
from hotswap.hot.verdict import Reason


def diff_module(
    name: str, old_source: str, new_source: str, filename: str, *, package: str | None = None
) -> ModuleDiff:
    """Diff two versions of module ``name``. Syntax errors become refusals."""
    pkg = package if package is not None else name.rpartition(".")[0]
    refusals: list[Reason] = []
    try:
        old = parse(old_source, filename)
        new = parse(new_source, filename)
    except SyntaxError as exc:
        refusals.append(
            Reason(
                "syntax_error",
                f"{name}: {exc.msg} (line {exc.lineno}); the new release does not compile",
                subject=name,
            )
        )
        return ModuleDiff(
            name, BodyPlan(), 0, frozenset(), frozenset(), frozenset(), False, (), refusals
        )
    warnings: list[str] = []
    plan = diff_body(
        old.body,
        new.body,
        src=Lines(old_source.splitlines(), new_source.splitlines()),
        prefix="",
        module=name,
        refusals=refusals,
        warnings=warnings,
        is_class=False,
    )
    rebound = _rebound(plan)
    _follow_rebound_names(name, plan, rebound, refusals, warnings)
    touched: set[str] = set()
    for op in plan.ops:
        if isinstance(op, Exec | PatchDef):
            touched |= runtime_names(op.node)
    code_change = False
    cc_classes: list[str] = []
    for stmt in new.body:
        if isinstance(stmt, DEF_TYPES) and stmt.name == CODE_CHANGE:
            code_change = True
            touched |= all_names(stmt)
    for qualname, cls in iter_classes(new.body, ""):
        for stmt in cls.body:
            if isinstance(stmt, DEF_TYPES) and stmt.name == CODE_CHANGE:
                cc_classes.append(qualname)
                touched |= all_names(stmt)
    return ModuleDiff(
        name=name,
        plan=plan,
        future_flags=future_flags(new),
        imports=frozenset(imported_modules(new.body, pkg)),
        rebound=frozenset(rebound),
        touched=frozenset(touched),
        code_change=code_change,
        code_change_classes=tuple(cc_classes),
        refusals=refusals,
        warnings=warnings,
    )


@dataclass
class Lines:
    """The source lines of both versions (statements are compared by text first)."""

    old: list[str]
    new: list[str]


def diff_body(
    old_body: list[ast.stmt],
    new_body: list[ast.stmt],
    *,
    src: Lines,
    prefix: str,
    module: str,
    refusals: list[Reason],
    warnings: list[str],
    is_class: bool,
) -> BodyPlan:
    old_doc, old_stmts = _split_doc(old_body)
    new_doc, new_stmts = _split_doc(new_body)
    pairs, unmatched = _pair(old_stmts, new_stmts, src)
    ops: list[Op] = []
    same: list[tuple[ast.stmt, ast.stmt]] = []
    defined: set[str] = set()
    for stmt, prev in pairs:
        defined |= bound_names(stmt)
        if prev is None:
            ops.append(Exec(stmt, frozenset(bound_names(stmt)), "added"))
            continue
        if not isinstance(stmt, DEF_TYPES | ast.ClassDef) or _same(prev, stmt, src):
            same.append((prev, stmt))
            continue
        where = f"{module}.{prefix}{getattr(stmt, 'name', '')}"
        if isinstance(stmt, DEF_TYPES) and isinstance(prev, DEF_TYPES):
            if dumps(prev.decorator_list) == dumps(stmt.decorator_list):
                ops.append(PatchDef(stmt, prefix + stmt.name, first_line(prev)))
                if stmt.decorator_list and dump(prev.args) != dump(stmt.args):
                    warnings.append(
                        f"{where} (line {stmt.lineno}) is decorated and its parameters changed: "
                        "frameworks that read signatures at registration keep the old ones"
                    )
            else:
                ops.append(Exec(stmt, frozenset(bound_names(stmt)), "redecorated"))
                warnings.append(
                    f"{where} (line {stmt.lineno}): decorators changed, so the name is bound to a "
                    "new object; references taken before keep the old decorated object"
                )
        elif isinstance(stmt, ast.ClassDef) and isinstance(prev, ast.ClassDef):
            reason = header_change(prev, stmt)
            if reason:
                refusals.append(Reason("class_layout", f"{where}: {reason}", subject=where))
                continue
            refusals.extend(class_body_refusals(prev, stmt, where))
            body = diff_body(
                prev.body,
                stmt.body,
                src=src,
                prefix=f"{prefix}{stmt.name}.",
                module=module,
                refusals=refusals,
                warnings=warnings,
                is_class=True,
            )
            if body.is_empty():
                same.append((prev, stmt))
            else:
                ops.append(PatchClass(stmt.name, prefix + stmt.name, stmt, prev, body))
    removed_names: set[str] = set()
    for stmt in unmatched:
        removed_names |= bound_names(stmt)
        if isinstance(stmt, ast.Expr) and not is_class:
            warnings.append(
                f"{module}: the top-level statement at old line {stmt.lineno} was changed or "
                "removed; what it did when it ran stays in the running process"
            )
    # A changed plain statement is a removed unit plus an added one; its names stay bound.
    removed = frozenset(n for n in removed_names - defined if n != "*")
    annotations: tuple[str, ...] | None = None
    old_ann = ann_names(old_stmts)
    new_ann = ann_names(new_stmts)
    ann_changed = old_ann != new_ann or any(
        isinstance(op, Exec) and isinstance(op.node, ast.AnnAssign) for op in ops
    )
    if ann_changed:
        annotations = tuple(new_ann)
    return BodyPlan(
        ops=ops,
        removed=removed,
        doc=(old_doc != new_doc, new_doc),
        annotations=annotations,
        defined=frozenset(defined),
        same=same,
    )


# -- units ----------------------------------------------------------------------------------


def _split_doc(body: list[ast.stmt]) -> tuple[str | None, list[ast.stmt]]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[0].value.value, body[1:]
    return None, body


def _name_key(stmt: ast.stmt) -> tuple[str, str] | None:
    if isinstance(stmt, DEF_TYPES):
        return ("def", stmt.name)
    if isinstance(stmt, ast.ClassDef):
        return ("class", stmt.name)
    return None


def _text(stmt: ast.stmt, lines: list[str]) -> str:
    start = first_line(stmt) if isinstance(stmt, DEF_TYPES | ast.ClassDef) else stmt.lineno
    return "\n".join(lines[start - 1 : stmt.end_lineno or stmt.lineno])


def _same(old: ast.stmt, new: ast.stmt, src: Lines) -> bool:
    """Same text, or (slower, for cosmetic edits) the same AST. A class whose text differs is
    diffed statement by statement instead (an empty plan then means it is the same)."""
    if _text(old, src.old) == _text(new, src.new):
        return True
    return not isinstance(new, ast.ClassDef) and dump(old) == dump(new)


def _pair(
    old_stmts: list[ast.stmt], new_stmts: list[ast.stmt], src: Lines
) -> tuple[list[tuple[ast.stmt, ast.stmt | None]], list[ast.stmt]]:
    """Pair each new statement with its old counterpart (None if it is new) and list the old
    statements left over. ``def``/``class`` pair by name and rank among same-named ones; other
    statements by their text, then (for the few left) by their AST, so a reformatted statement
    still counts as unchanged and is not run again."""
    named: dict[tuple[str, str, int], ast.stmt] = {}
    plain: dict[str, list[ast.stmt]] = {}
    ranks: dict[tuple[str, str], int] = {}
    for stmt in old_stmts:
        key = _name_key(stmt)
        if key is None:
            plain.setdefault(_text(stmt, src.old), []).append(stmt)
        else:
            rank = ranks[key] = ranks.get(key, -1) + 1
            named[(*key, rank)] = stmt
    ranks = {}
    used: set[int] = set()
    pairs: list[tuple[ast.stmt, ast.stmt | None]] = []
    pending: list[int] = []
    for stmt in new_stmts:
        key = _name_key(stmt)
        prev: ast.stmt | None
        if key is None:
            bucket = plain.get(_text(stmt, src.new))
            prev = bucket.pop(0) if bucket else None
            if prev is None:
                pending.append(len(pairs))
        else:
            rank = ranks[key] = ranks.get(key, -1) + 1
            prev = named.get((*key, rank))
        if prev is not None:
            used.add(id(prev))
        pairs.append((stmt, prev))
    if pending:
        left: dict[str, list[ast.stmt]] = {}
        for stmt in old_stmts:
            if id(stmt) not in used and _name_key(stmt) is None:
                left.setdefault(dump(stmt), []).append(stmt)
        for i in pending if left else ():
            stmt = pairs[i][0]
            bucket = left.get(dump(stmt))
            if bucket:
                prev = bucket.pop(0)
                used.add(id(prev))
                pairs[i] = (stmt, prev)
    return pairs, [s for s in old_stmts if id(s) not in used]


# -- rebinding and stale uses ---------------------------------------------------------------


def _rebound(plan: BodyPlan) -> set[str]:
    """Module names that Exec ops bind (their objects may change identity)."""
    out: set[str] = set()
    for op in plan.ops:
        if isinstance(op, Exec):
            out |= op.names
    return out


def _follow_rebound_names(
    module: str,
    plan: BodyPlan,
    rebound: set[str],
    refusals: list[Reason],
    warnings: list[str],
) -> None:
    # Imports rebind to the same objects (or to objects importer-rebinding follows).
    risky = set(rebound)
    for op in plan.ops:
        if isinstance(op, Exec) and isinstance(op.node, ast.Import | ast.ImportFrom):
            risky -= op.names
    if not risky:
        return
    added = False
    for prev, stmt in plan.same:
        if isinstance(stmt, DEF_TYPES | ast.ClassDef):
            header = names_in(stmt.decorator_list)
            if isinstance(stmt, ast.ClassDef):
                header |= names_in(stmt.bases) | names_in(k.value for k in stmt.keywords)
            used = header & risky
            if used:
                refusals.append(
                    Reason(
                        "stale_registration",
                        f"{module}.{stmt.name} (line {stmt.lineno}) was decorated or based on "
                        f"{', '.join(sorted(used))}, which this upgrade rebinds: its "
                        "registration was made on the old object and would not be redone",
                        subject=f"{module}.{stmt.name}",
                    )
                )
                continue
            if isinstance(stmt, DEF_TYPES):
                assert isinstance(prev, DEF_TYPES)
                defaults = [*stmt.args.defaults, *(d for d in stmt.args.kw_defaults if d)]
                if names_in(defaults) & risky:
                    plan.ops.append(PatchDef(stmt, stmt.name, first_line(prev), why="defaults"))
                    added = True
                continue
        used = runtime_names(stmt) & risky
        if used:
            warnings.append(
                f"{module} line {stmt.lineno}: unchanged, but it ran with the old "
                f"{', '.join(sorted(used))}; recompute it in __code_change__ if it matters"
            )
    if added:
        plan.ops.sort(key=lambda op: op.lineno)
