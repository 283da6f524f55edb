"""Commit: apply a prepared plan to the live process, inside the suspension window.

Order of work (each write recorded in the :class:`~hotswap.hot.journal.Journal` first):

1. re-plan if a changed module was imported since prepare (:class:`Replan`, nothing written);
   pick up objects created since prepare (young generations only, see :mod:`.heap`) and refuse
   if a class guarded for ``instance_state`` now has live instances;
2. switch ``sys.path``, package ``__path__`` lists and the changed modules' ``__file__``/
   ``__spec__``/``__loader__`` from the old release's ``lib/`` to the new one, so any import from
   here on (new modules included) reads the new files;
3. give every live function of every changed module the code compiled from the same ``def`` in
   the new file (closures rebuilt by free-variable name; a ``__class__`` cell is added for a
   method that newly uses ``super()``); module-level registries of code objects follow. All
   references — ``from`` imports, registered routes, callbacks, decorator wrappers holding the
   function — run the new code on their next call;
4. per module, in dependency order: unbind removed names, run the new, changed and re-derived
   statements in source order, re-evaluate the defaults and annotations of changed defs,
   apply class fragments to the live classes (:mod:`.classes`), and rebind the names other
   modules imported with ``from m import x`` or ``from m import *`` if ``x`` now is another
   object;
5. drop modules whose files are gone;
6. migrate state (:mod:`.migrate`).

Frames already running (a request half-way through a handler, a suspended generator or
coroutine) finish on the code they started with, as in Erlang; their next call runs new code.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from hotswap.errors import ChildError
from hotswap.hot import closure
from hotswap.hot.classes import ClassPatching
from hotswap.hot.codeobjects import closure_for, function_patches, functions_of_def
from hotswap.hot.journal import MISSING, Journal, record_sys_modules
from hotswap.hot.migrate import StateMigration
from hotswap.hot.plan import (
    DefStep,
    Exec,
    ExecStep,
    ModulePlan,
    PatchDef,
    Prepared,
)
from hotswap.hot.prepare import live_instance_refusals, refuse, replaced_class_refusals
from hotswap.hot.stats import Counts
from hotswap.hot.tree import LIB, PathMap, module_attr

Checkpoint = Callable[[str], None]


class Replan(Exception):
    """A changed module was first imported after prepare: plan again (nothing was changed)."""


class Commit(ClassPatching, StateMigration):
    """One application of a :class:`~hotswap.hot.plan.Prepared` plan."""

    def __init__(
        self,
        prepared: Prepared,
        journal: Journal,
        *,
        extra: Any = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.p = prepared
        self.j = journal
        self.extra = extra
        self._hook = checkpoint
        self.counts = Counts()
        self._paths = prepared.paths
        self._new_prefix = os.path.join(str(prepared.analysis.new.lib), "")
        self._patched: list[tuple[str, types.FunctionType]] = []  # (module, function)
        self._new_code: dict[str, set[str]] = {}  # module -> names of functions given new code

    def step(self, name: str) -> None:
        if self._hook is not None:
            self._hook(name)

    def run(self) -> Counts:
        p, j = self.p, self.j
        late = [n for n in p.unplanned & sys.modules.keys() if self._from_old(sys.modules[n])]
        if late:
            raise Replan(f"imported since prepare: {', '.join(sorted(late))}")
        self.step("catch_up")
        p.index.catch_up()
        live = live_instance_refusals(p.guards, p.index)
        live += replaced_class_refusals(p.replaced, p.index)
        live += [r for d, n, obj, made, r in p.containers if d.get(n) is not obj or obj != made]
        if live:
            raise refuse(live)
        record_sys_modules(j)
        j.snapshot_container(sys.path)
        j.record(importlib.invalidate_caches)
        before_modules = set(sys.modules)
        vsn_old: dict[str, object] = {}
        class_vsn_old: dict[type, object] = {}
        for plan in p.modules:
            d = plan.module.__dict__
            j.snapshot_namespace(d, set(plan.diff.touched))
            vsn_old[plan.name] = d.get("__vsn__", MISSING)
            for cls in plan.migrate_classes:
                class_vsn_old[cls] = cls.__dict__.get("__vsn__", MISSING)
        self._was: dict[str, dict[str, object]] = {}  # `x += ...` targets' objects now
        for plan in p.modules:
            for op in plan.diff.plan.ops:
                if isinstance(op, Exec) and op.fresh_target is not None:
                    was = self._was.setdefault(plan.name, {})
                    was[op.fresh_target] = plan.module.__dict__.get(op.fresh_target, MISSING)
        self._guarded: dict[str, dict[str, object]] = {}  # the guarded names' objects now
        for plan in p.modules:
            for names, _reason in plan.diff.plan.guards:
                seen = self._guarded.setdefault(plan.name, {})
                seen.update((n, _lookup(plan.module.__dict__, n)) for n in names)
        self.step("paths")
        self._switch_paths()
        for plan in p.modules:
            self._patch_functions(plan)
        for plan in p.modules:
            self._apply_module(plan)
        self._drop_removed()
        self.counts.modules_added = tuple(
            sorted(n for n in set(sys.modules) - before_modules if self._is_new(n))
        )
        self._migrate(vsn_old, class_vsn_old)
        self._clear_caches()  # last: it cannot be undone, and nothing after it can fail
        return self.counts

    # -- paths ----------------------------------------------------------------------------------

    def _remap(self, path: str) -> str | None:
        return self._paths.remap(path)

    def _switch_paths(self) -> None:
        j = self.j
        for lst, before, after in self.p.path_lists:
            if lst is not sys.path:
                j.snapshot_container(lst)  # sys.path is, in run()
            if type(lst) is list and lst == before:  # as prepared: new entries worked out then
                lst[:] = after
                continue
            for i, entry in enumerate(list(lst)):  # changed since: mapped here
                new = self._remap(entry) if isinstance(entry, str) else None
                if new is not None:
                    lst[i] = new
        for plan in self.p.modules:
            if plan.name in self.p.analysis.moved:
                self._make_package(plan, j)
            else:
                self._switch_file(plan.module, j)
        importlib.invalidate_caches()

    def _make_package(self, plan: ModulePlan, j: Journal) -> None:
        """``m.py`` became ``m/__init__.py``: the live module object becomes that package
        (``__path__``, ``__package__``, a package's spec), so ``from .sub import x`` in its
        new statements and ``import m.sub`` anywhere find the new submodules."""
        mod, init = plan.module, str(plan.new_file)
        spec = importlib.util.spec_from_file_location(
            plan.name, init, submodule_search_locations=[os.path.dirname(init)]
        )
        if spec is None or spec.submodule_search_locations is None:
            raise ChildError("hot_upgrade_failed", f"{plan.name}: no package spec for {init}")
        j.setattr(mod, "__file__", init)
        j.setattr(mod, "__path__", spec.submodule_search_locations)
        j.setattr(mod, "__package__", plan.name)
        j.setattr(mod, "__spec__", spec)
        j.setattr(mod, "__loader__", spec.loader)
        if isinstance(module_attr(mod, "__cached__"), str):
            with contextlib.suppress(NotImplementedError, ValueError):
                j.setattr(mod, "__cached__", importlib.util.cache_from_source(init))

    def _switch_file(self, mod: types.ModuleType, j: Journal) -> None:
        """Point a module's file attributes at the new release, journaled."""
        for obj, attr, value in file_attributes(mod, self._paths):
            j.setattr(obj, attr, value)

    def finish_paths(self) -> None:
        """After a successful commit, outside the window: point the modules that did not change
        at the new release too (same bytes, so nothing can go wrong and nothing is journaled).
        With several workers this waits until every worker has answered (``hot_finish``): it is
        CPU a worker still waiting for its decision would lose."""
        for obj, attr, value in file_updates(self.p):
            setattr(obj, attr, value)

    def _from_old(self, mod: types.ModuleType) -> bool:
        f = module_attr(mod, "__file__")
        return isinstance(f, str) and self._paths.relative(f) is not None

    def _is_new(self, name: str) -> bool:
        f = module_attr(sys.modules.get(name), "__file__")
        return isinstance(f, str) and f.startswith(self._new_prefix)

    # -- functions ------------------------------------------------------------------------------

    def _patch_functions(self, plan: ModulePlan) -> None:
        late = list(function_patches(plan, self.p.index, self.p.index.late))
        for fn, code in plan.patches + late:
            self.step(f"code:{plan.name}:{code.co_qualname}")
            cells = closure_for(fn, code, plan.module)
            if isinstance(cells, str):
                raise ChildError("hot_upgrade_failed", f"{plan.name}: {cells}", step="code")
            self.j.snapshot_function(fn)
            old = fn.__code__
            closure.set_closure(fn, cells, code)
            self.counts.functions_patched += 1
            self._patched.append((plan.name, fn))
            if _shape(old) != _shape(code):
                self._new_code.setdefault(plan.name, set()).add(code.co_name)
            for holder in self.p.code_registries.get(id(old), ()):
                self._swap_code(holder, old, code)

    def _clear_caches(self) -> None:
        """``functools.lru_cache``/``cache`` wrappers of functions that now run other code hold
        results the old code computed; a fresh import starts them empty, so they are emptied.
        Other code: the function's own code changed (not only its lines), or it names a
        function of its module whose code changed, or a name the upgrade rebinds."""
        changed_in: dict[int, set[str]] = {
            id(p.module.__dict__): self._new_code.get(p.name, set()) | set(p.diff.rebound)
            for p in self.p.modules
        }
        functions = [fn for fns in self.p.index.functions.values() for fn in fns]
        cleared: set[int] = set()
        for fn in functions + [fn for _m, fn in self._patched]:
            changed = changed_in.get(id(fn.__globals__), set())
            if not changed:
                continue
            for wrapper in self.p.index.wrappers.get(id(fn), ()):
                clear = getattr(wrapper, "cache_clear", None)
                if not isinstance(wrapper, _LRU) or not callable(clear):
                    continue
                if (fn.__code__.co_name in changed or _reads(fn.__code__) & changed) and id(
                    wrapper
                ) not in cleared:
                    cleared.add(id(wrapper))
                    clear()
                    self.counts.caches_cleared += 1

    def _swap_code(self, holder: object, old: types.CodeType, new: types.CodeType) -> None:
        """A registry of code objects (``INTERNAL.add(f.__code__)``) follows the function."""
        self.j.snapshot_container(holder)
        if isinstance(holder, set):
            if old in holder:
                holder.discard(old)
                holder.add(new)
        elif isinstance(holder, dict):
            if old in holder:
                holder[new] = holder.pop(old)
            for key, value in holder.items():
                if value is old:
                    holder[key] = new
        elif isinstance(holder, list):
            holder[:] = [new if x is old else x for x in holder]

    def _copy_def(self, plan: ModulePlan, op: PatchDef, new: object) -> None:
        if not isinstance(new, types.FunctionType):
            raise ChildError(
                "hot_upgrade_failed", f"{plan.name}.{op.qualname}: re-evaluation gave {new!r}"
            )
        for fn in functions_of_def(plan, self.p.index, op.qualname, op.old_firstlineno):
            self.j.snapshot_function(fn)
            old_doc, old_ann = fn.__doc__, dict(fn.__annotations__)
            if op.why == "annotations":  # `from __future__ import annotations` was added
                self._copy_annotations(fn, new, old_ann)
                continue
            fn.__defaults__ = new.__defaults__
            fn.__kwdefaults__ = new.__kwdefaults__
            fn.__doc__ = new.__doc__
            fn.__dict__.update(new.__dict__)
            for wrapper in self.p.index.wrappers.get(id(fn), ()):
                # what functools.wraps copied when it made the wrapper, it copies again
                if getattr(wrapper, "__doc__", None) == old_doc and old_doc != new.__doc__:
                    with contextlib.suppress(AttributeError, TypeError):
                        self.j.setattr(wrapper, "__doc__", new.__doc__)
            self._copy_annotations(fn, new, old_ann)

    def _copy_annotations(
        self, fn: types.FunctionType, new: types.FunctionType, old_ann: dict[str, Any]
    ) -> None:
        # in place: functools.wraps shares this dict with the wrappers made from fn
        self.j.snapshot_dict(fn.__annotations__)
        fn.__annotations__.clear()
        fn.__annotations__.update(new.__annotations__)
        for wrapper in self.p.index.wrappers.get(id(fn), ()):
            ann = getattr(wrapper, "__annotations__", None)
            if isinstance(ann, dict) and ann is not fn.__annotations__ and ann == old_ann:
                self.j.snapshot_dict(ann)
                ann.clear()
                ann.update(new.__annotations__)

    # -- statements and classes -----------------------------------------------------------------

    def _apply_module(self, plan: ModulePlan) -> None:
        d = plan.module.__dict__
        body = plan.diff.plan
        stars = self.p.star_importers.get(plan.name, [])
        before = dict(d) if plan.diff.rebound or stars else {}
        for names, reason in body.guards:  # the modules it imports from committed already
            was = self._guarded.get(plan.name, {})
            moved = sorted(n for n in names if _lookup(d, n) is not was.get(n, MISSING))
            if moved:
                raise ChildError(
                    "hot_upgrade_failed",
                    f"{reason.message} ({', '.join(moved)} got a new object)",
                    step="derived",
                    reasons=[reason.to_json()],
                )
        # Names the new release no longer binds go first, as they would not exist in a fresh
        # import: a new statement may bind them again (a call setting them through ``global``).
        self.step(f"remove:{plan.name}")
        for name in body.removed:
            if name in d and not (name.startswith("__") and name.endswith("__")):
                del d[name]
                self.counts.names_removed += 1
        for item in plan.steps:
            if isinstance(item, ExecStep):
                self.step(f"exec:{plan.name}:{item.op.lineno}")
                kept = {n: d[n] for n in item.op.keep if n in d}
                target = item.op.fresh_target
                if target is not None and d.get(target, MISSING) is self._was[plan.name][target]:
                    raise ChildError(
                        "hot_upgrade_failed",
                        f"{plan.name} line {item.op.lineno}: `{target} += ...` would run again "
                        f"on the object it already ran on ({target} got no new object)",
                        step="derived",
                    )
                exec(item.code, d)
                d.update(kept)  # a later statement, not run again, binds these
                self.counts.statements_run += 1
            elif isinstance(item, DefStep):
                assert item.code is not None
                self.step(f"def:{plan.name}:{item.op.qualname}")
                scratch: dict[str, Any] = {}
                exec(item.code, d, scratch)
                self._copy_def(plan, item.op, scratch[item.temp])
            else:
                assert item.code is not None
                self.step(f"class:{plan.name}:{item.op.qualname}")
                exec(item.code, d, {"__hotswap_capture__": item.capture})
                self._apply_class(plan, item)
        changed_doc, doc = body.doc
        if changed_doc:
            d["__doc__"] = doc
        if plan.diff.rebound:
            self.step(f"rebind:{plan.name}")
            self._rebind(plan, before)
        if stars:
            self._star_exports(d, before, stars)

    def _star_exports(
        self,
        d: dict[str, Any],
        before: dict[str, Any],
        importers: list[types.ModuleType],
        seen: frozenset[int] = frozenset(),
    ) -> None:
        """``from m import *`` importers get what ``m`` now exports, lose what it no longer
        does (where they still hold the old object), and pass that on to their own star
        importers; rebound names went through _rebind."""
        now, was = _exported(d), _exported(before)
        for importer in importers:
            idict = importer.__dict__
            if id(idict) in seen:
                continue  # an import cycle
            was_there = dict(idict)
            for name in now:
                if name not in idict and name in d:
                    self.j.snapshot_namespace(idict)
                    idict[name] = d[name]
                    self.counts.importers_rebound += 1
            for name in was - now:
                if name in idict and idict[name] is before.get(name, MISSING):
                    self.j.snapshot_namespace(idict)
                    del idict[name]
            onward = self.p.star_importers.get(importer.__name__, [])
            if onward and idict.keys() != was_there.keys():
                self._star_exports(idict, was_there, onward, seen | {id(d)})

    def _rebind(self, plan: ModulePlan, before: dict[str, Any]) -> None:
        d = plan.module.__dict__
        work: list[tuple[str, str, object, object]] = []
        for name in plan.diff.rebound:
            old, new = before.get(name, MISSING), d.get(name, MISSING)
            if old is not MISSING and new is not MISSING and old is not new:
                work.append((plan.module.__name__, name, old, new))
        while work:
            mod_name, name, old, new = work.pop()
            for importer, alias in self.p.importers.get((mod_name, name), ()):
                idict = importer.__dict__
                if idict.get(alias, MISSING) is old:
                    self.j.snapshot_namespace(idict)
                    idict[alias] = new
                    self.counts.importers_rebound += 1
                    work.append((importer.__name__, alias, old, new))

    def _drop_removed(self) -> None:
        dropped = []
        for key, mod in self.p.removed:
            self.step(f"drop:{key}")
            if sys.modules.get(key) is mod:
                del sys.modules[key]
                dropped.append(key)
            parent_name, _, leaf = key.rpartition(".")
            parent = sys.modules.get(parent_name) if parent_name else None
            if parent is not None and parent.__dict__.get(leaf) is mod:
                self.j.snapshot_namespace(parent.__dict__)
                del parent.__dict__[leaf]
        self.counts.modules_removed = tuple(sorted(dropped))


_LRU = type(functools.lru_cache(lambda: None))


def _shape(code: types.CodeType) -> tuple[object, ...]:
    return (code.co_code, code.co_names, code.co_consts)


def _reads(code: types.CodeType) -> set[str]:
    """Global and attribute names a function's code (and the code nested in it) reads."""
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _reads(const)
    return out


def _exported(d: dict[str, Any]) -> set[str]:
    """The names ``from m import *`` takes from a module namespace."""
    names = d.get("__all__")
    if isinstance(names, list | tuple):
        return {n for n in names if isinstance(n, str)}
    return {n for n in d if not n.startswith("_")}


def _lookup(namespace: dict[str, Any], name: str) -> object:
    """The object ``name`` reaches from ``namespace``: a name, or ``a.X`` inside the modules
    and classes it names (their own dicts: no descriptor runs)."""
    first, *rest = name.split(".")
    obj = namespace.get(first, MISSING)
    for part in rest:
        inner = getattr(obj, "__dict__", None) if isinstance(obj, types.ModuleType | type) else None
        obj = inner.get(part, MISSING) if inner is not None else MISSING
    return obj


def file_attributes(
    mod: types.ModuleType, paths: PathMap, record: dict[str, str] | None = None
) -> list[tuple[object, str, str]]:
    """``(object, attribute, value)`` that point a module's ``__file__``, ``__cached__``, spec
    and loader at the new release; with ``record`` (the new release's), only if it has the
    file. Run for every module of the app at the end of an upgrade, so a spec or loader path
    equal to one already mapped is not mapped again."""
    f = module_attr(mod, "__file__")
    rel = paths.relative(f) if isinstance(f, str) else None
    if not rel or (record is not None and f"{LIB}/{rel}" not in record):
        return []
    new = paths.new_path(rel)
    out: list[tuple[object, str, str]] = [(mod, "__file__", new)]
    cached = module_attr(mod, "__cached__")
    moved_cached = None
    if isinstance(cached, str) and (moved_cached := _cached(paths, cached, new)) is not None:
        out.append((mod, "__cached__", moved_cached))
    spec = module_attr(mod, "__spec__")
    origin = getattr(spec, "origin", None)
    if (
        spec is not None
        and isinstance(origin, str)
        and (origin == f or paths.relative(origin) is not None)
    ):
        out.append((spec, "origin", new))
        if spec.has_location and isinstance(spec.cached, str):
            moved = moved_cached if spec.cached == cached else _cached(paths, spec.cached, new)
            if moved is not None:
                out.append((spec, "cached", moved))
    loader = module_attr(mod, "__loader__")
    lpath = getattr(loader, "path", None)
    if isinstance(lpath, str) and (lpath == f or paths.relative(lpath) is not None):
        out.append((loader, "path", new))
    return out


def file_updates(p: Prepared) -> list[tuple[object, str, str]]:
    """:func:`file_attributes` of every loaded module the upgrade does not change."""
    planned = {id(plan.module) for plan in p.modules}
    record = p.analysis.new.record
    return [
        update
        for mod in p.loaded.values()
        if id(mod) not in planned
        for update in file_attributes(mod, p.paths, record)
    ]


def plan_paths(p: Prepared) -> None:
    """Work out at prepare the path lists the window switches to the new release
    (``sys.path``, each package's ``__path__`` and its spec's search locations), so the window
    only assigns them."""
    lists: list[Any] = [sys.path]  # lists, and a namespace package's _NamespacePath
    for pkg in p.packages:
        paths = pkg.__path__
        lists.append(paths)
        locs = getattr(getattr(pkg, "__spec__", None), "submodule_search_locations", None)
        if isinstance(locs, list) and locs is not paths:
            lists.append(locs)
    for lst in lists:
        before = list(lst)
        after = [(p.paths.remap(e) or e) if isinstance(e, str) else e for e in before]
        p.path_lists.append((lst, before, after))


def _cached(paths: PathMap, old: str, new: str) -> str | None:
    """The bytecode path of ``new``: the old one moved to the new release where it was beside
    its source (string work only), else what the import system computes."""
    moved = paths.remap(old)
    if moved is not None:
        return moved
    try:
        return importlib.util.cache_from_source(new)
    except (NotImplementedError, ValueError):
        return None
