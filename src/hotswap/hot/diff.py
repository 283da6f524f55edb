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
live modules. Cutting bodies into units and pairing them is :mod:`.units`.
"""

from __future__ import annotations

import ast

from hotswap.hot.branches import runtime_body
from hotswap.hot.derive import changed_code, follow_rebound_names, stores_of
from hotswap.hot.layout import class_body_refusals, dotted_bases, header_change
from hotswap.hot.names import (
    DEF_TYPES,
    NAMESPACE,
    all_names,
    ann_names,
    bound_names,
    dump,
    dumps,
    future_flags,
    imported_modules,
    iter_classes,
    last_name,
    lazy_annotations,
    parse,
    runtime_names,
    toplevel_imports,
)
from hotswap.hot.plan import CODE_CHANGE, BodyPlan, Exec, ModuleDiff, Op, PatchClass, PatchDef
from hotswap.hot.rebound import changed_inside, kept_names, rebinding, replacement
from hotswap.hot.relazy import SAME_CODE, annotations_become_strings
from hotswap.hot.shape import CONSTRUCTORS, state_shape_changes
from hotswap.hot.units import Lines, annotation_only, pair, same_unit, split_doc
from hotswap.hot.verdict import Reason


def diff_module(
    name: str,
    old_source: str,
    new_source: str,
    filename: str,
    *,
    package: str | None = None,
    outer: frozenset[str] = frozenset(),
    called: frozenset[str] = frozenset(),
) -> ModuleDiff:
    """Diff two versions of module ``name``. Syntax errors become refusals. ``outer``: names
    the upgrade rebinds in this module from outside (its ``from m import`` copies of names
    another module rebinds): what its unchanged statements computed from them is followed.
    ``called``: its ``from m import`` copies of functions whose code the upgrade changes in
    their module (``ModuleDiff.plan.called`` there): what its unchanged statements computed
    by calling them is followed too."""
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
    base_checks: list[tuple[str, tuple[str, ...]]] = []
    relazy = not lazy_annotations(old) and lazy_annotations(new)
    plan = diff_body(
        old.body,
        new.body,
        src=Lines(old_source.splitlines(), new_source.splitlines()),
        prefix="",
        module=name,
        refusals=refusals,
        warnings=warnings,
        is_class=False,
        outer=outer,
        base_checks=base_checks,
        lazy=lazy_annotations(old),
        called=called,
        shadowed=_shadowed_builtins(old.body, new.body),
        relazy=relazy and SAME_CODE,
    )
    removed_lazy = lazy_annotations(old) and not lazy_annotations(new)
    if (removed_lazy or (relazy and not SAME_CODE)) and _annotates(_unchanged(plan)):
        refusals.append(
            Reason(
                "derived_state",
                f"{name}: `from __future__ import annotations` was "
                f"{'added' if lazy_annotations(new) else 'removed'}, so the annotations of its "
                "unchanged functions and classes would change kind (objects and strings) in a "
                "fresh import; use a blue-green upgrade",
                subject=name,
            )
        )
    rebound: set[str] = set()
    for op in plan.ops:
        if isinstance(op, Exec):
            rebound |= op.names - op.keep
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
        import_nodes=tuple(toplevel_imports(new.body)),
        base_checks=tuple(base_checks),
    )


def _undo_delete(
    stmt: ast.Delete,
    pairs: list[tuple[ast.stmt, ast.stmt | None]],
    ops: list[Op],
    same: list[tuple[ast.stmt, ast.stmt]],
    module: str,
    refusals: list[Reason],
) -> None:
    """A removed ``del C.name``: a fresh import keeps ``C.name``, which the class body binds
    (jinja2 3.1.5 stopped deleting ``Undefined.__slots__``), so that statement of the body
    runs again on the live class. Anything else a removed ``del`` deleted stays deleted in
    the running process: refused."""
    classes = {
        new.name: (new, old)
        for new, old in pairs
        if isinstance(new, ast.ClassDef) and isinstance(old, ast.ClassDef)
    }
    for target in stmt.targets:
        items = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
        for item in items:
            found, cls, attr = None, None, ""
            if isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name):
                cls, attr = classes.get(item.value.id), item.attr
                if cls is not None:
                    found = next((s for s in cls[0].body if attr in bound_names(s)), None)
            if found is None or cls is None:
                what = ast.unparse(item)
                refusals.append(
                    Reason(
                        "derived_state",
                        f"{module}: `del {what}` (old line {stmt.lineno}) was removed, and what "
                        "it deleted stays deleted in the running process; use a blue-green "
                        "upgrade",
                        subject=f"{module}:{stmt.lineno}",
                    )
                )
                continue
            new_cls, old_cls = cls
            op = next((o for o in ops if isinstance(o, PatchClass) and o.node is new_cls), None)
            if op is None:
                # the class was unchanged (same text): its statements pair one to one
                body = BodyPlan(
                    same=list(
                        zip(split_doc(old_cls.body)[1], split_doc(new_cls.body)[1], strict=False)
                    ),
                    defined=frozenset(n for s in new_cls.body for n in bound_names(s)),
                    first_bound={
                        n: s.lineno for s in reversed(new_cls.body) for n in bound_names(s)
                    },
                )
                op = PatchClass(new_cls.name, new_cls.name, new_cls, old_cls, body)
                ops.append(op)
                ops.sort(key=lambda o: o.lineno)
            op.body.ops.append(Exec(found, frozenset({attr}), "derived"))
            same[:] = [(a, b) for a, b in same if b is not new_cls]
            op.body.ops.sort(key=lambda o: o.lineno)


# decorators that only wrap or describe what they decorate, by the last part of their name
# (`functools.lru_cache(...)` too): running them again registers nothing anywhere
_PURE_DECORATORS = frozenset(
    {
        "staticmethod", "classmethod", "property", "setter", "getter", "deleter",
        "cache", "lru_cache", "cached_property", "wraps", "total_ordering",
        "abstractmethod", "overload", "final", "override", "no_type_check",
        "runtime_checkable", "contextmanager", "asynccontextmanager", "dataclass",
        "deprecated", "unique", "singledispatch", "singledispatchmethod",
    }
)  # fmt: skip


def registering_decorators(
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, *, reading: bool = False
) -> list[str]:
    """The decorators of ``node`` that may have registered it somewhere when they ran, as they
    are written: those called with arguments or reached through an object (a route
    ``@router.get("/x")``, ``@app.route``, a receiver ``@receiver(post_save)``, a command
    ``@cli.command()``), but not those known only to wrap (:data:`_PURE_DECORATORS`), nor a
    bare name (``@pass_context``: a marker or a wrapper, patched with the function).
    ``reading``: only those reached through an object (a framework's registry:
    ``@router.get``, ``@click.option``), which read the signature when they register."""
    out = []
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if last_name(target) in _PURE_DECORATORS or isinstance(d, ast.Name):
            continue
        if reading and not isinstance(target, ast.Attribute):
            continue
        out.append(ast.unparse(d)[:60])
    return out


def _registered(where: str, line: int, decorators: list[str], what: str) -> Reason:
    return Reason(
        "stale_registration",
        f"{where} (line {line}) is decorated with {', '.join('@' + d for d in decorators)}, "
        f"which may have registered it when it ran; {what}",
        subject=where,
    )


def _shadowed_builtins(*bodies: list[ast.stmt]) -> frozenset[str]:
    """The builtin constructors a module binds at its top level (all of them after a
    ``from m import *``): there ``frozenset(...)`` need not make a frozenset."""
    names: set[str] = set()
    for stmt in (s for body in bodies for s in body):
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            return CONSTRUCTORS
        names |= bound_names(stmt)
    return CONSTRUCTORS & names


def _unchanged(plan: BodyPlan) -> list[ast.stmt]:
    """The statements of a body the upgrade leaves as they ran (in changed classes too)."""
    out = [stmt for _prev, stmt in plan.same]
    for op in plan.ops:
        if isinstance(op, PatchClass):
            out += _unchanged(op.body)
    return out


def _annotates(stmts: list[ast.stmt]) -> bool:
    """Do the statements annotate anything (a def's parameters or return, an assignment)?"""
    for node in (n for stmt in stmts for n in ast.walk(stmt)):
        if isinstance(node, ast.AnnAssign) or (isinstance(node, ast.arg) and node.annotation):
            return True
        if isinstance(node, DEF_TYPES) and node.returns is not None:
            return True
    return False


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
    outer: frozenset[str] = frozenset(),
    base_checks: list[tuple[str, tuple[str, ...]]] | None = None,
    lazy: bool = False,
    shadowed: frozenset[str] = frozenset(),
    relazy: bool = False,
    called: frozenset[str] = frozenset(),
) -> BodyPlan:
    """The plan of one body. ``outer`` are the module names the upgrade rebinds (for a class
    body: what its unchanged statements may have read from the module). ``lazy``: the old
    module's annotations were strings (``from __future__ import annotations``). A module's
    blocks that never run on import (``if TYPE_CHECKING:``, ``if __name__ == "__main__":``)
    are left out: neither a fresh import nor the upgrade runs them."""
    old_doc, old_stmts = split_doc(old_body)
    new_doc, new_stmts = split_doc(new_body)
    if not is_class:
        old_stmts = runtime_body(old_stmts, module)
        new_stmts = runtime_body(new_stmts, module)
    pairs, unmatched = pair(old_stmts, new_stmts, src)
    keep = kept_names(pairs, src, not is_class)
    risky = set(outer) | rebinding(pairs, keep, src, not is_class)
    ops: list[Op] = []
    replaced: list[tuple[str, str]] = []
    same: list[tuple[ast.stmt, ast.stmt]] = []
    defined: set[str] = set()
    first_bound: dict[str, int] = {}
    for stmt, prev in pairs:
        names = bound_names(stmt)
        defined |= names
        for n in names:
            first_bound.setdefault(n, stmt.lineno)
        if prev is None:
            ops.append(Exec(stmt, frozenset(names), "added", keep.get(id(stmt), frozenset())))
            continue
        if annotation_only(prev, stmt):
            assert isinstance(stmt, ast.AnnAssign)
            bare = ast.AnnAssign(stmt.target, stmt.annotation, None, stmt.simple)
            ops.append(Exec(ast.copy_location(bare, stmt), frozenset(), "annotation"))
            continue
        if not isinstance(stmt, DEF_TYPES | ast.ClassDef) or same_unit(prev, stmt, src):
            same.append((prev, stmt))
            continue
        where = f"{module}.{prefix}{getattr(stmt, 'name', '')}"
        if isinstance(stmt, DEF_TYPES) and isinstance(prev, DEF_TYPES):
            if dumps(prev.decorator_list) == dumps(stmt.decorator_list):
                ops.append(PatchDef(stmt, prefix + stmt.name, prev))
                reading = registering_decorators(prev, reading=True)
                if reading and dump(prev.args) != dump(stmt.args):
                    refusals.append(
                        _registered(
                            where,
                            stmt.lineno,
                            reading,
                            "its parameters changed, and what registered it may have read them "
                            "then (FastAPI's query parameters, click's options)",
                        )
                    )
            elif registering := registering_decorators(prev):
                refusals.append(
                    _registered(
                        where,
                        stmt.lineno,
                        registering,
                        "its decorators changed; decorating it again would register it a "
                        "second time beside the old registration (a route under its old path)",
                    )
                )
            else:
                ops.append(
                    Exec(stmt, frozenset(names), "redecorated", keep.get(id(stmt), frozenset()))
                )
                warnings.append(
                    f"{where} (line {stmt.lineno}): decorators changed, so the name is bound to a "
                    "new object; references taken before keep the old decorated object"
                )
        elif isinstance(stmt, ast.ClassDef) and isinstance(prev, ast.ClassDef):
            why = replacement(prev, stmt) if not is_class else None
            if why:  # a module-level class whose layout changed: made anew (see replacement)
                ops.append(
                    Exec(stmt, frozenset(names), "replaced", keep.get(id(stmt), frozenset()))
                )
                replaced.append((stmt.name, f"{where}: {why}"))
                warnings.append(
                    f"{where} (line {stmt.lineno}): {why}, so the class is made anew; "
                    "references taken before keep the old class"
                )
                continue
            dotted = dotted_bases(prev, stmt) if base_checks is not None else None
            reason = header_change(prev, stmt, bases=dotted is None)
            if reason:
                refusals.append(Reason("class_layout", f"{where}: {reason}", subject=where))
                continue
            if dotted is not None and base_checks is not None:
                base_checks.append((prefix + stmt.name, dotted))
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
                outer=frozenset(risky - {NAMESPACE}),
                base_checks=base_checks,
                lazy=lazy,
                shadowed=shadowed,
                relazy=relazy,
                called=changed_code(ops, same, called, risky) if not is_class else called,
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
        elif isinstance(stmt, ast.Delete) and not is_class:
            _undo_delete(stmt, pairs, ops, same, module, refusals)
        elif isinstance(stmt, DEF_TYPES | ast.ClassDef) and stmt.name not in defined:
            registering = registering_decorators(stmt)
            if registering:
                where = f"{module}.{prefix}{stmt.name}"
                refusals.append(
                    _registered(
                        where,
                        stmt.lineno,
                        registering,
                        "it was removed, and the registration stays (a fresh start would not "
                        "have it)",
                    )
                )
    # A changed plain statement is a removed unit plus an added one; its names stay bound.
    removed = frozenset(n for n in removed_names - defined if n != "*")
    old_ann = ann_names(old_stmts)
    new_ann = ann_names(new_stmts)
    fields_changed = old_ann != new_ann or any(
        isinstance(op, Exec) and isinstance(op.node, ast.AnnAssign) and op.why != "annotation"
        for op in ops
    )
    ann_changed = fields_changed or any(
        isinstance(op, Exec) and op.why == "annotation" for op in ops
    )
    plan = BodyPlan(
        ops=ops,
        removed=removed,
        doc=(old_doc != new_doc, new_doc),
        annotations=tuple(new_ann) if ann_changed else None,
        defined=frozenset(defined),
        same=same,
        fields_changed=fields_changed,
        first_bound=first_bound,
        replaced=replaced,
    )
    risky |= changed_inside(plan)
    plan.called = called if is_class else changed_code(ops, same, called, risky)
    if not is_class:
        plan.stores = stores_of(same, risky)
    if risky or removed or any(isinstance(op, Exec) and op.why == "added" for op in ops):
        risky.add(NAMESPACE)  # `vars()` here would see another namespace
    follow_rebound_names(
        plan,
        risky,
        called=plan.called,
        src=src,
        prefix=prefix,
        module=module,
        refusals=refusals,
        warnings=warnings,
        lazy=lazy,
        imported=outer if not is_class else frozenset(),
    )
    if relazy:  # `from __future__ import annotations` added: every annotation a string
        annotations_become_strings(
            plan,
            prefix=prefix,
            module=module,
            is_class=is_class,
            refusals=refusals,
            redo_class=lambda prev, stmt: diff_body(
                prev.body,
                stmt.body,
                src=src,
                prefix=f"{prefix}{stmt.name}.",
                module=module,
                refusals=refusals,
                warnings=warnings,
                is_class=True,
                shadowed=shadowed,
                relazy=True,
            ),
        )
    if plan.annotations is None and any(
        isinstance(op, Exec) and op.why == "annotation" for op in plan.ops
    ):
        plan.annotations = tuple(new_ann)  # an annotation re-evaluated: the class's follow
    if is_class:
        plan.state_shape, plan.fills = state_shape_changes(plan, prefix, shadowed)
    return plan
