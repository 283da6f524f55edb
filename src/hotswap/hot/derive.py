"""What reads what changed: the unchanged statements an upgrade must re-derive, or refuse.

A fresh import of the new release runs every statement; the upgrade runs only the changed ones,
so an unchanged statement that *read* a name the upgrade rebinds holds a value computed from
the old object, and one that *called* a function whose code changes (``ROUTES = build()``,
directly or through unchanged functions of the module, :func:`changed_code`) holds what the old
code computed. For each body (the module, a class) and each such name, in source order:

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

The other question about classes (does a changed method shape instance state anew?) is
:mod:`.shape`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hotswap.hot.names import (
    DEF_TYPES,
    NAMESPACE,
    Def,
    bound_names,
    called_names,
    dotted_reads,
    names_and_chains,
    own_code_changed,
    runtime_names,
)
from hotswap.hot.plan import BodyPlan, Exec, PatchClass, PatchDef
from hotswap.hot.verdict import Reason

if TYPE_CHECKING:
    from hotswap.hot.units import Lines

_CONTAINERS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
_CONTAINER_CALLS = ("dict", "list", "set", "defaultdict", "OrderedDict", "deque", "WeakSet")


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
    called: frozenset[str] = frozenset(),
) -> None:
    """Add to ``plan`` what its unchanged statements need because ``risky`` names get new
    objects, or refuse (see the module docstring). ``lazy``: the old module had
    ``from __future__ import annotations``, so its annotations never read anything.
    ``imported``: names only another module's upgrade rebinds here (``from m import`` copies);
    a module statement that read only those and cannot be re-run becomes a guard of the
    commit (it fails, rolled back, if one of them does get a new object: the same ``None``
    often comes back) instead of a refusal. ``called``: the functions whose code the upgrade
    changes (:func:`changed_code`); an unchanged statement that called one ran the old code,
    so it is followed as if it had read a rebound name."""
    from hotswap.hot.diff import diff_body  # the class case recurses into the diff

    if not risky and not called:
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
            ran: set[str] = set()
            if header & called:  # a call reads the name it calls: most read none of them
                ran = _calls_in(stmt.decorator_list) & called
                if isinstance(stmt, ast.ClassDef):
                    ran |= _calls_in(stmt.bases, decorators=False) & called
            if used or ran:
                what = (
                    f"was decorated or based on {', '.join(sorted(used))}, which this upgrade "
                    "rebinds: its registration was made on the old object"
                    if used
                    else f"was decorated by {', '.join(sorted(ran))}, whose code this upgrade "
                    "changes: the decoration ran the old code"
                )
                refusals.append(
                    Reason(
                        "stale_registration",
                        f"{where} (line {stmt.lineno}) {what} and would not be redone",
                        subject=where,
                    )
                )
                still_same.append((prev, stmt))
                continue
            if isinstance(stmt, DEF_TYPES):
                assert isinstance(prev, DEF_TYPES)
                evaluated = _evaluated_at_def(stmt)
                reads = _reads_in(evaluated)
                if reads & risky or (reads & called and _calls_in(evaluated, False) & called):
                    plan.ops.append(PatchDef(stmt, prefix + stmt.name, prev, why="defaults"))
                    added = True
                still_same.append((prev, stmt))
                continue
            assert isinstance(prev, ast.ClassDef)
            reads = runtime_names(stmt)
            if (reads | dotted_reads(stmt)) & risky or (
                reads & called and called_names(stmt) & called
            ):
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
                    called=called,
                )
                if not body.is_empty():
                    plan.ops.append(PatchClass(stmt.name, prefix + stmt.name, stmt, prev, body))
                    added = True
                    continue
            still_same.append((prev, stmt))
            continue
        reads, in_annotation = _reads(stmt)
        used = reads & risky
        if reads & called:
            used |= called_names(stmt) & called
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


def changed_code(
    ops: Iterable[object],
    same: list[tuple[ast.stmt, ast.stmt]],
    imported: frozenset[str] = frozenset(),
    rebound: Iterable[str] = (),
) -> frozenset[str]:
    """The functions of a module whose call runs other code or reads other values after the
    upgrade: those patched whose own code changed (not only the bodies of the functions they
    define: those get their new code in place), ``imported`` (such functions of other
    modules, by the names this one imported them as), the unchanged ones that read a name
    the upgrade ``rebound`` (an app factory copying ``MODE`` into its config), and the
    unchanged ones that call one of them, transitively. A statement that called one at import
    computed its value with the old code or the old values. Handing one on is not calling it
    (``make_app()`` naming a changed handler: the live handler gets the new code)."""
    out = set(imported) | _changed_defs(ops)
    defs = [s for _prev, s in same if isinstance(s, DEF_TYPES)]
    names = frozenset(rebound) - {NAMESPACE}
    if names:
        out |= {d.name for d in defs if names_and_chains(d) & names}
    calls = {d.name: called_names(d, bodies=True) for d in defs} if out else {}
    grew = bool(out)
    while grew:
        grew = False
        for d in defs:
            if d.name not in out and calls[d.name] & out:
                out.add(d.name)
                grew = True
    return frozenset(out)


_MUTATORS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "__setitem__"})


def stores_of(same: list[tuple[ast.stmt, ast.stmt]], rebound: Iterable[str]) -> frozenset[str]:
    """The unchanged functions of a module (and methods of its unchanged classes) that store
    a value computed from a name the upgrade ``rebound`` somewhere that outlives the call: an
    attribute or an item (``app.state.pool = {"size": POOL_SIZE}``, ``self.timeout =
    TIMEOUT``), or a container they fill (``CLIENTS.append(Client(TIMEOUT))``). Run at start-up,
    what they stored stays (:mod:`.startup`); merely reading it (``if mode == MODE``) does not."""
    names = frozenset(rebound) - {NAMESPACE}
    if not names:
        return frozenset()
    out: set[str] = set()
    for _prev, stmt in same:
        if isinstance(stmt, DEF_TYPES):
            if _stores(stmt, names):
                out.add(stmt.name)
        elif isinstance(stmt, ast.ClassDef):
            out |= {
                f"{stmt.name}.{d.name}"
                for d in stmt.body
                if isinstance(d, DEF_TYPES) and _stores(d, names)
            }
    return frozenset(out)


def _stores(node: Def, names: frozenset[str]) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Assign | ast.AugAssign | ast.AnnAssign) and n.value is not None:
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            lasting = any(isinstance(t, ast.Attribute | ast.Subscript) for t in targets)
            if lasting and names_and_chains(n.value) & names:
                return True
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in _MUTATORS
            and any(names_and_chains(arg) & names for arg in [*n.args, *n.keywords])
        ):
            return True
    return False


def _changed_defs(ops: Iterable[object]) -> set[str]:
    """The qualnames of the patched defs whose own code changed (``f``, ``Cls.meth``). Not
    ``Cls`` for a changed ``__init__``: ``SERVER = Server()`` made the module's state, which
    the upgrade keeps and migrates (``__code_change__``, :mod:`.shape`), never makes anew."""
    out: set[str] = set()
    for op in ops:
        if (
            isinstance(op, PatchDef)
            and op.why == "changed"
            and own_code_changed(op.old_node, op.node)
        ):
            out.add(op.qualname)
        elif isinstance(op, PatchClass):
            out |= _changed_defs(op.body.ops)
    return out


def _calls_in(nodes: Iterable[ast.AST], decorators: bool = True) -> set[str]:
    """Names the expressions call; a bare name in ``decorators`` is called too (``@f``)."""
    out: set[str] = set()
    for n in nodes:
        if decorators and isinstance(n, ast.Name):
            out.add(n.id)
        else:
            out |= called_names(n)
    return out


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
