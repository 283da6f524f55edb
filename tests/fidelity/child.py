"""One side of a fidelity comparison, run in its own interpreter::

    python child.py live SPEC.json OUT.json    # import the old release, hold objects, hot-upgrade
    python child.py fresh SPEC.json OUT.json   # import the new release the same way

SPEC gives the release directories, the top-level packages, the statements run before the
upgrade (``setup``: imports by name, instances...) and the expressions evaluated after it
(``probes``). Both sides import the same modules (live: every module of the packages that
imports; fresh: the ones live imported), make an instance of every class of the library that
takes no argument, hold every function and class of it, run ``setup``, and write the
:mod:`fingerprint` of the library's modules, the state of the held instances, the held
references and the probe results. ``live`` also writes the outcome of the upgrade and, when it
was refused or failed, whether the process is exactly as it was before (promise 9).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

import fingerprint


def import_all(packages: list[str], names: list[str] | None) -> list[str]:
    """Import ``names``, or every module of ``packages`` that imports; the ones that did."""
    done: list[str] = []
    todo = list(names) if names is not None else list(packages)
    seen: set[str] = set()
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
        except BaseException:
            continue
        done.append(name)
        path = getattr(mod, "__path__", None)
        if names is None and path is not None:
            todo += sorted(m.name for m in pkgutil.iter_modules(path, name + "."))
    return done


def hold(d: fingerprint.Describer, mods: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every function and class of the modules by path, and an instance of every class that
    can be made without arguments (with its bound methods)."""
    refs: dict[str, Any] = {}
    instances: dict[str, Any] = {}
    for name in mods:
        mod = sys.modules[name]
        for attr, v in list(vars(mod).items()):
            if getattr(v, "__module__", None) != name or not callable(v):
                continue
            path = f"{name}.{attr}"
            refs[path] = v
            if isinstance(v, type) and not _abstract(v):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        inst = v()
                except BaseException:
                    continue
                instances[path] = inst
                for meth, f in vars(v).items():
                    if callable(f) and not meth.startswith("__"):
                        with contextlib.suppress(BaseException):
                            refs[f"{path}().{meth}"] = getattr(inst, meth)
    return refs, instances


def _abstract(cls: type) -> bool:
    return bool(getattr(cls, "__abstractmethods__", None))


def describe_refs(d: fingerprint.Describer, refs: dict[str, Any]) -> dict[str, Any]:
    """Each held reference: its description and whether it is still the object at its path."""
    out: dict[str, Any] = {}
    for path, v in refs.items():
        func = getattr(v, "__func__", v)  # a bound method: its function
        if isinstance(func, type):
            desc: Any = f"class:{func.__module__}.{func.__qualname__}"
        else:
            desc = d.value(func, _home(func))
        out[path] = {"desc": desc, "current": _resolve(path) is func}
    return out


def _home(f: Any) -> str:
    module = getattr(f, "__module__", "") or ""
    qual = getattr(f, "__qualname__", "")
    owner = qual.rpartition(".")[0]
    return f"{module}:{owner}" if owner and "<locals>" not in owner else module


def _resolve(path: str) -> Any:
    """The object now at ``path`` (``mod.attr`` or ``mod.Cls().method``: the function)."""
    owner, _, attr = path.rpartition(".")
    if owner.endswith("()"):
        cls = _resolve(owner[:-2])
        v = vars(cls).get(attr) if isinstance(cls, type) else None
        return getattr(v, "__func__", v)
    return getattr(sys.modules.get(owner), attr, None)


def describe_instances(d: fingerprint.Describer, instances: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, inst in instances.items():
        t = type(inst)
        state = getattr(inst, "__dict__", None)
        keys = sorted(state) if isinstance(state, dict) else []
        out[path] = {
            "class": f"{t.__module__}.{t.__qualname__}",
            "is_current": _resolve(path) is t,
            "state": {k: d.value(state[k]) for k in keys} if isinstance(state, dict) else None,
        }
    return out


def probes(ns: dict[str, Any], exprs: list[str], d: fingerprint.Describer) -> list[str]:
    out = []
    for expr in exprs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(d.norm(repr(eval(expr, ns))))
        except BaseException as exc:
            out.append(f"raised {type(exc).__name__}: {d.norm(str(exc))}")
    return out


def snapshot(d: fingerprint.Describer, refs: dict[str, Any], inst: dict[str, Any]) -> Any:
    d.classes = {}
    fp = fingerprint.modules(d.libs)
    fp["refs"] = describe_refs(d, refs)
    fp["instances"] = describe_instances(d, inst)
    return fp


def main(mode: str, spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    lib = spec["old_lib"] if mode == "live" else spec["new_lib"]
    sys.path.insert(0, lib)
    sys.path.append(spec["runtime"])  # hotswap after the release, as in a generation
    importlib.invalidate_caches()
    from hotswap.hot import HotUpgrade  # the engine's own imports, on both sides alike
    from hotswap.hot.testing import code_change  # noqa: F401

    d = fingerprint.Describer([spec["old_lib"], spec["new_lib"]])
    result: dict[str, Any] = {"mode": mode}
    imported = import_all(spec["packages"], spec.get("imported") if mode == "fresh" else None)
    result["imported"] = imported
    refs, instances = hold(d, imported)
    ns: dict[str, Any] = {}
    try:
        exec(spec.get("setup", ""), ns)
    except BaseException:
        result["setup_error"] = traceback.format_exc(limit=3)
    first = probes(ns, spec.get("probes", []), d)  # both sides: the same calls, twice
    if mode == "live":
        result["before"] = snapshot(d, refs, instances)
        result["before_probes"] = first
        up = HotUpgrade(spec["old_root"], spec["new_root"])
        try:
            up.prepare()
            stats = up.commit()
            result["outcome"] = {"code": "accepted", "warnings": list(stats.warnings)}
        except Exception as exc:
            details = getattr(exc, "details", {}) or {}
            result["outcome"] = {
                "code": getattr(exc, "code", type(exc).__name__),
                "message": str(exc),
                "reasons": details.get("reasons", []),
                "step": details.get("step"),
            }
        finally:
            up.abort()
        result["after_upgrade"] = snapshot(d, refs, instances)  # before anything else runs
    result["after"] = snapshot(d, refs, instances)
    result["probes"] = probes(ns, spec.get("probes", []), d)
    Path(out_path).write_text(json.dumps(result, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
