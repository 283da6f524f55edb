"""A small library of questions about Python syntax trees (pure: nothing is executed).

Which names a statement binds, which it reads while it runs (not inside the functions it
defines), which modules a body imports and from where, the future flags of a module, and the
few helpers (``dump``, ``first_line``) the diff compares statements with.
"""

from __future__ import annotations
import __future__

import ast
import copy
import re
import string
from collections.abc import Iterable, Iterator

Def = ast.FunctionDef | ast.AsyncFunctionDef
DEF_TYPES = ast.FunctionDef | ast.AsyncFunctionDef


def parse(source: str, filename: str) -> ast.Module:
    return ast.parse(source, filename=filename, type_comments=False)


def dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def first_line(node: Def | ast.ClassDef) -> int:
    """``co_firstlineno`` of a def's code: its first decorator's line, else the ``def`` line."""
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


def dumps(nodes: Iterable[ast.AST]) -> list[str]:
    return [dump(n) for n in nodes]


def ann_names(body: Iterable[ast.stmt]) -> list[str]:
    return [
        s.target.id
        for s in body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.simple
    ]


def iter_classes(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.ClassDef]]:
    for stmt in body:
        if isinstance(stmt, ast.ClassDef):
            qualname = prefix + stmt.name
            yield qualname, stmt
            yield from iter_classes(stmt.body, qualname + ".")


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
        if isinstance(s, DEF_TYPES | ast.ClassDef):
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
        if isinstance(n, DEF_TYPES):
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


NAMESPACE = "*"  # a read of a whole namespace: ``vars()``, ``dir()``, ``globals()``


def dotted_reads(node: ast.AST) -> set[str]:
    """What the statement reads *inside* objects while it runs: ``N.a`` and ``N.a.b`` for an
    attribute chain on a name (``getattr(N, "a")`` too), ``N.*`` where it reads N's whole
    namespace (``vars(N)``, ``dir(N)``, ``N.__dict__``), and ``*`` for the namespace it runs
    in (``vars()``, ``dir()``, ``globals()``, ``locals()``). Names alone are
    :func:`runtime_names`."""
    out: set[str] = set()
    formatted: set[int] = set()  # `globals()` calls whose reads a format string names
    for n in _walk_no_scopes(node):
        fields = _format_fields(n) or _name_lookup(n)
        if fields is not None:
            out |= fields[0]
            formatted.add(id(fields[1]))
    in_class = {  # `vars()` in a class body reads the class's namespace, not this one
        id(sub)
        for c in _walk_no_scopes(node)
        if isinstance(c, ast.ClassDef)
        for stmt in c.body
        for sub in _walk_no_scopes(stmt)
    }
    for n in _walk_no_scopes(node):
        if id(n) in formatted:
            continue
        if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load):
            chain = chain_of(n)
            if chain is None:
                continue
            parts = chain.split(".")
            if parts[-1] == "__dict__":
                out.add(".".join(parts[:-1]) + ".*")
                parts = parts[:-1]
            out.update(".".join(parts[: i + 1]) for i in range(1, len(parts)))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and not n.keywords:
            fn, args = n.func.id, n.args
            if fn in ("vars", "dir", "globals", "locals") and not args:
                if id(n) not in in_class or fn == "globals":
                    out.add(NAMESPACE)
            elif fn in ("vars", "dir") and len(args) == 1 and (c := chain_of(args[0])):
                out.add(c + ".*")
            elif (
                fn in ("getattr", "hasattr")
                and len(args) >= 2
                and (c := chain_of(args[0]))
                and isinstance(args[1], ast.Constant)
                and isinstance(args[1].value, str)
            ):
                out.add(f"{c}.{args[1].value}")
    return out


def _namespace_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("globals", "locals", "vars")
        and not node.args
        and not node.keywords
    )


