"""Data files: changed non-code files of a release (templates, CA bundles, JSON, CSS).

A module that read a data file when it was imported (a compiled template, a parsed JSON table,
a loaded CA bundle) keeps what it read: switching the release's paths makes later reads see the
new file, but nothing reads it again. So a changed, added or removed data file inside a package
the process imported is refused (``data_files``), unless the package opts in with a hook in its
``__init__``::

    def __data_change__(files, extra):
        # files: absolute paths in the new release of the data files that changed (or are gone)
        global TEMPLATES
        TEMPLATES = load_templates()

The hook runs in the commit, after every module is patched and before the instances'
``__code_change__``; its writes to the package's namespace are journaled like the rest. The
same hook serves static assets: a page's CSS changed, the hook tells the open pages to reload
it, and no connection is dropped.
"""

from __future__ import annotations

import ast
import types
from pathlib import PurePosixPath

from hotswap.hot.check import Analysis
from hotswap.hot.tree import LIB, TreeDiff, is_extension, module_name
from hotswap.hot.verdict import Reason

HOOK = "__data_change__"
# Files that a running program does not read: typing markers and stubs, bytecode, installer
# metadata outside dist-info.
_INERT_SUFFIXES = (".py", ".pyi", ".pyc", ".pyo", ".pth")
_INERT_NAMES = ("py.typed", "INSTALLER", "REQUESTED")

DataHooks = list[tuple[types.ModuleType, tuple[str, ...]]]


def data_changes(
    analysis: Analysis, loaded: dict[str, types.ModuleType], reasons: list[Reason]
) -> DataHooks:
    """The hooks to call (package module, changed files) for the changed data files of
    packages this process imported; a refusal per package that has no hook."""
    by_package: dict[str, list[str]] = {}
    diff = analysis.diff
    for rel in (*diff.changed, *diff.added, *diff.removed):
        if not rel.startswith(LIB + "/") or is_extension(rel) or _inert(rel):
            continue
        package = _owner(analysis, rel)
        by_package.setdefault(package or "", []).append(rel)
    hooks: DataHooks = []
    for package, files in sorted(by_package.items()):
        mod = loaded.get(f"{package.replace('.', '/')}/__init__.py") if package else None
        if package and mod is None:
            continue  # not imported: whatever imports it later reads the new files
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        if mod is None or not _defines_hook(analysis, f"{LIB}/{package.replace('.', '/')}"):
            owner = f"package {package}" if package else "no package"
            reasons.append(
                Reason(
                    "data_files",
                    f"data files {_how(diff, files)} ({shown}) in {owner}, which the process "
                    "imported and "
                    f"may have read already; define {HOOK}(files, extra) in the package's "
                    "__init__ to reload them",
                    subject=package or files[0],
                )
            )
            continue
        hooks.append((mod, tuple(str(analysis.new.root / f) for f in files)))
    return hooks


def _how(diff: TreeDiff, files: list[str]) -> str:
    """``changed``, ``added``, ``removed``, or what mix of them ``files`` are."""
    kinds = (("changed", diff.changed), ("added", diff.added), ("removed", diff.removed))
    return " or ".join(kind for kind, among in kinds if any(f in among for f in files))


def _inert(rel: str) -> bool:
    name = PurePosixPath(rel).name
    return rel.endswith(_INERT_SUFFIXES) or name in _INERT_NAMES


def _owner(analysis: Analysis, rel: str) -> str | None:
    """The innermost package (a directory with ``__init__.py``) holding ``rel``, in either
    release."""
    parent = PurePosixPath(rel).parent
    while str(parent) not in (LIB, "."):
        init = f"{parent}/__init__.py"
        if init in analysis.new.record or init in analysis.old.record:
            return module_name(init)
        parent = parent.parent
    return None


def _defines_hook(analysis: Analysis, package_dir: str) -> bool:
    rel = f"{package_dir}/__init__.py"
    if rel not in analysis.new.record:
        return False
    try:
        tree = ast.parse(analysis.new.source(rel))
    except SyntaxError:
        return False
    return any(
        isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and s.name == HOOK for s in tree.body
    )
