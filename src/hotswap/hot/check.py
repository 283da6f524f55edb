"""``check(old, new)``: can the new release be applied to a process running the old one in place?

What ``hotswap check OLD NEW`` prints, and the same answer the live engine gives: the old
release is imported in a throwaway child process, as a generation would import it (``python -I
-S -B``, the release's ``lib/`` first on ``sys.path``, hotswap after it, ``app.entry`` imported;
nothing served, nothing written), together with every changed module a live process might have
imported later; then the child runs the live engine's prepare step (the analysis below plus the
checks only live objects can answer: closures, enum members, dataclass fields, metaclass state)
against the new release, without committing, and reports its verdict. So "possible" means the
live engine would accept the upgrade (promise 12's "refused before anything changes").

The analysis, also the first step of every live upgrade (:func:`analyze`), refuses, with one
:class:`~hotswap.hot.verdict.Reason` per problem, when

- the releases are of different applications, or built for a different interpreter;
- a compiled extension is added, changed or removed (an extension cannot be re-initialised);
- the set or the versions of bundled distributions change. The app's own distribution
  (``app.distribution`` in the manifest) changes version with every release, which is fine; a
  pure-Python dependency may change when ``allow_dependency_changes`` is set;
- the entry point, the server or the listeners change (the shape of the process);
- a class changes its layout (bases, metaclass, class decorators, ``__slots__``), an enum loses a
  member, or a module does not compile (see :mod:`hotswap.hot.diff`).

:func:`static_check` is that analysis alone over every changed module, importing nothing: for a
release this interpreter cannot run, and what ``check`` does when it cannot import the old one.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.util import decode_source
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError
from hotswap.hot.diff import diff_module
from hotswap.hot.names import from_imports, may_import_from, module_aliases
from hotswap.hot.plan import Exec, ModuleDiff
from hotswap.hot.rebound import changed_inside
from hotswap.hot.tree import ReleaseTree, TreeDiff, diff_trees, module_name
from hotswap.hot.verdict import Reason, Verdict
from hotswap.release import interpreter

_WIRING_KEYS = ("entry", "server", "listeners", "services")
CHECK_TIMEOUT = 60.0  # as boot_timeout: importing the old release may take that long


@dataclass
class Analysis:
    """A verdict plus what was learnt on the way (reused by the upgrade's prepare step)."""

    old: ReleaseTree
    new: ReleaseTree
    diff: TreeDiff
    modules: dict[str, ModuleDiff] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)  # unchanged importers to re-derive
    # module -> its unchanged functions that store what a rebound name gave (BodyPlan.stores),
    # for every module looked at, planned or not: what ran at start-up is checked against it
    stores: dict[str, frozenset[str]] = field(default_factory=dict)
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)  # m.py -> m/__init__.py
    reasons: list[Reason] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def verdict(self) -> Verdict:
        return Verdict(
            old_release=self.old.release_id,
            new_release=self.new.release_id,
            reasons=tuple(self.reasons),
            warnings=tuple(self.warnings),
            modules_changed=tuple(sorted(self.diff.modules("changed"))),
            modules_added=tuple(sorted(self.diff.modules("added"))),
            modules_removed=tuple(sorted(self.diff.modules("removed"))),
            files_changed=self.diff.files,
        )


def check(
    old: str | Path | ReleaseTree,
    new: str | Path | ReleaseTree,
    *,
    allow_dependency_changes: bool = False,
    timeout: float = CHECK_TIMEOUT,
    env: Mapping[str, str] | None = None,
    startup: Mapping[str, Any] | None = None,
) -> Verdict:
    """Would the live engine hot-apply ``new`` to a process running ``old``? Answered by a
    throwaway child that imports ``old`` and runs the engine's prepare step (module docstring).

    Never raises on a refusal. Raises :class:`~hotswap.errors.UsageError`
    ``release_not_found`` for a missing release, :class:`~hotswap.errors.ChildError`
    ``boot_failed`` when importing the old release fails in the child (so it would fail in a
    generation too) and ``check_failed`` when the child dies or outlives ``timeout`` seconds.
    The child's environment is a generation's: the release's ``[tool.hotswap.env]`` defaults,
    this process's environment, then ``env`` (the state dir's env file, for the CLI).
    ``startup``: what ran while a worker running ``old`` started (``startup_code`` in the
    status of its generation; :mod:`.startup`), which the live engine refuses to change; the
    child cannot know it otherwise, so without it the verdict carries a warning saying so.
    If this interpreter cannot run the old release, the answer is :func:`static_check`'s, with
    a warning saying so."""
    o, n = _tree(old), _tree(new)
    if check_running_interpreter(o.manifest):
        v = static_check(o, n, allow_dependency_changes=allow_dependency_changes)
        note = "this interpreter cannot import the old release: static analysis only"
        return dataclasses.replace(v, warnings=(*v.warnings, note))
    from hotswap.hot import isolated

    v = isolated.run(
        o,
        n,
        allow_dependency_changes=allow_dependency_changes,
        timeout=timeout,
        env=env,
        startup=startup,
    )
    if startup is None and v.ok:
        note = (
            "what runs while a worker starts (an app factory, a lifespan's start-up) is known "
            "only to a running generation: a hot upgrade also refuses a change to it "
            "(startup_code); give the state dir of a service running the old release to check it"
        )
        v = dataclasses.replace(v, warnings=(*v.warnings, note))
    return v


