"""Prepare: everything that can be done before the suspension window, against the live process.

Given the :class:`~hotswap.hot.check.Analysis` of two releases, this step

1. finds the modules the process imported from the old release (by file, under its ``lib/``);
2. compiles every changed module whole (from the shipped ``.pyc`` when it matches the source,
   else from source) and indexes its code objects by ``(qualname, rank)``, so each live function
   can be given the code compiled from the same ``def`` in the new file;
3. compiles each :mod:`~hotswap.hot.diff` op into a small code object: the statements that will
   run in the live namespace, the decorator-less copies of changed ``def``\\s (their defaults and
   annotations are evaluated in the window, in the right scope), and one *fragment* per changed
   class (:mod:`.fragment`);
4. walks the heap once (:class:`~hotswap.hot.heap.HeapIndex`) for the functions of the changed
   modules and the instances of the classes whose state will be migrated, then checks what only
   live objects can tell (a closure that would need a value for a new free variable, an enum
   losing a member, a dataclass field nobody can fill, a metaclass that derives state);
5. finds, for names the upgrade may rebind, the modules that imported them with ``from m import``.

Any refusal raises ``ChildError("hot_upgrade_refused")`` and nothing has been touched.
"""

from __future__ import annotations

import abc
import ast
import contextlib
import sys
import types
import typing
from itertools import chain, compress

from hotswap.errors import ChildError
from hotswap.hot.check import Analysis
from hotswap.hot.codeobjects import (
    CodeMap,
    closure_for,
    function_patches,
    load_code,
    resolve,
    source_vsn,
)
from hotswap.hot.datafiles import data_changes
from hotswap.hot.fragment import Capture, NameAllocator, compile_statements, fragment, stripped
from hotswap.hot.heap import HeapIndex, unaccounted
from hotswap.hot.importers import (
    ModuleValues,
    Sources,
    dependency_order,
    find_importers,
    star_importers,
)
from hotswap.hot.layout import classify, same_bases
from hotswap.hot.plan import (
    ClassStep,
    DefStep,
    Exec,
    ExecStep,
    ModuleDiff,
    ModulePlan,
    PatchClass,
    PatchDef,
    Prepared,
)
from hotswap.hot.rebuild import NotPure, rebuild
from hotswap.hot.startup import startup_refusals
from hotswap.hot.tree import PathMap, module_attr
from hotswap.hot.verdict import BLUE_GREEN, Reason

_SELF = "hotswap"  # the engine never patches its own modules while it runs


# -- entry point ------------------------------------------------------------------------------


def loaded_modules(paths: PathMap) -> dict[str, types.ModuleType]:
    """``{path relative to lib: module}`` for every module imported from the old ``lib``."""
    out: dict[str, types.ModuleType] = {}
    for mod in list(sys.modules.values()):
        f = module_attr(mod, "__file__")
        if isinstance(f, str):
            rel = paths.relative(f)
            if rel:
                out[rel] = mod
    return out


def refuse(reasons: list[Reason], warnings: list[str] | None = None) -> ChildError:
    text = "; ".join(r.message for r in reasons)
    return ChildError(
        "hot_upgrade_refused",
        f"cannot hot-upgrade ({BLUE_GREEN}): {text}",
        reasons=[r.to_json() for r in reasons],
        warnings=list(warnings or ()),
    )


