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

Nothing here executes code; :mod:`hotswap.hot.prepare` compiles the plan against live modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hotswap.hot.verdict import Reason

Def = ast.FunctionDef | ast.AsyncFunctionDef
_DEF_TYPES = ast.FunctionDef | ast.AsyncFunctionDef
_ENUM_BASES = ("Enum", "IntEnum", "StrEnum", "Flag", "IntFlag", "ReprEnum")
CODE_CHANGE = "__code_change__"


@dataclass
class PatchDef:
    """A changed ``def`` with unchanged decorators: patch the live function in place."""

    node: Def  # the new statement
    qualname: str
    old_firstlineno: int  # co_firstlineno of the live (old) code
    why: str = "changed"  # or "defaults" (unchanged text, defaults read a rebound name)

    @property
    def lineno(self) -> int:
        return self.node.lineno


@dataclass
class Exec:
    """A statement to run in the live namespace: added, changed, or a re-decorated ``def``."""

    node: ast.stmt
    names: frozenset[str]  # names it binds
    why: str  # "added" | "changed" | "redecorated"

    @property
    def lineno(self) -> int:
        return self.node.lineno


@dataclass
class PatchClass:
    """A changed class with an unchanged header: apply ``body`` to the live class."""

    name: str
    qualname: str
    node: ast.ClassDef  # new
    old_node: ast.ClassDef
    body: BodyPlan

    @property
    def lineno(self) -> int:
        return self.node.lineno


Op = PatchDef | Exec | PatchClass


@dataclass
class BodyPlan:
    """What to do to one namespace (a module, or a class body), in new-source order."""

    ops: list[Op] = field(default_factory=list)
    removed: frozenset[str] = frozenset()
    doc: tuple[bool, str | None] = (False, None)  # (changed, new docstring)
    annotations: tuple[str, ...] | None = None  # new order of annotated names, if it changed
    defined: frozenset[str] = frozenset()  # names bound by the new body (all units)
    same: list[tuple[ast.stmt, ast.stmt]] = field(default_factory=list, repr=False)  # unchanged

    def is_empty(self) -> bool:
        return not self.ops and not self.removed and not self.doc[0] and self.annotations is None

    def walk_classes(self) -> Iterator[PatchClass]:
        for op in self.ops:
            if isinstance(op, PatchClass):
                yield op
                yield from op.body.walk_classes()


@dataclass
class ModuleDiff:
    """The definition-level diff of one module, and what it implies."""

    name: str
    plan: BodyPlan
    future_flags: int
    imports: frozenset[str]  # absolute modules the new top level imports (for ordering)
    rebound: frozenset[str]  # module names re-bound by Exec ops (importers may hold the old)
    touched: frozenset[str]  # globals the code run in the window can name (for snapshots)
    code_change: bool  # new module defines __code_change__
    code_change_classes: tuple[str, ...]  # qualnames of new classes defining __code_change__
    refusals: list[Reason] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse(source: str, filename: str) -> ast.Module:
    return ast.parse(source, filename=filename, type_comments=False)


def dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def first_line(node: Def | ast.ClassDef) -> int:
    """``co_firstlineno`` of a def's code: its first decorator's line, else the ``def`` line."""
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


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
    _check_stale_uses(name, plan, rebound, refusals, warnings)
    touched: set[str] = set()
    for op in plan.ops:
        if isinstance(op, Exec | PatchDef):
            touched |= runtime_names(op.node)
    code_change = False
    cc_classes: list[str] = []
    for stmt in new.body:
        if isinstance(stmt, _DEF_TYPES) and stmt.name == CODE_CHANGE:
            code_change = True
            touched |= all_names(stmt)
    for qualname, cls in _iter_classes(new.body, ""):
        for stmt in cls.body:
            if isinstance(stmt, _DEF_TYPES) and stmt.name == CODE_CHANGE:
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
        if not isinstance(stmt, _DEF_TYPES | ast.ClassDef) or _same(prev, stmt, src):
            same.append((prev, stmt))
            continue
        where = f"{module}.{prefix}{getattr(stmt, 'name', '')}"
        if isinstance(stmt, _DEF_TYPES) and isinstance(prev, _DEF_TYPES):
            if _dumps(prev.decorator_list) == _dumps(stmt.decorator_list):
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
            reason = _header_change(prev, stmt)
            if reason:
                refusals.append(Reason("class_layout", f"{where}: {reason}", subject=where))
                continue
            refusals.extend(_class_body_refusals(prev, stmt, where))
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
    old_ann = _ann_names(old_stmts)
    new_ann = _ann_names(new_stmts)
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
    if isinstance(stmt, _DEF_TYPES):
        return ("def", stmt.name)
    if isinstance(stmt, ast.ClassDef):
        return ("class", stmt.name)
    return None


