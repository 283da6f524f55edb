"""Ordering and importers: the order changed modules are committed in, and who imported what.

Modules a changed module imports (and its parent packages) are committed first
(:func:`dependency_order`). For every name an upgrade may rebind, :func:`find_importers` lists
the modules that hold it through a top-level ``from module import name`` (transitively, through
re-exports), so the commit can rebind their copies too.
"""

from __future__ import annotations

import ast
import contextlib
import types
from itertools import chain, compress, repeat
from pathlib import Path
from typing import Any

from hotswap.hot.names import from_imports, may_import_from
from hotswap.hot.plan import ModulePlan
from hotswap.hot.tree import class_module


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


class ModuleValues:
    """Every value of every loaded module's namespace in one flat list, with the module each
    came from: taken once per prepare (a worker of several takes it while the first worker
    still analyses), then each scan of all of them is one pass in C."""

    def __init__(self, loaded: dict[str, types.ModuleType]) -> None:
        per = [list(vars(mod).values()) for mod in loaded.values()]
        self.values: list[object] = list(chain.from_iterable(per))
        self.owners: list[str] = list(chain.from_iterable(map(repeat, loaded, map(len, per))))
        self.ids = list(map(id, self.values))  # stable: the values are held

    def holders(self, objects: list[object]) -> set[str]:
        """The modules whose namespace holds one of ``objects`` (by identity)."""
        contains = {id(o) for o in objects}.__contains__
        return set(compress(self.owners, map(contains, self.ids)))


class Sources:
    """What the scans of one prepare read of the loaded modules, each once: the source text
    of each (``None``: not a readable ``.py`` file) and their namespaces' values."""

    def __init__(
        self, loaded: dict[str, types.ModuleType], values: ModuleValues | None = None
    ) -> None:
        self.loaded = loaded
        self._text: dict[str, str | None] = {}
        self.values = values if values is not None else ModuleValues(loaded)

    def text(self, rel: str) -> str | None:
        if rel not in self._text:
            text = None
            if rel.endswith(".py"):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    text = Path(self.loaded[rel].__file__ or "").read_text(encoding="utf-8")
            self._text[rel] = text
        return self._text[rel]

    def holders(self, objects: list[object]) -> set[str]:
        """The loaded modules whose namespace holds one of ``objects`` (by identity). A module
        that imported one with ``from m import name`` (or ``*``) and still holds it is among
        them; one that holds none has nothing the commit would rebind, so its source need not
        be read."""
        return self.values.holders(objects)


def _exports(mod: types.ModuleType) -> list[object]:
    """Values ``from mod import *`` binds (of ``__all__``, else of the public names): the
    functions and classes defined in ``mod`` if it exports any (few modules hold those), else
    all of them."""
    d = vars(mod)
    names = d.get("__all__")
    if isinstance(names, list | tuple):
        values = [d[n] for n in names if isinstance(n, str) and n in d]
    else:
        values = [v for k, v in list(d.items()) if not k.startswith("_")]
    own: list[object] = [v for v in values if _defined_in(v) == mod.__name__]
    return own or values


def _defined_in(value: Any) -> object:
    """The ``__module__`` of a function or class, read without running any ``__getattr__``
    or ``__getattribute__`` of its metaclass (pydantic's, typing's deprecated aliases'); None
    for anything else."""
    if type(value) is types.FunctionType:
        return value.__module__
    if issubclass(type(value), type):  # never the value's own __class__
        return class_module(value)
    return None


def _top_imports(rel: str, mod: types.ModuleType, text: str) -> list[tuple[str, str, str]]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    pkg = mod.__name__ if rel.endswith("__init__.py") else mod.__name__.rpartition(".")[0]
    return list(from_imports(tree.body, pkg))


def find_importers(
    plans: list[ModulePlan], loaded: dict[str, types.ModuleType], sources: Sources | None = None
) -> dict[tuple[str, str], list[tuple[types.ModuleType, str]]]:
    """``{(module, name): [(importer, alias)]}`` for the names an upgrade may rebind: the modules
    holding them through a top-level ``from module import name as alias`` or
    ``from module import *`` (transitively, for re-exports; the commit rebinds a copy only where
    the importer still holds the old object). Only the files of modules that hold one of the
    objects (:meth:`Sources.holders`), mention one of the names or import ``*``, and can
    import one of the modules (``may_import_from``) are read and parsed."""
    sources = sources or Sources(loaded)
    wanted: set[tuple[str, str]] = set()
    for p in plans:
        for n in p.diff.rebound:
            wanted.add((p.module.__name__, n))
    edges: dict[tuple[str, str], list[tuple[types.ModuleType, str]]] = {}
    if not wanted:
        return edges
    imports: dict[str, list[tuple[str, str, str]]] = {}
    # the objects the commit may replace: an importer that holds none of them is left alone
    holders = sources.holders(
        [p.module.__dict__[n] for p in plans for n in p.diff.rebound if n in p.module.__dict__]
    )
    frontier = set(wanted)
    while frontier:
        names = {n for _m, n in frontier}
        modules = {m for m, _n in frontier}
        frontier = set()
        for rel, mod in loaded.items():
            if rel not in imports:
                if rel not in holders:
                    continue
                text = sources.text(rel)
                if (
                    text is None
                    or "import" not in text
                    or not ("import *" in text or any(n in text for n in names))
                    or not may_import_from(mod.__name__, text, modules)
                ):
                    continue
                imports[rel] = _top_imports(rel, mod, text)
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
    plans: list[ModulePlan], loaded: dict[str, types.ModuleType], sources: Sources | None = None
) -> dict[str, list[types.ModuleType]]:
    """``{module: [importer]}``: the loaded modules that run ``from module import *`` at their
    top level, for the changed modules and, in turn, for their star importers (the commit
    gives importers the names a module now exports and takes away the ones it no longer does,
    and passes that on to *their* star importers: ``pkg/__init__`` star-imports ``core``,
    which star-imports ``exceptions``). Only the files of modules that hold something those
    modules export, import ``*`` and can import one of them (``may_import_from``) are read
    and parsed."""
    sources = sources or Sources(loaded)
    out: dict[str, list[types.ModuleType]] = {}
    frontier = {p.module.__name__ for p in plans}
    seen = set(frontier)
    stars: dict[str, tuple[types.ModuleType, list[str]]] = {}  # rel -> (module, star sources)
    by_name = {mod.__name__: mod for mod in loaded.values()}
    while frontier:
        modules, frontier = frontier, set()
        # a star importer holds what those modules export; where one exports nothing, every
        # file that imports * is read
        exports = [_exports(by_name[m]) for m in modules if m in by_name]
        holders = None
        if exports and all(exports):
            holders = sources.holders([v for e in exports for v in e])
        for rel, mod in loaded.items():
            if rel in stars or (holders is not None and rel not in holders):
                continue
            text = sources.text(rel)
            if (
                text is None
                or "import *" not in text
                or not may_import_from(mod.__name__, text, modules)
            ):
                continue
            stars[rel] = (mod, [m for m, n, _a in _top_imports(rel, mod, text) if n == "*"])
        for mod, srcs in stars.values():
            for src_mod in srcs:
                if src_mod in seen and mod not in out.get(src_mod, []):
                    out.setdefault(src_mod, []).append(mod)
                    if mod.__name__ not in seen:
                        seen.add(mod.__name__)
                        frontier.add(mod.__name__)
    return out