def prepare(
    analysis: Analysis,
    paths: PathMap,
    loaded: dict[str, types.ModuleType],
    values: ModuleValues | None = None,
    *,
    early: HeapIndex | None = None,
    registries: dict[int, list[object]] | None = None,
) -> Prepared:
    """Build the commit plan for ``analysis`` against this process. Taken already, before the
    analysis: ``values``, the modules' values; ``early``, the functions of every module of the
    app, if the heap was walked for them (:meth:`HeapIndex.early`; this takes it over);
    ``registries``, :func:`code_registries`. Raises a refusal."""
    reasons: list[Reason] = []
    warnings = list(analysis.warnings)
    plans: list[ModulePlan] = []
    migrate: list[type] = []
    changed = analysis.diff.modules("changed")
    targets: list[tuple[str, str, types.ModuleType]] = []
    for name in analysis.modules:
        rel = changed.get(name) or analysis.derived.get(name) or analysis.moved[name][0]
        mod = loaded.get(rel[len("lib/") :])
        if mod is None:
            continue
        if name == _SELF or name.startswith(_SELF + "."):
            warnings.append(f"{name} changed; the running hot upgrader does not patch itself")
            continue
        targets.append((name, rel, mod))
    # what the changed statements rebind, and what holds it besides the namespaces: counted
    # before any plan, which holds values of its own (a container rebuilt to compare)
    rebound, olds = rebound_values([(n, mod, analysis.modules[n]) for n, _r, mod in targets])
    owned = [values.ids] if values is not None else []
    if early is not None:
        owned.append(early.owned_ids())
    extra = unaccounted(olds, [vars(m) for m in loaded.values()], owned)
    olds = [v for v in olds if id(v) in extra]  # the others: no copy, and no walk for them
    for name, rel, mod in targets:
        plan = _plan_module(analysis, name, rel, mod, analysis.modules[name], reasons)
        if plan is not None:
            plans.append(plan)
            migrate.extend(plan.migrate_classes)
            migrate.extend(cls for cls, _why in plan.state_guards)
            migrate.extend(cls for cls, _why in plan.replace_guards if not _typed_dict(cls))
            _check_bases(plan, reasons)
    containers = _check_containers(plans, reasons)
    reasons += startup_refusals(analysis)
    data_hooks = data_changes(analysis, loaded, reasons)
    _check_module_layout(analysis, loaded, reasons)
    if reasons:
        raise refuse(reasons, warnings)
    plans = dependency_order(plans)
    packages = [m for m in loaded.values() if isinstance(module_attr(m, "__path__"), list)]
    removed: list[tuple[str, types.ModuleType]] = []
    gone = {rel[len("lib/") :] for rel in analysis.diff.removed}
    by_id = {id(m): k for k, m in sys.modules.items()}
    moved = {old_rel[len("lib/") :] for old_rel, _new in analysis.moved.values()}
    for rel, mod in loaded.items():
        if rel in gone and rel not in moved and id(mod) in by_id:
            removed.append((by_id[id(mod)], mod))
    # Heap: functions of changed modules; instances of classes to migrate or to fill.
    wanted: set[type] = set()
    for cls in migrate:
        wanted |= _with_subclasses(cls)
    dicts = [p.module.__dict__ for p in plans]
    if early is not None and plans and not wanted and early.covers(dicts):
        index = early
        index.narrow(dicts)
    else:
        if early is not None:
            early.release()
        index = HeapIndex(dicts, wanted, olds)
        index.walks = early.walks if early is not None else 0
        if plans:
            index.scan()
    for p in plans:
        index.walk_module(p.module)
    guards = [g for p in plans for g in p.state_guards]
    replaced = [g for p in plans for g in p.replace_guards]
    try:
        for p in plans:
            _check_closures(p, index, reasons)
        reasons += live_instance_refusals(guards, index)
        reasons += replaced_class_refusals(replaced, index)
        reasons += copied_value_refusals(rebound, index.holders_of(olds, extra), index)
        if reasons:
            raise refuse(reasons, warnings)
        sources = Sources(loaded, values)
        importers = find_importers(plans, loaded, sources)
    except BaseException:
        index.release()
        raise
    if index.frozen:
        warnings.append(
            f"gc.freeze() hides {index.frozen} objects from the heap walk: closures and "
            "instances among them are not updated (module and class functions still are)"
        )
    planned = {p.name for p in plans}
    return Prepared(
        analysis,
        plans,
        paths,
        loaded,
        packages,
        removed,
        index,
        warnings,
        importers,
        guards=guards,
        replaced=replaced,
        data_hooks=data_hooks,
        code_registries=code_registries(loaded, sources.values)
        if registries is None
        else registries,
        star_importers=star_importers(plans, loaded, sources),
        containers=containers,
        unplanned=frozenset(
            n for n, rel in changed.items() if rel[len("lib/") :] not in loaded and n not in planned
        ),
    )


