"""Commit: apply a prepared plan to the live process, inside the suspension window.

Order of work (each write recorded in the :class:`~hotswap.hot.journal.Journal` first):

1. pick up objects created since prepare (young generations only, see :mod:`.heap`);
2. switch ``sys.path``, package ``__path__`` lists and the changed modules' ``__file__``/
   ``__spec__``/``__loader__`` from the old release's ``lib/`` to the new one, so any import from
   here on (new modules included) reads the new files;
3. give every live function of every changed module the code compiled from the same ``def`` in
   the new file (closures rebuilt by free-variable name; a ``__class__`` cell is added for a
   method that newly uses ``super()``). All references — ``from`` imports, registered routes,
   callbacks, decorator wrappers holding the function — run the new code on their next call;
4. per module, in dependency order: run the new and changed statements in source order,
   re-evaluate the defaults and annotations of changed ``def``\\s, apply class fragments to the
   live classes (new methods and attributes, enum members created as members of the *same*
   enum class, dataclasses re-processed, ABC abstract sets updated), unbind removed names, and
   rebind the names other modules imported with ``from m import x`` if ``x`` now is another object;
5. drop modules whose files are gone;
6. migrate state: new dataclass fields filled on live instances, then module-level
   ``__code_change__(old_vsn, extra)``, then ``__code_change__(self, old_vsn, extra)`` on live
   instances of classes defining it. ``old_vsn`` is the old ``__vsn__`` (module or class), else a
   hash of the old module source. If a module or class sets ``__vsn__`` explicitly and it did not
   change, its ``__code_change__`` is not called.

Frames already running (a request half-way through a handler, a suspended generator or
coroutine) finish on the code they started with, as in Erlang; their next call runs new code.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import dataclasses
import enum
import importlib
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hotswap.errors import ChildError
from hotswap.hot import closure
from hotswap.hot.codeobjects import closure_for, function_patches, functions_of_def
from hotswap.hot.datafiles import HOOK as DATA_HOOK
from hotswap.hot.journal import MISSING, Journal, record_sys_modules
from hotswap.hot.plan import (
    CODE_CHANGE,
    ClassStep,
    DefStep,
    Exec,
    ExecStep,
    ModulePlan,
    PatchClass,
    PatchDef,
    Prepared,
)
from hotswap.hot.prepare import live_instance_refusals, refuse

_DATACLASS_GENERATED = (
    "__init__",
    "__repr__",
    "__eq__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__hash__",
    "__setattr__",
    "__delattr__",
    "__match_args__",
)

Checkpoint = Callable[[str], None]


class Replan(Exception):
    """A changed module was first imported after prepare: plan again (nothing was changed)."""


@dataclass
class Counts:
    functions_patched: int = 0
    classes_patched: int = 0
    statements_run: int = 0
    names_removed: int = 0
    importers_rebound: int = 0
    enum_members_added: int = 0
    fields_filled: int = 0
    modules_migrated: int = 0
    data_hooks_run: int = 0
    instances_migrated: int = 0
    modules_added: tuple[str, ...] = ()
    modules_removed: tuple[str, ...] = ()


class Commit:
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
        return self.counts

    # -- paths ----------------------------------------------------------------------------------

    def _remap(self, path: str) -> str | None:
        return self._paths.remap(path)

    def _switch_paths(self) -> None:
        j = self.j
        for i, entry in enumerate(list(sys.path)):
            new = self._remap(entry) if isinstance(entry, str) else None
            if new is not None:
                sys.path[i] = new
        for pkg in self.p.packages:
            paths = [pkg.__path__]
            spec = getattr(pkg, "__spec__", None)
            locs = getattr(spec, "submodule_search_locations", None)
            if isinstance(locs, list) and locs is not pkg.__path__:
                paths.append(locs)
            for lst in paths:
                j.snapshot_container(lst)
                for i, entry in enumerate(list(lst)):
                    new = self._remap(entry) if isinstance(entry, str) else None
                    if new is not None:
                        lst[i] = new
        for plan in self.p.modules:
            self._switch_file(plan.module, j)
        importlib.invalidate_caches()

    def _switch_file(self, mod: types.ModuleType, j: Journal | None) -> None:
        """Point a module's file attributes at the new release (journaled when ``j`` is given)."""
        f = getattr(mod, "__file__", None)
        new = self._remap(f) if isinstance(f, str) else None
        if new is None or (j is None and not os.path.exists(new)):
            return
        set_ = j.setattr if j is not None else setattr
        set_(mod, "__file__", new)
        if isinstance(getattr(mod, "__cached__", None), str):
            with contextlib.suppress(NotImplementedError, ValueError):
                set_(mod, "__cached__", importlib.util.cache_from_source(new))
        spec = getattr(mod, "__spec__", None)
        if spec is not None and isinstance(spec.origin, str) and self._remap(spec.origin):
            set_(spec, "origin", new)
            if spec.has_location and isinstance(spec.cached, str):
                with contextlib.suppress(NotImplementedError, ValueError):
                    set_(spec, "cached", importlib.util.cache_from_source(new))
        loader = getattr(mod, "__loader__", None)
        lpath = getattr(loader, "path", None)
        if isinstance(lpath, str) and self._remap(lpath):
            set_(loader, "path", new)

    def finish_paths(self) -> None:
        """After a successful commit, outside the window: point the modules that did not change
        at the new release too (same bytes, so nothing can go wrong and nothing is journaled)."""
        done = {id(plan.module) for plan in self.p.modules}
        for mod in self.p.loaded.values():
            if id(mod) not in done:
                self._switch_file(mod, None)

    def _from_old(self, mod: types.ModuleType) -> bool:
        f = getattr(mod, "__file__", None)
        return isinstance(f, str) and self._paths.relative(f) is not None

    def _is_new(self, name: str) -> bool:
        f = getattr(sys.modules.get(name), "__file__", None)
        return isinstance(f, str) and f.startswith(self._new_prefix)

    # -- functions ------------------------------------------------------------------------------

    def _patch_functions(self, plan: ModulePlan) -> None:
        for fn, code in list(function_patches(plan, self.p.index)):
            self.step(f"code:{plan.name}:{code.co_qualname}")
            cells = closure_for(fn, code, plan.module)
            if isinstance(cells, str):
                raise ChildError("hot_upgrade_failed", f"{plan.name}: {cells}", step="code")
            self.j.snapshot_function(fn)
            old = fn.__code__
            closure.set_closure(fn, cells, code)
            self.counts.functions_patched += 1
            for holder in self.p.code_registries.get(id(old), ()):
                self._swap_code(holder, old, code)

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
            fn.__defaults__ = new.__defaults__
            fn.__kwdefaults__ = new.__kwdefaults__
            # in place: functools.wraps shares this dict with the wrappers made from fn
            self.j.snapshot_dict(fn.__annotations__)
            fn.__annotations__.clear()
            fn.__annotations__.update(new.__annotations__)
            fn.__doc__ = new.__doc__
            fn.__dict__.update(new.__dict__)
            for wrapper in self.p.index.wrappers.get(id(fn), ()):
                # what functools.wraps copied when it made the wrapper, it copies again
                if getattr(wrapper, "__doc__", None) == old_doc and old_doc != new.__doc__:
                    with contextlib.suppress(AttributeError, TypeError):
                        self.j.setattr(wrapper, "__doc__", new.__doc__)
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
        self, d: dict[str, Any], before: dict[str, Any], importers: list[types.ModuleType]
    ) -> None:
        """``from m import *`` importers get what ``m`` now exports, lose what it no longer
        does (where they still hold the old object); rebound names went through _rebind."""
        now, was = _exported(d), _exported(before)
        for importer in importers:
            idict = importer.__dict__
            for name in now:
                if name not in idict and name in d:
                    self.j.snapshot_namespace(idict)
                    idict[name] = d[name]
                    self.counts.importers_rebound += 1
            for name in was - now:
                if name in idict and idict[name] is before.get(name, MISSING):
                    self.j.snapshot_namespace(idict)
                    del idict[name]

    def _apply_class(self, plan: ModulePlan, cs: ClassStep) -> None:
        ns = cs.capture.ns
        if ns is None:
            raise ChildError("hot_upgrade_failed", f"{cs.op.qualname}: class fragment did not run")
        cls, j, body = cs.cls, self.j, cs.op.body
        j.snapshot_class(cls)
        cell = ns.get("__classcell__")
        if cell is not None:
            cell.cell_contents = cls
        if cs.kind == "enum":
            for attr in (
                "_member_names_",
                "_member_map_",
                "_value2member_map_",
                "_unhashable_values_",
            ):
                container = cls.__dict__.get(attr)
                if container is not None:
                    j.snapshot_container(container)
        defs = {id(s.op): s for s in cs.defs}
        children = {id(c.op): c for c in cs.children}
        for op in body.ops:
            if isinstance(op, Exec):
                for name in sorted(op.names - op.keep):
                    if name not in ns:
                        if name in cls.__dict__:
                            type.__delattr__(cls, name)
                    elif cs.kind == "enum" and _member_like(cls, name, ns[name]):
                        _add_member(cls, name, ns[name])
                        self.counts.enum_members_added += 1
                    else:
                        value = ns[name]
                        type.__setattr__(cls, name, value)
                        # what type.__new__ would have done for a descriptor defined in the body
                        set_name = getattr(type(value), "__set_name__", None)
                        if set_name is not None:
                            set_name(value, cls, name)
            elif isinstance(op, PatchDef):
                self._copy_def(plan, op, ns[defs[id(op)].temp])
            elif isinstance(op, PatchClass) and id(op) in children:
                self._apply_class(plan, children[id(op)])
        for name in body.removed:
            if name in cls.__dict__:
                type.__delattr__(cls, name)
                self.counts.names_removed += 1
        changed_doc, doc = body.doc
        if changed_doc:
            type.__setattr__(cls, "__doc__", doc)
        if body.annotations is not None:
            ann = ns.get("__annotations__", {})
            type.__setattr__(
                cls, "__annotations__", {n: ann[n] for n in body.annotations if n in ann}
            )
        if cs.kind == "dataclass":
            self._redo_dataclass(plan, cs)
        if cs.abstract:
            abc.update_abstractmethods(cls)
        self.counts.classes_patched += 1

    def _redo_dataclass(self, plan: ModulePlan, cs: ClassStep) -> None:
        cls, body = cs.cls, cs.op.body
        assert cs.dataclass_kwargs is not None
        kwargs = eval(cs.dataclass_kwargs, plan.module.__dict__)
        old_fields: dict[str, dataclasses.Field[Any]] = cls.__dict__["__dataclass_fields__"]
        for name in _DATACLASS_GENERATED:
            if name in cls.__dict__ and name not in body.defined:
                type.__delattr__(cls, name)
        if cs.op.node and body.doc[1] is None:
            type.__setattr__(cls, "__doc__", None)
        executed: set[str] = set()
        for op in body.ops:
            if isinstance(op, Exec):
                executed |= op.names
        own = inspect.get_annotations(cls)
        for name, f in old_fields.items():
            if name in own and name not in executed:
                type.__setattr__(cls, name, copy.copy(f))
        result: object = dataclasses.dataclass(cls, **kwargs)
        if result is not cls:
            raise ChildError(
                "hot_upgrade_failed", f"{cls.__qualname__}: @dataclass returned a new class"
            )

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

    # -- state migration ------------------------------------------------------------------------

    def _instances(self, cls: type) -> list[object]:
        out: list[object] = []
        for t, objs in self.p.index.instances.items():
            if issubclass(t, cls):
                out.extend(objs)
        return out

    def _migrate(self, vsn_old: dict[str, object], class_vsn_old: dict[type, object]) -> None:
        j = self.j
        for plan in self.p.modules:
            for item in plan.steps:
                if not isinstance(item, ClassStep):
                    continue
                for cs in item.walk():
                    if cs.added_fields:
                        self._fill_fields(cs)
        for plan in self.p.modules:
            d = plan.module.__dict__
            hook = d.get(CODE_CHANGE)
            old = vsn_old[plan.name]
            new = d.get("__vsn__", MISSING)
            if not plan.diff.code_change or not callable(hook):
                continue
            if old is not MISSING and old == new:
                continue
            self.step(f"code_change:{plan.name}")
            hook(plan.old_hash if old is MISSING else old, self.extra)
            self.counts.modules_migrated += 1
        for pkg, files in self.p.data_hooks:
            hook = getattr(pkg, DATA_HOOK, None)
            if not callable(hook):
                raise ChildError("hot_upgrade_failed", f"{pkg.__name__}.{DATA_HOOK} is gone")
            self.step(f"data_change:{pkg.__name__}")
            j.snapshot_namespace(pkg.__dict__, set(pkg.__dict__))
            self._switch_file(pkg, j)  # so the hook finds the new files next to __file__
            hook(list(files), self.extra)
            self.counts.data_hooks_run += 1
        done: set[int] = set()
        for plan in self.p.modules:
            mod_old = vsn_old[plan.name]
            default = plan.old_hash if mod_old is MISSING else mod_old
            for cls in plan.migrate_classes:
                if CODE_CHANGE not in cls.__dict__:
                    continue
                old = class_vsn_old.get(cls, MISSING)
                new = cls.__dict__.get("__vsn__", MISSING)
                if old is not MISSING and old == new:
                    continue
                vsn = default if old is MISSING else old
                self.step(f"code_change:{cls.__qualname__}")
                for obj in self._instances(cls):
                    if id(obj) in done:
                        continue
                    done.add(id(obj))
                    j.snapshot_instance(obj)
                    getattr(obj, CODE_CHANGE)(vsn, self.extra)
                    self.counts.instances_migrated += 1

    def _fill_fields(self, cs: ClassStep) -> None:
        fields: dict[str, dataclasses.Field[Any]] = cs.cls.__dict__["__dataclass_fields__"]
        self.step(f"fill:{cs.cls.__qualname__}")
        for obj in self._instances(cs.cls):
            d = getattr(obj, "__dict__", None)
            for name in cs.added_fields:
                f = fields.get(name)
                if f is None or (isinstance(d, dict) and name in d):
                    continue
                if f.default is not dataclasses.MISSING:
                    value = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    value = f.default_factory()
                else:
                    continue
                self.j.snapshot_instance(obj)
                object.__setattr__(obj, name, value)
                self.counts.fields_filled += 1