def _text(stmt: ast.stmt, lines: list[str]) -> str:
    start = first_line(stmt) if isinstance(stmt, _DEF_TYPES | ast.ClassDef) else stmt.lineno
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


def _dumps(nodes: Iterable[ast.AST]) -> list[str]:
    return [dump(n) for n in nodes]


def _ann_names(body: Iterable[ast.stmt]) -> list[str]:
    return [
        s.target.id
        for s in body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.simple
    ]


# -- classes --------------------------------------------------------------------------------


def _header_change(old: ast.ClassDef, new: ast.ClassDef) -> str | None:
    if _dumps(old.bases) != _dumps(new.bases):
        return "its bases changed (instances would need a new layout)"
    if _dumps(old.keywords) != _dumps(new.keywords):
        return "its metaclass or class keywords changed"
    if _dumps(old.decorator_list) != _dumps(new.decorator_list):
        return "its class decorators changed (they derive state when the class is created)"
    return None


def _slots(body: list[ast.stmt]) -> str | None:
    for stmt in body:
        if "__slots__" in bound_names(stmt):
            return dump(stmt)
    return None


def _looks_enum(node: ast.ClassDef) -> bool:
    for base in node.bases:
        text = ast.unparse(base)
        if text.rsplit(".", 1)[-1] in _ENUM_BASES:
            return True
    return False


def _dataclass_slots(node: ast.ClassDef) -> bool:
    for dec in node.decorator_list:
        if isinstance(dec, ast.Call) and "dataclass" in ast.unparse(dec.func):
            for kw in dec.keywords:
                if kw.arg == "slots" and not (
                    isinstance(kw.value, ast.Constant) and not kw.value.value
                ):
                    return True
    return False


def _class_body_refusals(old: ast.ClassDef, new: ast.ClassDef, where: str) -> list[Reason]:
    out: list[Reason] = []
    if _slots(old.body) != _slots(new.body):
        out.append(Reason("class_layout", f"{where}: __slots__ changed", subject=where))
    if _dataclass_slots(new) and _ann_names(old.body) != _ann_names(new.body):
        out.append(
            Reason(
                "class_layout",
                f"{where}: fields of a dataclass(slots=True) changed (its layout is fixed)",
                subject=where,
            )
        )
    if _looks_enum(new):
        old_members = _enum_assignments(old.body)
        new_members = _enum_assignments(new.body)
        for member, value in old_members.items():
            if member not in new_members:
                out.append(
                    Reason(
                        "enum_members",
                        f"{where}.{member}: enum member removed (stored values may hold it)",
                        subject=f"{where}.{member}",
                    )
                )
            elif new_members[member] != value:
                out.append(
                    Reason(
                        "enum_members",
                        f"{where}.{member}: enum member value changed",
                        subject=f"{where}.{member}",
                    )
                )
    return out


def _enum_assignments(body: list[ast.stmt]) -> dict[str, str]:
    out: dict[str, str] = {}
    for stmt in body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            name = stmt.targets[0].id
            if not (name.startswith("_") or isinstance(stmt.value, ast.Lambda)):
                out[name] = dump(stmt.value)
    return out


def _iter_classes(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.ClassDef]]:
    for stmt in body:
        if isinstance(stmt, ast.ClassDef):
            qualname = prefix + stmt.name
            yield qualname, stmt
            yield from _iter_classes(stmt.body, qualname + ".")


# -- rebinding and stale uses ---------------------------------------------------------------


def _rebound(plan: BodyPlan) -> set[str]:
    """Module names that Exec ops bind (their objects may change identity)."""
    out: set[str] = set()
    for op in plan.ops:
        if isinstance(op, Exec):
            out |= op.names
    return out