def _name_lookup(node: ast.AST) -> tuple[set[str], ast.Call] | None:
    """``"x" in globals()``, ``globals().get("x")``, ``globals()["x"]`` read ``x`` alone."""
    call: ast.AST | None = None
    key: ast.AST | None = None
    if (
        isinstance(node, ast.Compare)
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In | ast.NotIn)
    ):
        call, key = node.comparators[0], node.left
    elif isinstance(node, ast.Subscript):
        call, key = node.value, node.slice
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
    ):
        call, key = node.func.value, node.args[0]
    if (
        isinstance(call, ast.Call)
        and _namespace_call(call)
        and isinstance(key, ast.Constant)
        and isinstance(key.value, str)
    ):
        return {key.value}, call
    return None


def _format_fields(node: ast.AST) -> tuple[set[str], ast.Call] | None:
    """``"{a}-{b.c}".format(**globals())`` reads ``a`` and ``b`` (``b.c`` too) of the
    namespace, no more: the names and the ``globals()`` call, else None."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
        and not node.args
        and len(node.keywords) == 1
        and node.keywords[0].arg is None
    ):
        return None
    inner = node.keywords[0].value
    if not (isinstance(inner, ast.Call) and _namespace_call(inner)):
        return None
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(node.func.value.value))
    except ValueError:
        return None
    for _text, field, spec, _conv in parsed:
        if field is None:
            continue  # literal text only
        head = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not head.isidentifier() or (spec and "{" in spec):
            return None  # a positional field, or a nested one in the spec
        names.add(head)
        dotted = re.match(r"[\w.]+", field)
        if dotted and "." in dotted.group(0):
            names.add(dotted.group(0))
    return names, inner


def chain_of(node: ast.expr) -> str | None:
    """``a.b.c`` for an attribute chain on a name (or the name alone), else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def last_name(node: ast.expr) -> str:
    """The last part of a name or an attribute chain on one (``lru_cache`` for
    ``functools.lru_cache``), else ``""``."""
    chain = chain_of(node)
    return chain.rpartition(".")[2] if chain else ""


def called_names(node: ast.AST, *, bodies: bool = False) -> set[str]:
    """Names the statement calls while it runs (``f()``, ``m.f()``, ``@f``, ``@f(...)``; not
    inside the functions it defines, unless ``bodies``: what a def calls when it is called):
    what it computed came from their code."""
    out: set[str] = set()
    for n in ast.walk(node) if bodies else _walk_no_scopes(node):
        if isinstance(n, ast.Call):
            chain = chain_of(n.func)  # f(), util.build(), Cls.make()
            if chain is not None:
                out.add(chain)
        if isinstance(n, DEF_TYPES | ast.ClassDef):
            out |= {c for c in map(chain_of, n.decorator_list) if c is not None}
    return out


def own_code_changed(old: Def, new: Def) -> bool:
    """Whether a def whose text changed now runs other statements itself, not only other
    functions it defines (:func:`outer_code`, worked out only where there is anything to
    leave out: most defs define no function and cast nothing)."""
    for node in (old, new):
        for n in ast.walk(node):
            inner = n is not node and isinstance(n, DEF_TYPES | ast.Lambda)
            if inner or (isinstance(n, ast.Call) and last_name(n.func) == "cast"):
                return outer_code(old) != outer_code(new)
    return True