def static_check(
    old: str | Path | ReleaseTree,
    new: str | Path | ReleaseTree,
    *,
    allow_dependency_changes: bool = False,
) -> Verdict:
    """The analysis alone, over every changed module, importing nothing. Stricter than the live
    engine where a module the process never imports changed, blind to what only live objects
    tell (closures, metaclass state, enum members and dataclass fields of live classes)."""
    return analyze(
        _tree(old), _tree(new), allow_dependency_changes=allow_dependency_changes
    ).verdict()


def _tree(x: str | Path | ReleaseTree) -> ReleaseTree:
    return x if isinstance(x, ReleaseTree) else ReleaseTree.load(x)


def analyze(
    old: ReleaseTree,
    new: ReleaseTree,
    *,
    allow_dependency_changes: bool = False,
    loaded: Callable[[str], bool] | None = None,
) -> Analysis:
    """The full check. ``loaded(module)`` limits the source analysis to imported modules."""
    a = Analysis(old, new, diff_trees(old, new))
    _check_identity(a)
    _check_python(a.reasons, old.manifest, new.manifest)
    _check_distributions(a, allow_dependency_changes)
    _check_wiring(a)
    for rel, how in a.diff.extensions():
        a.reasons.append(
            Reason(
                "native_extension",
                f"compiled extension {rel} was {how} (extensions cannot be reloaded in place)",
                subject=rel,
            )
        )
    changed = a.diff.modules("changed")
    for name, rel in sorted(changed.items()):
        if loaded is not None and not loaded(name):
            continue
        a.modules[name] = _diff(a, name, rel)
    added, removed = a.diff.modules("added"), a.diff.modules("removed")
    for name in sorted(added.keys() & removed.keys()):
        old_rel, new_rel = removed[name], added[name]
        if loaded is not None and not loaded(name):
            continue
        if old_rel.endswith("/__init__.py") or not new_rel.endswith("/__init__.py"):
            continue  # a package becoming a module is refused (module_layout) in prepare
        # a module becoming a package (m.py -> m/__init__.py): the same module object, given
        # a __path__ by the commit, and its new source diffed against the old one
        a.modules[name] = _diff(a, name, old_rel, new_rel=new_rel)
        a.moved[name] = (old_rel, new_rel)
    _follow_imports(a, changed, loaded)
    for name, md in a.modules.items():  # first: what it says is the cause of the others
        a.reasons.extend(_entry_rebinds(a, name, md))
    for md in a.modules.values():
        a.reasons.extend(md.refusals)
        a.warnings.extend(md.warnings)
        if loaded is None:  # static: no live container to look at
            a.reasons.extend(reason for _op, reason in md.plan.containers)
    return a


def _diff(
    a: Analysis,
    name: str,
    rel: str,
    outer: frozenset[str] = frozenset(),
    new_rel: str | None = None,
    called: frozenset[str] = frozenset(),
) -> ModuleDiff:
    new_rel = new_rel or rel
    is_pkg = new_rel.endswith("/__init__.py")
    return diff_module(
        name,
        decode_source(a.old.source(rel)),
        decode_source(a.new.source(new_rel)),
        str(a.new.root / new_rel),
        package=name if is_pkg else name.rpartition(".")[0],
        outer=outer,
        called=called,
    )