def _exported(d: dict[str, Any]) -> set[str]:
    """The names ``from m import *`` takes from a module namespace."""
    names = d.get("__all__")
    if isinstance(names, list | tuple):
        return {n for n in names if isinstance(n, str)}
    return {n for n in d if not n.startswith("_")}


# -- enums ------------------------------------------------------------------------------------


def _member_like(cls: type, name: str, value: object) -> bool:
    if name.startswith("_"):
        return False  # dunder, sunder and private names are never members
    ignore = cls.__dict__.get("_ignore_", ())
    if isinstance(ignore, str):
        ignore = ignore.split()
    if name in ignore or isinstance(value, type):
        return False
    t = type(value)
    return not (hasattr(t, "__get__") or hasattr(t, "__set__") or hasattr(t, "__delete__"))


def _add_member(cls: Any, name: str, value: object) -> None:
    """Create ``name`` as a member of the live enum ``cls`` (same class: identities hold)."""
    if isinstance(value, enum.auto):
        value = value.value
        if value is getattr(enum, "_auto_null", None):
            last = [m._value_ for m in cls._member_map_.values()]
            value = cls._generate_next_value_(name, 1, len(cls._member_names_), last)
    proto = enum._proto_member(value)  # type: ignore[attr-defined]
    type.__setattr__(cls, name, proto)
    proto.__set_name__(cls, name)