def code_registries(
    loaded: dict[str, types.ModuleType], values: ModuleValues | None = None
) -> dict[int, list[object]]:
    """Module-level sets, dicts and lists of the app that hold code objects (jinja2 keeps
    ``f.__code__`` of its internal functions in a set): ``{id(code): [container]}``.

    Every module's values are looked at, tens of thousands in a large app, so each test runs
    in C (``map``, ``compress``): Python sees only the containers, once each, and of them only
    those that hold a code object."""
    out: dict[int, list[object]] = {}
    code_type = types.CodeType
    # by exact type, never isinstance: a failed isinstance looks up the value's __class__,
    # an attribute lookup per value (most of this function's time on a large app), and a
    # subclass may not be a plain registry anyway
    plain = frozenset((set, list, dict)).__contains__
    every = (values or ModuleValues(loaded)).values
    candidates: list[typing.Any] = list(compress(every, map(plain, map(type, every))))
    by_id = dict(zip(map(id, candidates), candidates, strict=True))  # a container once
    dicts = [v.values() for v in by_id.values() if type(v) is dict]
    with contextlib.suppress(RuntimeError):  # a size changed meanwhile: each one below
        if code_type not in set(map(type, chain(*by_id.values(), *dicts))):
            return out  # the usual case: no container holds code, one pass over them all
    for value in by_id.values():
        kind = type(value)
        try:  # changed size while looked at (another thread): looked at item by item below
            if code_type not in set(map(type, value)) and not (
                kind is dict and code_type in set(map(type, value.values()))
            ):
                continue
        except RuntimeError:
            pass
        items = list(value) + list(value.values()) if kind is dict else list(value)
        for item in items:
            if type(item) is code_type:
                holders = out.setdefault(id(item), [])
                if not any(h is value for h in holders):
                    holders.append(value)
    return out


# values a module-level statement binds that another object may have copied (read at run time:
# a settings object, a cached property, a resolver), and the containers among them, which are
# held by identity only where they were put
_DATA = frozenset({str, bytes, int, float, bool, type(None), tuple, frozenset, list, dict, set})
_CONTAINERS = frozenset({list, dict, set})
_MISSING = object()


def rebound_values(
    modules: list[tuple[str, types.ModuleType, ModuleDiff]],
) -> tuple[dict[int, list[tuple[str, str]]], list[object]]:
    """The values the changed statements of these modules (name, live module, diff) rebind
    that another object may have copied: by id, the (module, name) pairs holding each; and
    the values, once each."""
    rebound: dict[int, list[tuple[str, str]]] = {}
    olds: list[object] = []
    for module_name, module, md in modules:
        namespace = module.__dict__
        for op in md.plan.ops:
            if not isinstance(op, Exec):
                continue
            for name in sorted(op.names - op.keep):
                old = namespace.get(name, _MISSING)
                if type(old) not in _DATA:
                    continue
                if id(old) not in rebound:
                    olds.append(old)
                rebound.setdefault(id(old), []).append((module_name, name))
    return rebound, olds


def _data_values(modules: list[types.ModuleType]) -> list[object]:
    """The values of these namespaces (not dunder names) of the types a changed statement may
    rebind and another object copy, each once. A function of its own: a loop variable left in
    the caller's frame would be one more reference to count."""
    seen: set[int] = set()
    out: list[object] = []
    for mod in modules:
        for name, v in vars(mod).items():
            if type(v) in _DATA and id(v) not in seen and name[:2] != "__":
                seen.add(id(v))
                out.append(v)
    return out


EARLY_VALUES = 8  # most values whose holders a walk before the analysis looks for
# a value with more references than this unaccounted for is shared by the interpreter (None,
# True, a small int, an interned name): everything holds it, and it is not looked for early
SHARED = 64


def early_values(
    loaded: dict[str, types.ModuleType], snapshot: ModuleValues, package: str
) -> tuple[list[object], dict[int, int]]:
    """For a walk of the heap made before the analysis (:meth:`HeapIndex.early`): the values
    an upgrade may rebind (data, not dunder names) in the modules of the app's own ``package``
    that something besides the namespaces holds (:func:`unaccounted`), with how many
    references; none of those ``SHARED`` by the interpreter, and none at all if more than
    ``EARLY_VALUES`` are held (each target slows the walk: then prepare walks for the holders
    of those the upgrade does rebind)."""
    own = [m for rel, m in loaded.items() if rel.partition("/")[0].removesuffix(".py") == package]
    values = _data_values(own)
    counts = unaccounted(values, [vars(m) for m in loaded.values()], [snapshot.ids])
    held = {i: n for i, n in counts.items() if 0 < n <= SHARED}
    if len(held) > EARLY_VALUES:
        return [], {}
    return [v for v in values if id(v) in held], held


