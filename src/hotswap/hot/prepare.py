"""Prepare: everything that can be done before the suspension window, against the live process.

Given the :class:`~hotswap.hot.check.Analysis` of two releases, this step

1. finds the modules the process imported from the old release (by file, under its ``lib/``);
2. compiles every changed module whole (from the shipped ``.pyc`` when it matches the source,
   else from source) and indexes its code objects by ``(qualname, rank)``, so each live function
   can be given the code compiled from the same ``def`` in the new file;
3. compiles each :mod:`~hotswap.hot.source` op into a small code object: the statements that will
   run in the live namespace, the decorator-less copies of changed ``def``\\s (their defaults and
   annotations are evaluated in the window, in the right scope), and one *fragment* per changed
   class: a ``class`` statement whose metaclass is a :class:`Capture` that hands the class body a
   copy of the live class's dict and keeps the resulting namespace instead of making a class;
4. walks the heap once (:class:`~hotswap.hot.heap.HeapIndex`) for the functions of the changed
   modules and the instances of the classes whose state will be migrated, then checks what only
   live objects can tell (a closure that would need a value for a new free variable, an enum
   losing a member, a dataclass field nobody can fill, a metaclass that derives state);
5. finds, for names the upgrade may rebind, the modules that imported them with ``from m import``.

Any refusal raises ``ChildError("hot_upgrade_refused")`` and nothing has been touched.
"""

from __future__ import annotations

import _imp
import abc
import ast
import contextlib
import copy
import dataclasses
import enum
import hashlib
import importlib.util
import inspect
import marshal
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotswap.errors import ChildError
from hotswap.hot import closure
from hotswap.hot.check import Analysis
from hotswap.hot.heap import HeapIndex
from hotswap.hot.source import (
    CODE_CHANGE,
    Exec,
    ModuleDiff,
    PatchClass,
    PatchDef,
    from_imports,
)
from hotswap.hot.tree import PathMap
from hotswap.hot.verdict import BLUE_GREEN, Reason

_SELF = "hotswap"  # the engine never patches its own modules while it runs