def _check_stale_uses(
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
        if isinstance(stmt, _DEF_TYPES | ast.ClassDef):
            header = _names_in(stmt.decorator_list)
            if isinstance(stmt, ast.ClassDef):
                header |= _names_in(stmt.bases) | _names_in(k.value for k in stmt.keywords)
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
            if isinstance(stmt, _DEF_TYPES):
                assert isinstance(prev, _DEF_TYPES)
                defaults = [*stmt.args.defaults, *(d for d in stmt.args.kw_defaults if d)]
                if _names_in(defaults) & risky:
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


# -- name analysis --------------------------------------------------------------------------


def bound_names(node: ast.stmt) -> set[str]:
    """Names a statement binds in the namespace it runs in."""
    out: set[str] = set()

    def target(t: ast.AST) -> None:
        if isinstance(t, ast.Name):
            out.add(t.id)
        elif isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                target(e)
        elif isinstance(t, ast.Starred):
            target(t.value)

    def walrus(n: ast.AST) -> None:
        for sub in _walk_no_scopes(n):
            if isinstance(sub, ast.NamedExpr):
                target(sub.target)

    def visit(s: ast.stmt) -> None:
        if isinstance(s, _DEF_TYPES | ast.ClassDef):
            out.add(s.name)
        elif isinstance(s, ast.Assign):
            for t in s.targets:
                target(t)
            walrus(s.value)
        elif isinstance(s, ast.AugAssign):
            target(s.target)
        elif isinstance(s, ast.AnnAssign):
            if s.value is not None and isinstance(s.target, ast.Name):
                out.add(s.target.id)
        elif isinstance(s, ast.Import):
            for a in s.names:
                out.add(a.asname or a.name.split(".")[0])
        elif isinstance(s, ast.ImportFrom):
            for a in s.names:
                out.add(a.asname or a.name)
        elif isinstance(s, ast.For | ast.AsyncFor):
            target(s.target)
            _visit_all(s.body + s.orelse)
        elif isinstance(s, ast.With | ast.AsyncWith):
            for item in s.items:
                if item.optional_vars is not None:
                    target(item.optional_vars)
            _visit_all(s.body)
        elif isinstance(s, ast.If | ast.While):
            walrus(s.test)
            _visit_all(s.body + s.orelse)
        elif isinstance(s, ast.Try | ast.TryStar):
            _visit_all(s.body + s.orelse + s.finalbody)
            for h in s.handlers:
                if h.name:
                    out.add(h.name)
                _visit_all(h.body)
        elif isinstance(s, ast.Match):
            for case in s.cases:
                for sub in ast.walk(case.pattern):
                    name = getattr(sub, "name", None) or getattr(sub, "rest", None)
                    if isinstance(name, str):
                        out.add(name)
                _visit_all(case.body)
        elif isinstance(s, ast.Expr):
            walrus(s.value)

    def _visit_all(stmts: list[ast.stmt]) -> None:
        for s in stmts:
            visit(s)

    visit(node)
    return out


def _walk_no_scopes(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk that does not enter function or lambda bodies (they run later)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, _DEF_TYPES):
            stack.extend(n.decorator_list)
            stack.extend(n.args.defaults)
            stack.extend(d for d in n.args.kw_defaults if d is not None)
            continue
        if isinstance(n, ast.Lambda):
            stack.extend(n.args.defaults)
            stack.extend(d for d in n.args.kw_defaults if d is not None)
            continue
        stack.extend(ast.iter_child_nodes(n))


def runtime_names(node: ast.AST) -> set[str]:
    """Names read while the statement itself runs (not inside the functions it defines)."""
    return {
        n.id
        for n in _walk_no_scopes(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def all_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _names_in(nodes: Iterable[ast.AST]) -> set[str]:
    out: set[str] = set()
    for n in nodes:
        out |= runtime_names(n)
    return out


def future_flags(tree: ast.Module) -> int:
    import __future__

    flags = 0
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            for alias in stmt.names:
                feature = getattr(__future__, alias.name, None)
                if feature is not None:
                    flags |= feature.compiler_flag
    return flags


def imported_modules(body: list[ast.stmt], package: str) -> set[str]:
    """Absolute names of the modules a body's top level (outside functions) imports."""
    out: set[str] = set()
    for node in _walk_toplevel(body):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(node, package)
            if base is None:
                continue
            out.add(base)
            for a in node.names:
                if a.name != "*":
                    out.add(f"{base}.{a.name}" if base else a.name)
    return out


def from_imports(body: list[ast.stmt], package: str) -> Iterator[tuple[str, str, str]]:
    """``(module, name, alias)`` for every top-level ``from module import name as alias``."""
    for node in _walk_toplevel(body):
        if isinstance(node, ast.ImportFrom):
            base = resolve_from(node, package)
            if base is None:
                continue
            for a in node.names:
                if a.name != "*":
                    yield base, a.name, a.asname or a.name


def resolve_from(node: ast.ImportFrom, package: str) -> str | None:
    if not node.level:
        return node.module or None
    parts = package.split(".") if package else []
    if node.level - 1 > len(parts):
        return None
    base_parts = parts[: len(parts) - (node.level - 1)]
    if node.module:
        base_parts.append(node.module)
    return ".".join(base_parts) or None


def _walk_toplevel(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for stmt in body:
        if isinstance(stmt, _DEF_TYPES | ast.ClassDef):
            continue
        yield stmt
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                yield from _walk_toplevel([child])
            elif isinstance(child, ast.ExceptHandler | ast.match_case):
                yield from _walk_toplevel(child.body)