def copied_value_refusals(
    rebound: dict[int, list[tuple[str, str]]], holders: list[object], index: HeapIndex
) -> list[Reason]:
    """``derived_state`` for each value a changed statement rebinds (:func:`rebound_values`)
    that an object outside the module namespaces holds (``holders``: what refers to them): a
    list, dict or set anywhere (a resolver caching ``urlpatterns``), anything else under the
    same name in an object that holds another of the module's values under its name too
    (``django.conf.settings`` copies every setting so). That copy was taken when something read
    it at run time, and a fresh start would take the new value; rebinding the module's name
    would not change it. Module namespaces are not copies (the commit rebinds its importers),
    nor are class dicts and the keyword defaults of the changed modules' functions (the plan
    re-derives those)."""
    skip = {
        id(fn.__kwdefaults__)
        for fns in index.functions.values()
        for fn in fns
        if fn.__kwdefaults__ is not None
    }
    out: list[Reason] = []
    seen: set[tuple[str, str]] = set()
    for holder in holders:
        attrs = _namespace_of(holder)
        if attrs is None or id(attrs) in skip:
            continue
        items = list(dict.items(attrs))
        for key, value in items:
            for module, name in rebound.get(id(value), ()):
                if (module, name) in seen:
                    continue
                if type(value) not in _CONTAINERS:
                    # a str or a number is the same object in many places: a copy is a holder
                    # of this one under its name and of at least one more of the module's
                    namespace = sys.modules[module].__dict__
                    if key != name or sum(namespace.get(k, _MISSING) is v for k, v in items) < 2:
                        continue
                seen.add((module, name))
                out.append(
                    Reason(
                        "derived_state",
                        f"{module}.{name} was copied (under {key!r}) into an object that read it "
                        "at run time: a settings object, a cache, a resolver. Rebinding "
                        f"{module}.{name} would not change that copy, as a fresh start would",
                        subject=f"{module}.{name}",
                    )
                )
    return out


def _namespace_of(holder: object) -> dict[str, object] | None:
    """The attributes of an object that may hold a copy: a dict itself, or an instance's
    (Python 3.11 keeps them in the object until asked); None for a module's, a class's or a
    function's namespace, and for anything without one."""
    kind = type(holder)
    if issubclass(kind, dict):
        attrs: typing.Any = holder
    elif kind in (types.ModuleType, types.FunctionType) or issubclass(kind, type):
        return None
    else:  # through the slot type gives every class with one, never a __dict__ property's code
        slot = next((vars(k)["__dict__"] for k in kind.__mro__ if "__dict__" in vars(k)), None)
        if type(slot) is not types.GetSetDescriptorType:
            return None
        attrs = slot.__get__(holder)
        if not issubclass(type(attrs), dict):
            return None
    if dict.__contains__(attrs, "__module__") and dict.__contains__(attrs, "__doc__"):
        return None  # a class's namespace
    if dict.__contains__(attrs, "__name__") and dict.__contains__(attrs, "__spec__"):
        return None  # a module's, one no longer in sys.modules too
    return typing.cast(dict[str, object], attrs)


def live_instance_refusals(guards: list[tuple[type, str]], index: HeapIndex) -> list[Reason]:
    """``instance_state`` for each class whose changed methods shape instance state anew while
    instances made by the old code are alive (and the class defines no ``__code_change__``)."""
    out: list[Reason] = []
    for cls, why in guards:
        n = sum(len(objs) for t, objs in index.instances.items() if issubclass(t, cls))
        if n:
            where = f"{cls.__module__}.{cls.__qualname__}"
            out.append(
                Reason(
                    "instance_state",
                    f"{where}: {why}, and {n} live instance(s) hold the old state; define "
                    "__code_change__(self, old_vsn, extra) in the class to migrate them",
                    subject=where,
                )
            )
    return out