class Capture:
    """Stands in for a metaclass: runs a class body over a copy of a live class's namespace."""

    def __init__(self, cls: type, children: dict[str, Capture]) -> None:
        self.cls = cls
        self.children = children
        self.ns: dict[str, Any] | None = None

    def __prepare__(self, name: str, bases: tuple[type, ...], **kw: Any) -> dict[str, Any]:
        ns = {k: v for k, v in self.cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        ns["__annotations__"] = inspect.get_annotations(self.cls)
        ns.update(self.children)
        return ns

    def __call__(self, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> Any:
        self.ns = ns
        return self


@dataclass
class DefStep:
    """Re-evaluate a changed ``def`` (no decorators) and copy defaults etc. to live functions."""

    op: PatchDef
    temp: str  # the name the decorator-less copy binds in the scratch/class namespace
    code: types.CodeType | None  # module level: its own code; class level: part of the fragment


@dataclass
class ClassStep:
    op: PatchClass
    cls: type
    capture: Capture
    defs: list[DefStep]
    children: list[ClassStep]
    code: types.CodeType | None = None  # the fragment (outermost class only)
    kind: str = "plain"  # plain | enum | dataclass
    dataclass_kwargs: types.CodeType | None = None
    added_fields: tuple[str, ...] = ()
    abstract: bool = False

    def walk(self) -> Iterator[ClassStep]:
        yield self
        for child in self.children:
            yield from child.walk()


Step = tuple[str, Any]  # ("exec", (code, Exec)) | ("def", DefStep) | ("class", ClassStep)


@dataclass
class ModulePlan:
    """A changed module, ready to commit."""

    name: str
    rel: str
    module: types.ModuleType
    diff: ModuleDiff
    new_file: Path
    old_hash: str
    new_hash: str
    old_keys: dict[tuple[str, int], int]  # (qualname, firstlineno) in the old file -> rank
    new_codes: dict[tuple[str, int], types.CodeType]  # (qualname, rank) in the new file
    steps: list[Step] = field(default_factory=list)
    migrate_classes: list[type] = field(default_factory=list)


@dataclass
class Prepared:
    """Everything the commit needs; built outside the window."""

    analysis: Analysis
    modules: list[ModulePlan]  # in dependency order
    paths: PathMap
    loaded: dict[str, types.ModuleType]  # rel path -> module, for every module of the old lib
    packages: list[types.ModuleType]  # loaded packages with a __path__ under the old lib
    removed: list[tuple[str, types.ModuleType]]  # (sys.modules key, module) whose file is gone
    index: HeapIndex
    warnings: list[str]
    importers: dict[tuple[str, str], list[tuple[types.ModuleType, str]]]
    prepare_ms: float = 0.0

    def release(self) -> None:
        self.index.release()


# -- entry point ------------------------------------------------------------------------------


def loaded_modules(paths: PathMap) -> dict[str, types.ModuleType]:
    """``{path relative to lib: module}`` for every module imported from the old ``lib``."""
    out: dict[str, types.ModuleType] = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
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


def prepare(analysis: Analysis, paths: PathMap, loaded: dict[str, types.ModuleType]) -> Prepared:
    """Build the commit plan for ``analysis`` against this process. Raises a refusal."""
    reasons: list[Reason] = []
    warnings = list(analysis.warnings)
    plans: list[ModulePlan] = []
    migrate: list[type] = []
    changed = analysis.diff.modules("changed")
    for name, md in analysis.modules.items():
        rel = changed[name]
        mod = loaded.get(rel[len("lib/") :])
        if mod is None:
            continue
        if name == _SELF or name.startswith(_SELF + "."):
            warnings.append(f"{name} changed; the running hot upgrader does not patch itself")
            continue
        plan = _plan_module(analysis, name, rel, mod, md, reasons)
        if plan is not None:
            plans.append(plan)
            migrate.extend(plan.migrate_classes)
    if reasons:
        raise refuse(reasons, warnings)
    plans = _dependency_order(plans)
    packages = [m for m in loaded.values() if isinstance(getattr(m, "__path__", None), list)]
    removed: list[tuple[str, types.ModuleType]] = []
    gone = {rel[len("lib/") :] for rel in analysis.diff.removed}
    by_id = {id(m): k for k, m in sys.modules.items()}
    for rel, mod in loaded.items():
        if rel in gone and id(mod) in by_id:
            removed.append((by_id[id(mod)], mod))
    # Heap: functions of changed modules; instances of classes to migrate or to fill.
    wanted: set[type] = set()
    for cls in migrate:
        wanted |= _with_subclasses(cls)
    index = HeapIndex([p.module.__dict__ for p in plans], wanted)
    for p in plans:
        index.walk_module(p.module)
    if plans:
        index.scan()
    try:
        for p in plans:
            _check_closures(p, index, reasons)
        if reasons:
            raise refuse(reasons, warnings)
        importers = find_importers(plans, loaded)
    except BaseException:
        index.release()
        raise
    if index.frozen:
        warnings.append(
            f"gc.freeze() hides {index.frozen} objects from the heap walk: closures and "
            "instances among them are not updated (module and class functions still are)"
        )
    return Prepared(analysis, plans, paths, loaded, packages, removed, index, warnings, importers)


# -- one module ------------------------------------------------------------------------------


def _plan_module(
    a: Analysis, name: str, rel: str, mod: types.ModuleType, md: ModuleDiff, reasons: list[Reason]
) -> ModulePlan | None:
    old_bytes = a.old.source(rel)
    new_bytes = a.new.source(rel)
    old_path = a.old.root / rel
    new_path = a.new.root / rel
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
        old_keys=_ranks(old_code),
        new_codes={(q, r): c for (q, _line), (r, c) in _ranked(new_code).items()},
    )
    filename = str(new_path)
    flags = md.future_flags
    counter = [0]
    for op in md.plan.ops:
        if isinstance(op, Exec):
            code = _compile([op.node], filename, flags)
            plan.steps.append(("exec", (code, op)))
        elif isinstance(op, PatchDef):
            temp = _temp(counter)
            code = _compile([_stripped(op.node, temp)], filename, flags)
            plan.steps.append(("def", DefStep(op, temp, code)))
        else:
            cls = mod.__dict__.get(op.name)
            step = _class_step(mod, op, cls, counter, reasons, md)
            if step is None:
                continue
            frag = _fragment(step, capture_name="__hotswap_capture__")
            step.code = _compile([frag], filename, flags)
            plan.steps.append(("class", step))
    for qualname in md.code_change_classes:
        cls = _resolve(mod, qualname)
        if isinstance(cls, type):
            plan.migrate_classes.append(cls)
    for _kind, step in plan.steps:
        if isinstance(step, ClassStep):
            for cs in step.walk():
                if cs.added_fields:
                    plan.migrate_classes.append(cs.cls)
    return plan


def _class_step(
    mod: types.ModuleType,
    op: PatchClass,
    cls: object,
    counter: list[int],
    reasons: list[Reason],
    md: ModuleDiff,
) -> ClassStep | None:
    where = f"{mod.__name__}.{op.qualname}"
    if not isinstance(cls, type) or cls.__qualname__ != op.qualname:
        reasons.append(
            Reason("not_found", f"{where}: the running module has no such class", subject=where)
        )
        return None
    defs: list[DefStep] = []
    children: list[ClassStep] = []
    for sub in op.body.ops:
        if isinstance(sub, PatchDef):
            defs.append(DefStep(sub, _temp(counter), None))
        elif isinstance(sub, PatchClass):
            child = _class_step(mod, sub, cls.__dict__.get(sub.name), counter, reasons, md)
            if child is not None:
                children.append(child)
    capture = Capture(cls, {f"__hotswap_capture_{c.op.name}__": c.capture for c in children})
    step = ClassStep(op, cls, capture, defs, children)
    step.abstract = isinstance(cls, abc.ABCMeta)
    _classify(step, md, reasons, where)
    return step


def _classify(step: ClassStep, md: ModuleDiff, reasons: list[Reason], where: str) -> None:
    cls, body = step.cls, step.op.body
    execs = [o for o in body.ops if isinstance(o, Exec)]
    state_change = body.annotations is not None or any(
        not isinstance(o.node, ast.FunctionDef | ast.AsyncFunctionDef) for o in execs
    )
    if isinstance(cls, enum.EnumMeta):
        step.kind = "enum"
        members = cls._member_map_
        flag = issubclass(cls, enum.Flag)
        for o in execs:
            for n in o.names & members.keys():
                reasons.append(Reason("enum_members", f"{where}.{n}: enum member changed", where))
        for n in body.removed & members.keys():
            reasons.append(Reason("enum_members", f"{where}.{n}: enum member removed", where))
        if flag and any(not _dunder_or_sunder(n) for o in execs for n in o.names):
            reasons.append(
                Reason("enum_members", f"{where}: members of a Flag cannot change in place", where)
            )
        return
    if "__dataclass_fields__" in cls.__dict__:
        if not state_change:
            return
        step.kind = "dataclass"
        deco = _dataclass_decorator(step.op.node)
        if deco is None:
            reasons.append(
                Reason(
                    "metaclass_state",
                    f"{where}: its fields changed and it is not a plain @dataclasses.dataclass",
                    where,
                )
            )
            return
        step.dataclass_kwargs = deco
        old_fields = set(cls.__dict__["__dataclass_fields__"])
        new_ann = body.annotations or ()
        step.added_fields = tuple(n for n in new_ann if n not in old_fields)
        required = [
            n
            for s in step.op.node.body
            if isinstance(s, ast.AnnAssign)
            and isinstance(s.target, ast.Name)
            and s.value is None
            and (n := s.target.id) in step.added_fields
        ]
        if required and step.op.qualname not in md.code_change_classes:
            reasons.append(
                Reason(
                    "dataclass_fields",
                    f"{where}: new field(s) {', '.join(required)} have no default, so live "
                    "instances cannot get a value (give a default or define __code_change__)",
                    where,
                )
            )
        return
    meta = type(cls)
    if meta not in (type, abc.ABCMeta) and state_change:
        reasons.append(
            Reason(
                "metaclass_state",
                f"{where}: class attributes changed and its metaclass {meta.__qualname__} "
                "derives state when the class is created",
                where,
            )
        )
    elif issubclass(cls, tuple) and hasattr(cls, "_fields") and body.annotations is not None:
        reasons.append(Reason("class_layout", f"{where}: NamedTuple fields changed", where))


def _dataclass_decorator(node: ast.ClassDef) -> types.CodeType | None:
    """Code evaluating to the keyword arguments of the class's ``@dataclass(...)``."""
    for dec in node.decorator_list:
        func = dec.func if isinstance(dec, ast.Call) else dec
        text = ast.unparse(func)
        if text not in ("dataclass", "dataclasses.dataclass"):
            continue
        kws = dec.keywords if isinstance(dec, ast.Call) else []
        expr = ast.Dict(keys=[ast.Constant(k.arg) for k in kws], values=[k.value for k in kws])
        tree = ast.Expression(body=expr)
        ast.fix_missing_locations(tree)
        return compile(tree, "<dataclass>", "eval", dont_inherit=True)
    return None


def _dunder_or_sunder(name: str) -> bool:
    return name.startswith("_") and name.endswith("_")


def _fragment(step: ClassStep, capture_name: str) -> ast.ClassDef:
    """``class C(metaclass=<capture>): <changed statements>`` for one class (and nested ones)."""
    body: list[ast.stmt] = []
    defs = {id(d.op): d for d in step.defs}
    children = {id(c.op): c for c in step.children}
    for op in step.op.body.ops:
        if isinstance(op, Exec):
            body.append(op.node)
        elif isinstance(op, PatchDef):
            body.append(_stripped(op.node, defs[id(op)].temp))
        elif id(op) in children:
            child = children[id(op)]
            body.append(_fragment(child, f"__hotswap_capture_{child.op.name}__"))
    node = step.op.node
    meta = ast.copy_location(ast.Name(capture_name, ast.Load()), node)
    frag = ast.ClassDef(
        name=node.name,
        bases=[],
        keywords=[ast.copy_location(ast.keyword(arg="metaclass", value=meta), node)],
        body=body or [ast.copy_location(ast.Pass(), node)],
        decorator_list=[],
    )
    return ast.copy_location(frag, node)


def _stripped(node: ast.FunctionDef | ast.AsyncFunctionDef, temp: str) -> ast.stmt:
    """A copy of a def without decorators, bound to a temporary name."""
    new = copy.copy(node)
    new.decorator_list = []
    new.name = temp
    return new


def _temp(counter: list[int]) -> str:
    counter[0] += 1
    return f"__hotswap_def_{counter[0]}__"


def _compile(nodes: list[ast.stmt], filename: str, flags: int) -> types.CodeType:
    """Compile statements of the parsed file (they keep their line numbers)."""
    tree = ast.Module(body=nodes, type_ignores=[])
    code: types.CodeType = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
    return code


# -- code objects -----------------------------------------------------------------------------


def source_vsn(data: bytes) -> str:
    """The default ``__vsn__`` of a module: a short hash of its source."""
    return hashlib.sha256(data).hexdigest()[:16]


def load_code(path: Path, source: bytes) -> types.CodeType:
    """The module's code: its ``.pyc`` if that matches ``source``, else compiled from source."""
    try:
        pyc = Path(importlib.util.cache_from_source(str(path)))
        data = pyc.read_bytes()
    except (OSError, NotImplementedError, ValueError):
        data = b""
    if len(data) >= 16 and data[:4] == importlib.util.MAGIC_NUMBER:
        flags = int.from_bytes(data[4:8], "little")
        valid = False
        if flags & 0b1:
            valid = data[8:16] == importlib.util.source_hash(source)
        elif flags == 0:
            try:
                st = path.stat()
                valid = int.from_bytes(data[8:12], "little") == (int(st.st_mtime) & 0xFFFFFFFF)
                valid = valid and int.from_bytes(data[12:16], "little") == len(source)
            except OSError:
                valid = False
        if valid:
            code = marshal.loads(data[16:])
            if isinstance(code, types.CodeType):
                _imp._fix_co_filename(code, str(path))  # type: ignore[attr-defined]
                return code
    compiled: types.CodeType = compile(source, str(path), "exec", dont_inherit=True)
    return compiled


def _walk_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield const
            yield from _walk_codes(const)


def _ranked(code: types.CodeType) -> dict[tuple[str, int], tuple[int, types.CodeType]]:
    """``{(qualname, firstlineno): (rank, code)}``; rank counts same-qualname codes in order."""
    seen: dict[str, int] = {}
    out: dict[tuple[str, int], tuple[int, types.CodeType]] = {}
    for c in sorted(_walk_codes(code), key=lambda c: c.co_firstlineno):
        rank = seen.get(c.co_qualname, 0)
        seen[c.co_qualname] = rank + 1
        out.setdefault((c.co_qualname, c.co_firstlineno), (rank, c))
    return out


def _ranks(code: types.CodeType) -> dict[tuple[str, int], int]:
    return {k: r for k, (r, _c) in _ranked(code).items()}


# -- live checks --------------------------------------------------------------------------------


def function_patches(
    plan: ModulePlan, index: HeapIndex
) -> Iterator[tuple[types.FunctionType, types.CodeType]]:
    """Every live function of the module with the new code compiled from the same def."""
    for (qualname, line), rank in plan.old_keys.items():
        fns = index.functions_of(plan.module, qualname, line)
        if not fns:
            continue
        code = plan.new_codes.get((qualname, rank))
        if code is None:
            continue
        for fn in fns:
            if fn.__code__ != code or fn.__code__.co_freevars != code.co_freevars:
                yield fn, code


def closure_for(
    fn: types.FunctionType, code: types.CodeType, module: types.ModuleType
) -> tuple[Any, ...] | str | None:
    """The closure ``fn`` needs to run ``code``, built from its current cells by name;
    a string says why that is impossible."""
    old_free = fn.__code__.co_freevars
    new_free = code.co_freevars
    if old_free == new_free:
        return fn.__closure__
    cells = dict(zip(old_free, fn.__closure__ or (), strict=True))
    out: list[Any] = []
    for name in new_free:
        if name in cells:
            out.append(cells[name])
        elif name == "__class__":
            cls = _owner_class(module, code.co_qualname)
            if cls is None:
                return f"{code.co_qualname}: cannot find the class its super() refers to"
            out.append(closure.cell(cls))
        else:
            return (
                f"{code.co_qualname}: live closures have no value for the new free variable "
                f"{name!r} (they keep running the old code until recreated)"
            )
    if not closure.available():
        return f"{code.co_qualname}: its free variables changed (unsupported on this interpreter)"
    return tuple(out) or None


def _check_closures(plan: ModulePlan, index: HeapIndex, reasons: list[Reason]) -> None:
    seen: set[int] = set()
    for fn, code in function_patches(plan, index):
        cells = closure_for(fn, code, plan.module)
        if isinstance(cells, str) and id(code) not in seen:
            seen.add(id(code))
            where = f"{plan.name}.{code.co_qualname}"
            reasons.append(Reason("closure", f"{plan.name}: {cells}", subject=where))


def _owner_class(module: types.ModuleType, qualname: str) -> type | None:
    parts = qualname.split(".")
    if "<locals>" in parts:
        parts = parts[: parts.index("<locals>")]
    cls = _resolve(module, ".".join(parts[:-1]))
    return cls if isinstance(cls, type) else None


def _resolve(module: types.ModuleType, qualname: str) -> object:
    obj: object = module
    for part in qualname.split(".") if qualname else ():
        if part.startswith("<"):
            return None
        d = getattr(obj, "__dict__", None)
        if not isinstance(d, dict | types.MappingProxyType) or part not in d:
            return None
        obj = d[part]
    return obj


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


# -- ordering and importers ---------------------------------------------------------------------


def _dependency_order(plans: list[ModulePlan]) -> list[ModulePlan]:
    """Modules a changed module imports (and its parent packages) are committed first."""
    by_name = {p.name: p for p in plans}
    out: list[ModulePlan] = []
    state: dict[str, int] = {}

    def visit(p: ModulePlan) -> None:
        if state.get(p.name):
            return
        state[p.name] = 1
        deps = set(p.diff.imports)
        parts = p.name.split(".")
        deps |= {".".join(parts[:i]) for i in range(1, len(parts))}
        for dep in sorted(deps):
            q = by_name.get(dep)
            if q is not None and q is not p:
                visit(q)
        out.append(p)

    for p in plans:
        visit(p)
    return out


def find_importers(
    plans: list[ModulePlan], loaded: dict[str, types.ModuleType]
) -> dict[tuple[str, str], list[tuple[types.ModuleType, str]]]:
    """``{(module, name): [(importer, alias)]}`` for the names an upgrade may rebind: the modules
    holding them through a top-level ``from module import name as alias`` (transitively, for
    re-exports). Only files mentioning one of the names are parsed."""
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
                if "import" not in text or not any(n in text for n in names):
                    continue
                try:
                    tree = ast.parse(text)
                except SyntaxError:
                    continue
                is_pkg = rel.endswith("__init__.py")
                pkg = mod.__name__ if is_pkg else mod.__name__.rpartition(".")[0]
                imports[rel] = list(from_imports(tree.body, pkg))
            for src_mod, name, alias in imports[rel]:
                if (src_mod, name) not in wanted:
                    continue
                targets = edges.setdefault((src_mod, name), [])
                if (mod, alias) not in targets:
                    targets.append((mod, alias))
                key = (mod.__name__, alias)
                if key not in wanted:
                    wanted.add(key)
                    frontier.add(key)
    return edges


def has_code_change(obj: object) -> bool:
    return callable(getattr(obj, CODE_CHANGE, None))


def dataclass_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    fields: dict[str, dataclasses.Field[Any]] = cls.__dict__.get("__dataclass_fields__", {})
    return fields