def _follow_imports(
    a: Analysis, changed: dict[str, str], loaded: Callable[[str], bool] | None
) -> None:
    """A name the upgrade rebinds in one module is rebound in the modules that imported it with
    ``from m import name`` too (the commit does that), so what *their* unchanged statements
    computed from it is followed the same way (``PRODUCT_ID = "lib/" + __version__``): each
    importer is diffed again with those names as rebound from outside, until nothing new is
    rebound. So are the functions whose code changes (``BodyPlan.called``): an importer's
    unchanged ``X = build()`` after ``from .util import build`` ran the old code. An
    unchanged importer with something to re-derive joins the plan (``Analysis.derived``).
    Only files that mention such a name and can import its module
    (:func:`~hotswap.hot.names.may_import_from`) are parsed."""
    outer: dict[str, frozenset[str]] = {}
    outer_calls: dict[str, frozenset[str]] = {}
    calls = {m: md.plan.called for m, md in a.modules.items() if md.plan.called}
    a.stores.update({m: md.plan.stores for m, md in a.modules.items() if md.plan.stores})
    # name -> (rel, bytes, text, tree): the bytes are checked against RECORD when parsed
    files: dict[str, tuple[str, bytes, str, ast.Module | None]] = {}
    known = {name for name, _rel in _modules(a, changed)}
    for _ in range(len(changed) + 64):
        rebound = {m: md.rebound for m, md in a.modules.items() if md.rebound}
        inside = {m: _changed_names(md) for m, md in a.modules.items()}
        inside = {m: names for m, names in inside.items() if names}
        if not inside and not calls:
            return
        words = {n.split(".")[0] for names in inside.values() for n in names}
        words |= {n.split(".")[0] for names in calls.values() for n in names}
        sources = {*inside, *calls}
        # a class's changed method (`C.m`), followed one level only, so names never grow
        methods = {
            m: frozenset(n for n in names if n.count(".") == 1) for m, names in calls.items()
        }
        grew = False
        for name, rel in _modules(a, changed):
            if loaded is not None and not loaded(name):
                continue
            if name not in files:
                try:
                    data = a.new.source(rel, check=False)
                    text = decode_source(data)
                except (OSError, UnicodeDecodeError, SyntaxError):
                    continue
                files[name] = (rel, data, text, None)
            rel, data, text, tree = files[name]
            if (
                "import" not in text
                or not any(w in text for w in words)
                or not may_import_from(name, text, sources)
            ):
                continue
            if tree is None:
                try:
                    tree = ast.parse(decode_source(a.new.verify(rel, data)))
                except (ReleaseError, SyntaxError, ValueError):
                    continue
                files[name] = (rel, data, text, tree)
            pkg = name if rel.endswith("/__init__.py") else name.rpartition(".")[0]
            aliases = set(outer.get(name, frozenset()))
            called = set(outer_calls.get(name, frozenset()))
            for src, imported, alias in from_imports(tree.body, pkg):
                if imported in calls.get(src, frozenset()):
                    called.add(alias)
                called |= _within(alias, imported, methods.get(src, frozenset()))
                names = rebound.get(src, frozenset())
                if imported == "*":
                    aliases |= {n for n in names if not n.startswith("_")}
                elif imported in names:
                    aliases.add(alias)
                elif f"{src}.{imported}" not in known:  # a class patched in place
                    aliases |= _within(alias, imported, inside.get(src, frozenset()))
            for alias, module in module_aliases(tree.body, pkg, known):
                for m, names in inside.items():
                    if m == module or m.startswith(module + "."):
                        aliases |= {f"{alias}{m[len(module) :]}.{n}" for n in names}
                for m, names in calls.items():
                    if m == module or m.startswith(module + "."):
                        called |= {f"{alias}{m[len(module) :]}.{n}" for n in names if "." not in n}
            if aliases <= outer.get(name, frozenset()) and called <= outer_calls.get(
                name, frozenset()
            ):
                continue
            outer[name], outer_calls[name] = frozenset(aliases), frozenset(called)
            md = _diff(a, name, rel, outer[name], called=outer_calls[name])
            if md.plan.stores:
                a.stores[name] = md.plan.stores
            if md.plan.called != calls.get(name, frozenset()):
                calls[name] = md.plan.called
                grew = True
            if name in changed or md.refusals or not md.plan.is_empty():
                a.modules[name] = md
                if name not in changed:
                    a.derived[name] = rel
                grew = grew or _changed_names(md) != inside.get(name, frozenset())
        if not grew:
            return


def _changed_names(md: ModuleDiff) -> frozenset[str]:
    """What another module may have read of this one that gets another object: its names
    rebound or removed, ``C.x`` inside its classes patched in place, and ``*`` (the whole
    module) when there is any."""
    names = set(md.rebound) | set(md.plan.removed) | changed_inside(md.plan)
    return frozenset(names | {"*"}) if names else frozenset()


def _within(alias: str, name: str, inside: frozenset[str]) -> set[str]:
    """``alias.x`` for each ``name.x`` of ``inside`` (``from m import C as alias``)."""
    return {alias + n[len(name) :] for n in inside if n.startswith(name + ".")}


def _modules(a: Analysis, changed: dict[str, str]) -> list[tuple[str, str]]:
    """Every module of the new release that is in both releases: ``(name, rel)``."""
    out = []
    for rel in sorted(a.new.record):
        if rel.startswith("lib/") and rel.endswith(".py") and rel in a.old.record:
            name = module_name(rel)
            if name is not None and name != "__main__" and not name.endswith(".__main__"):
                out.append((name, rel))
    return out


def _check_identity(a: Analysis) -> None:
    if a.old.name != a.new.name:
        a.reasons.append(
            Reason(
                "different_app",
                f"the releases are of different applications ({a.old.name!r}, {a.new.name!r})",
            )
        )