def replaced_class_refusals(replaced: list[tuple[type, str]], index: HeapIndex) -> list[Reason]:
    """``class_layout`` for each class made anew (its layout changed) that has live instances
    or subclasses: they were made from the old class and would keep it."""
    out: list[Reason] = []
    for cls, why in replaced:
        n = 0  # a TypedDict's instances are plain dicts
        if not _typed_dict(cls):
            n = sum(len(objs) for t, objs in index.instances.items() if issubclass(t, cls))
        subs = _subclass_names(cls)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if n or subs:
            held = f"{n} live instance(s)" if n else f"subclasses {', '.join(subs[:3])}"
            out.append(
                Reason(
                    "class_layout",
                    f"{why}; the class would be made anew, and {held} of the old one would keep it",
                    subject=where,
                )
            )
    return out


def _typed_dict(cls: type) -> bool:
    return type(cls) is getattr(typing, "_TypedDictMeta", None)


def _subclass_names(cls: type) -> list[str]:
    try:
        found: list[type] = type.__subclasses__(cls)
    except TypeError:
        return []
    return [c.__qualname__ for c in found]


def _check_containers(
    plans: list[ModulePlan], reasons: list[Reason]
) -> list[tuple[dict[str, object], str, object, object, Reason]]:
    """An unchanged statement that made a container is run again only if the live container
    holds exactly what the statement makes from the live names (nobody filled it)."""
    out: list[tuple[dict[str, object], str, object, object, Reason]] = []
    for plan in plans:
        d = plan.module.__dict__
        for op, reason in plan.diff.plan.containers:
            (name,) = op.names
            value = getattr(op.node, "value", None)
            live = d.get(name)
            try:
                made = rebuild(value, d) if isinstance(value, ast.expr) else None
            except (NotPure, Exception):
                made = None
            if made is None or type(made) is not type(live) or made != live:
                reasons.append(reason)
            else:
                out.append((d, name, live, made, reason))
    return out


def _check_module_layout(
    a: Analysis, loaded: dict[str, types.ModuleType], reasons: list[Reason]
) -> None:
    """A loaded module that becomes a package (``m.py`` → ``m/__init__.py``) or the reverse."""
    added, removed = a.diff.modules("added"), a.diff.modules("removed")
    for name in sorted(added.keys() & removed.keys()):
        if removed[name][len("lib/") :] in loaded and name not in a.moved:
            reasons.append(
                Reason(
                    "module_layout",
                    f"{name}: {removed[name]} became {added[name]} (a module and a package "
                    "are different objects)",
                    subject=name,
                )
            )


def _check_bases(plan: ModulePlan, reasons: list[Reason]) -> None:
    """Bases spelled differently (``t.Generic`` → ``typing.Generic``) must be the same objects."""
    for qualname, dotted in plan.diff.base_checks:
        cls = resolve(plan.module, qualname)
        if not (isinstance(cls, type) and same_bases(plan.module, cls, dotted)):
            where = f"{plan.name}.{qualname}"
            reasons.append(
                Reason(
                    "class_layout",
                    f"{where}: its bases changed to {', '.join(dotted)}, which are not the "
                    "classes it was made from (instances would need a new layout)",
                    subject=where,
                )
            )


# -- one module ------------------------------------------------------------------------------