def names_and_chains(node: ast.AST) -> set[str]:
    """Every name in the tree and every attribute chain on one (``util.build``), functions'
    bodies included: what code may call when it runs."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            chain = chain_of(n)
            if chain is not None:
                out.add(chain)
    return out


def outer_code(node: Def) -> str:
    """A def's dump with the bodies of the functions it defines left out: what a call runs
    itself (the functions it makes get their new code from the upgrade, closures too), and
    ``cast(T, v)`` read as ``v``."""

    class Hollow(ast.NodeTransformer):
        def visit_FunctionDef(self, n: ast.FunctionDef) -> ast.AST:
            return self._hollow(n)

        def visit_AsyncFunctionDef(self, n: ast.AsyncFunctionDef) -> ast.AST:
            return self._hollow(n)

        def visit_Lambda(self, n: ast.Lambda) -> ast.AST:
            return ast.Lambda(self.visit(n.args), ast.Constant(None))

        def _hollow(self, n: ast.AST) -> ast.AST:
            assert isinstance(n, DEF_TYPES)
            new = copy.copy(n)
            new.body = [ast.Pass()]
            new.decorator_list = [self.visit(d) for d in n.decorator_list]
            new.args = self.visit(copy.deepcopy(n.args))
            return new

        def visit_Call(self, n: ast.Call) -> ast.AST:
            # typing.cast(T, v) is v: a release that adds or drops one changes nothing it runs
            if last_name(n.func) == "cast" and len(n.args) == 2 and not n.keywords:
                value: ast.AST = self.visit(n.args[1])
                return value
            return self.generic_visit(n)

    top = copy.copy(node)
    top.body = [Hollow().visit(s) for s in copy.deepcopy(node.body)]
    top.decorator_list = []
    return dump(top)


def all_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def names_in(nodes: Iterable[ast.AST]) -> set[str]:
    out: set[str] = set()
    for n in nodes:
        out |= runtime_names(n)
    return out


def inert(stmt: ast.stmt, module: str) -> bool:
    """A module-level block that never runs when the module is imported: ``if TYPE_CHECKING:``
    (``typing.TYPE_CHECKING`` is False at run time) and ``if __name__ == "__main__":``, both
    without an ``else``. A fresh import runs neither, so the upgrade neither runs nor follows
    them."""
    if not isinstance(stmt, ast.If) or stmt.orelse:
        return False
    test = stmt.test
    if isinstance(test, ast.Name | ast.Attribute):
        last = test.id if isinstance(test, ast.Name) else test.attr
        return last == "TYPE_CHECKING"
    return (
        module != "__main__"
        and isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and {dump(test.left), dump(test.comparators[0])}
        == {dump(ast.Name("__name__", ast.Load())), dump(ast.Constant("__main__"))}
    )


def lazy_annotations(tree: ast.Module) -> bool:
    """``from __future__ import annotations``: annotations are kept as strings, never run."""
    return bool(future_flags(tree) & __future__.annotations.compiler_flag)


def future_flags(tree: ast.Module) -> int:

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
    """``(module, name, alias)`` for every top-level ``from module import name as alias``
    (``(module, "*", "*")`` for ``from module import *``)."""
    for node in _walk_toplevel(body):
        if isinstance(node, ast.ImportFrom):
            base = resolve_from(node, package)
            if base is None:
                continue
            for a in node.names:
                yield base, a.name, a.asname or a.name


def module_aliases(
    body: list[ast.stmt], package: str, modules: set[str]
) -> Iterator[tuple[str, str]]:
    """``(name, module)`` for every top-level statement binding a name to a module of
    ``modules``: ``import a.b`` binds ``a`` (``a.b.X`` reads inside ``a.b``), ``import a.b as
    x`` binds ``x`` to ``a.b``, ``from . import sub`` binds ``sub``."""
    for node in _walk_toplevel(body):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    yield a.asname, a.name
                else:
                    yield a.name.split(".")[0], a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(node, package)
            for a in node.names:
                full = f"{base}.{a.name}" if base else a.name
                if a.name != "*" and full in modules:
                    yield a.asname or a.name, full


def may_import_from(importer: str, text: str, modules: Iterable[str]) -> bool:
    """Whether the source ``text`` of module ``importer`` can import anything of ``modules``:
    a relative import stays inside the importer's top-level package, and an absolute one
    spells the module's top-level name (``import a.b``, ``from a.b import x``). A cheap test
    on the text, so the scans that follow imports parse only the files that pass it."""
    tops = {m.partition(".")[0] for m in modules}
    return importer.partition(".")[0] in tops or any(t in text for t in tops)


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
        if isinstance(stmt, DEF_TYPES | ast.ClassDef):
            continue
        yield stmt
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                yield from _walk_toplevel([child])
            elif isinstance(child, ast.ExceptHandler | ast.match_case):
                yield from _walk_toplevel(child.body)


def toplevel_imports(body: list[ast.stmt]) -> list[ast.stmt]:
    """The ``import`` statements a module body runs at its top level (not ``__future__``)."""
    return [
        node
        for node in _walk_toplevel(body)
        if isinstance(node, ast.Import)
        or (isinstance(node, ast.ImportFrom) and node.module != "__future__")
    ]