def _check_python(reasons: list[Reason], old: dict[str, Any], new: dict[str, Any]) -> None:
    """The new release must run on the interpreter the old one runs on (the release rule of
    :mod:`hotswap.release.interpreter`, with the old release's identity as "here")."""
    built_for, here = new.get("python"), old.get("python")
    if not isinstance(built_for, dict) or not isinstance(here, dict):
        return
    dists = [d for d in new.get("distributions") or () if isinstance(d, dict)]
    tags = {str(t) for d in dists for t in d.get("tags") or ()}
    try:
        interpreter.check(built_for, dists, here=here, supported_tags=tags)
    except ReleaseError as exc:
        reasons.append(_interpreter_reason(exc))


def check_running_interpreter(manifest: dict[str, Any]) -> list[Reason]:
    """Can this process run the release's code (same interpreter rule as a boot)?"""
    built_for = manifest.get("python")
    if not isinstance(built_for, dict):
        return []
    dists = [d for d in manifest.get("distributions") or () if isinstance(d, dict)]
    try:
        interpreter.check(built_for, dists, supported_tags=set(_supported_tags()))
    except ReleaseError as exc:
        return [_interpreter_reason(exc)]
    return []


@functools.lru_cache(maxsize=1)
def _supported_tags() -> frozenset[str]:
    from packaging.tags import sys_tags

    return frozenset(str(t) for t in sys_tags())


def _interpreter_reason(exc: ReleaseError) -> Reason:
    field_name = str(exc.details.get("field", ""))
    return Reason(
        "interpreter", f"built for another interpreter: {exc.message}", subject=field_name
    )


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dists(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for d in manifest.get("distributions") or ():
        if isinstance(d, dict) and "name" in d:
            out[_norm(str(d["name"]))] = d
    return out


def _pure(d: dict[str, Any]) -> bool:
    return bool(d.get("purelib", False)) and not d.get("has_extensions", False)


def _check_distributions(a: Analysis, allow: bool) -> None:
    old, new = _dists(a.old.manifest), _dists(a.new.manifest)
    own = {_norm(str(m.app.get("distribution", ""))) for m in (a.old, a.new)} - {""}
    hint = "" if allow else " (allow_dependency_changes permits pure-Python ones)"
    for name in sorted(old.keys() | new.keys()):
        if name in own:
            continue
        o, n = old.get(name), new.get(name)
        if o is not None and n is not None and o.get("version") == n.get("version"):
            if bool(o.get("has_extensions")) != bool(n.get("has_extensions")):
                a.reasons.append(
                    Reason("native_extension", f"{name}: extensions changed", subject=name)
                )
            continue
        if o is None:
            assert n is not None
            what, pure = f"{name} {n.get('version')} was added", _pure(n)
        elif n is None:
            what, pure = f"{name} {o.get('version')} was removed", _pure(o)
        else:
            what = f"{name} changed from {o.get('version')} to {n.get('version')}"
            pure = _pure(o) and _pure(n)
        if allow and pure:
            a.warnings.append(f"dependency {what}; applied in place (pure Python)")
            continue
        kind = "" if pure else " and has compiled parts"
        a.reasons.append(
            Reason(
                "dependencies",
                f"bundled dependency {what}{kind}{hint if pure else ''}",
                subject=name,
            )
        )


def _entry_rebinds(a: Analysis, name: str, md: ModuleDiff) -> list[Reason]:
    """The server holds the ``app.entry`` object: a statement of its module that rebinds it
    (``app = Flask(...)`` changed) is refused, not re-run. Its decorated routes, refused as
    stale registrations, follow from it."""
    entry = str(a.new.app.get("entry") or "")
    module, _, attr = entry.partition(":")
    root = attr.split(".")[0].split("(")[0]
    if module != name or not root:
        return []
    out = []
    for op in md.plan.ops:
        if isinstance(op, Exec) and root in op.names - op.keep:
            what = ast.unparse(op.node).splitlines()[0][:80]
            why = (
                " (unchanged, but it read or called what this upgrade changes, so it would run"
                " again)"
                if op.why == "derived"
                else ""
            )
            out.append(
                Reason(
                    "wiring",
                    f"{name} line {op.lineno}: `{what}`{why} rebinds {root}, the app.entry "
                    f"object ({entry}) the server holds; it would keep serving the old one",
                    subject=f"app.entry:{entry}",
                )
            )
    return out


def _check_wiring(a: Analysis) -> None:
    for key in _WIRING_KEYS:
        o, n = a.old.app.get(key), a.new.app.get(key)
        if o != n:
            a.reasons.append(
                Reason(
                    "wiring",
                    f"app.{key} changed from {o!r} to {n!r} (the shape of the process changes)",
                    subject=f"app.{key}",
                )
            )