def _plan_module(
    a: Analysis, name: str, rel: str, mod: types.ModuleType, md: ModuleDiff, reasons: list[Reason]
) -> ModulePlan | None:
    new_rel = a.moved[name][1] if name in a.moved else rel
    old_bytes = a.old.source(rel)
    new_bytes = a.new.source(new_rel)
    old_path = a.old.root / rel
    new_path = a.new.root / new_rel
    old_code = load_code(old_path, old_bytes)
    new_code = load_code(new_path, new_bytes)
    plan = ModulePlan(
        name=name,
        rel=rel,
        module=mod,
        diff=md,
        new_file=new_path,
        old_hash=source_vsn(old_bytes),
        new_hash=source_vsn(new_bytes),
        codes=CodeMap(old_code, new_code, md.plan),
    )
    filename = str(new_path)
    flags = md.future_flags
    names = NameAllocator()
    for op in md.plan.ops:
        if isinstance(op, Exec):
            plan.steps.append(
                ExecStep(op, compile_statements([op.node], filename, flags, md.import_nodes))
            )
        elif isinstance(op, PatchDef):
            temp = names.next()
            node = stripped(op.node, temp, op.why != "annotations")
            code = compile_statements([node], filename, flags, md.import_nodes)
            plan.steps.append(DefStep(op, temp, code))
        else:
            cls = mod.__dict__.get(op.name)
            cstep = _class_step(mod, op, cls, names, reasons, md)
            if cstep is None:
                continue
            frag = fragment(cstep, capture_name="__hotswap_capture__")
            cstep.code = compile_statements([frag], filename, flags, md.import_nodes)
            plan.steps.append(cstep)
    for name, why in md.plan.replaced:
        cls = _unwrapped(mod.__dict__.get(name))
        if isinstance(cls, type) and cls.__qualname__ == name:
            plan.replace_guards.append((cls, why))
        else:
            reasons.append(
                Reason("not_found", f"{plan.name}.{name}: the running module has no such class")
            )
    replaced = {name for name, _why in md.plan.replaced}
    for op in md.plan.ops:  # a changed block (`if`, `try`) defining classes makes them anew
        if not isinstance(op, Exec) or isinstance(op.node, ast.ClassDef) or op.why != "added":
            continue
        for name in sorted(op.names - op.keep - replaced):
            cls = mod.__dict__.get(name)
            if (
                isinstance(cls, type)
                and cls.__module__ == mod.__name__
                and cls.__qualname__ == name
            ):
                why = (
                    f"{plan.name}.{name}: the statement defining it (line {op.lineno}) changed "
                    "and runs again, making the class anew"
                )
                plan.replace_guards.append((cls, why))
    for qualname in md.code_change_classes:
        cls = resolve(mod, qualname)
        if isinstance(cls, type):
            plan.migrate_classes.append(cls)
    for step in plan.steps:
        if isinstance(step, ClassStep):
            for cs in step.walk():
                if cs.added_fields:
                    plan.migrate_classes.append(cs.cls)
                shape = cs.op.body.state_shape
                if shape and cs.op.qualname not in md.code_change_classes:
                    plan.state_guards.append((cs.cls, "; ".join(shape)))
                if cs.op.body.fills:
                    plan.migrate_classes.append(cs.cls)
    return plan


def _class_step(
    mod: types.ModuleType,
    op: PatchClass,
    cls: object,
    names: NameAllocator,
    reasons: list[Reason],
    md: ModuleDiff,
) -> ClassStep | None:
    where = f"{mod.__name__}.{op.qualname}"
    cls = _unwrapped(cls)
    if not isinstance(cls, type) or cls.__qualname__ != op.qualname:
        reasons.append(
            Reason("not_found", f"{where}: the running module has no such class", subject=where)
        )
        return None
    defs: list[DefStep] = []
    children: list[ClassStep] = []
    for sub in op.body.ops:
        if isinstance(sub, PatchDef):
            defs.append(DefStep(sub, names.next(), None))
        elif isinstance(sub, PatchClass):
            child = _class_step(mod, sub, cls.__dict__.get(sub.name), names, reasons, md)
            if child is not None:
                children.append(child)
    capture = Capture(
        cls,
        {f"__hotswap_capture_{c.op.name}__": c.capture for c in children},
        op.body.first_bound,
    )
    step = ClassStep(op, cls, capture, defs, children)
    step.abstract = isinstance(cls, abc.ABCMeta)
    classify(step, md, reasons, where)
    return step


def _unwrapped(obj: object) -> object:
    """A class its unchanged decorators wrapped with ``functools.wraps`` (markdown's
    ``@deprecated(...)`` binds a function whose ``__wrapped__`` is the class): the class."""
    for _ in range(8):
        if isinstance(obj, type):
            break
        d = getattr(obj, "__dict__", None)
        inner = d.get("__wrapped__") if isinstance(d, dict) else None
        if inner is None:
            break
        obj = inner
    return obj


def _check_closures(plan: ModulePlan, index: HeapIndex, reasons: list[Reason]) -> None:
    seen: set[int] = set()
    plan.patches = list(function_patches(plan, index))  # the window adds only newer functions
    for fn, code in plan.patches:
        cells = closure_for(fn, code, plan.module)
        if isinstance(cells, str) and id(code) not in seen:
            seen.add(id(code))
            where = f"{plan.name}.{code.co_qualname}"
            reasons.append(Reason("closure", f"{plan.name}: {cells}", subject=where))


def _with_subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    stack = [cls]
    while stack:
        c = stack.pop()
        if c in out:
            continue
        out.add(c)
        with contextlib.suppress(TypeError):
            stack.extend(c.__subclasses__())
    return out
