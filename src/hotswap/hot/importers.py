"""Ordering and importers: the order changed modules are committed in, and who imported what.

Modules a changed module imports (and its parent packages) are committed first
(:func:`dependency_order`). For every name an upgrade may rebind, :func:`find_importers` lists
the modules that hold it through a top-level ``from module import name`` (transitively, through
re-exports), so the commit can rebind their copies too.
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

from hotswap.hot.names import from_imports
from hotswap.hot.plan import ModulePlan


def dependency_order(plans: list[ModulePlan]) -> list[ModulePlan]:
    """Modules a changed module imports are committed first (the ``from m import x`` copies a
    module's re-derived statements read are rebound when ``m`` commits), then its parent
    packages, unless a parent imports the module itself (``pkg/__init__`` importing its
    submodules, which import from each other): an import edge wins over a parent edge."""
    by_name = {p.name: p for p in plans}
    out: list[ModulePlan] = []
    state: dict[str, int] = {}

    def imports(p: ModulePlan) -> list[ModulePlan]:
        return [by_name[d] for d in sorted(p.diff.imports) if d in by_name and d != p.name]

    def reaches(start: ModulePlan, target: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            q = stack.pop()
            if q.name == target:
                return True
            if q.name not in seen:
                seen.add(q.name)
                stack.extend(imports(q))
        return False

    def visit(p: ModulePlan) -> None:
        if state.get(p.name):
            return
        state[p.name] = 1
        for q in imports(p):
            visit(q)
        parts = p.name.split(".")
        for parent in (".".join(parts[:i]) for i in range(1, len(parts))):
            pp = by_name.get(parent)
            if pp is not None and not reaches(pp, p.name):
                visit(pp)
        out.append(p)

    for p in plans:
        visit(p)
    return out


def find_importers(
    plans: list[ModulePlan], loaded: dict[str, types.ModuleType]
) -> dict[tuple[str, str], list[tuple[types.ModuleType, str]]]:
    """``{(module, name): [(importer, alias)]}`` for the names an upgrade may rebind: the modules
    holding them through a top-level ``from module import name as alias`` or
    ``from module import *`` (transitively, for re-exports; the commit rebinds a copy only where
    the importer still holds the old object). Only files that mention one of the names, or
    import ``*``, are parsed."""
    wanted: set[tuple[str, str]] = set()
    for p in plans:
        for n in p.diff.rebound:
            wanted.add((p.module.__name__, n))
    edges: dict[tuple[str, str], list[tuple[types.ModuleType, str]]] = {}
    if not wanted:
        return edges
    imports: dict[str, list[tuple[str, str, str]]] = {}
    frontier = set(wanted)
    while frontier:
        names = {n for _m, n in frontier}
        frontier = set()
        for rel, mod in loaded.items():
            if rel not in imports:
                if not rel.endswith(".py"):
                    continue
                try:
                    text = Path(mod.__file__ or "").read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if "import" not in text or not (
                    "import *" in text or any(n in text for n in names)
                ):
                    continue
                try:
                    tree = ast.parse(text)
                except SyntaxError:
                    continue
                is_pkg = rel.endswith("__init__.py")
                pkg = mod.__name__ if is_pkg else mod.__name__.rpartition(".")[0]
                imports[rel] = list(from_imports(tree.body, pkg))
            for src_mod, name, alias in imports[rel]:
                if name == "*":  # every name it exported, under the same name
                    found = [(n, n) for m, n in list(wanted) if m == src_mod]
                elif (src_mod, name) in wanted:
                    found = [(name, alias)]
                else:
                    continue
                for name, alias in found:
                    targets = edges.setdefault((src_mod, name), [])
                    if (mod, alias) not in targets:
                        targets.append((mod, alias))
                    key = (mod.__name__, alias)
                    if key not in wanted:
                        wanted.add(key)
                        frontier.add(key)
    return edges


def star_importers(
    plans: list[ModulePlan], loaded: dict[str, types.ModuleType]
) -> dict[str, list[types.ModuleType]]:
    """``{module: [importer]}``: the loaded modules that run ``from module import *`` at their
    top level, for every loaded module once any module changes (the commit gives importers the
    names a module now exports and takes away the ones it no longer does, and passes that on
    to *their* star importers: ``pkg/__init__`` star-imports ``core``, which star-imports
    ``exceptions``)."""
    out: dict[str, list[types.ModuleType]] = {}
    if not plans:
        return out
    names = {mod.__name__ for mod in loaded.values()}
    for rel, mod in loaded.items():
        if not rel.endswith(".py"):
            continue
        try:
            text = Path(mod.__file__ or "").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "import *" not in text:
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        pkg = mod.__name__ if rel.endswith("__init__.py") else mod.__name__.rpartition(".")[0]
        for src_mod, name, _alias in from_imports(tree.body, pkg):
            if name == "*" and src_mod in names and mod not in out.get(src_mod, []):
                out.setdefault(src_mod, []).append(mod)
    return out
