"""An unpacked release as the hot upgrader sees it, and the file-level diff of two of them.

A release directory holds ``RELEASE.json`` (the manifest), ``RECORD`` (``path,sha256=...,size``
per file, paths relative to the release root) and ``lib/`` (the app and its dependencies, as
``pip install --target`` lays them out). Comparing the two RECORDs finds the changed files
without reading them; a tree with no RECORD (hand-made in tests) is hashed instead.

Python files map to module names (``lib/app/views.py`` → ``app.views``,
``lib/app/__init__.py`` → ``app``); compiled extensions are recognised by
``importlib.machinery.EXTENSION_SUFFIXES`` (plus ``.so``/``.pyd``); ``__pycache__`` and
``*.dist-info`` entries are left out of the module diff (versions are compared from the manifest).
"""

from __future__ import annotations

import hashlib
import os
import types
from dataclasses import dataclass, field
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError, UsageError
from hotswap.release import record
from hotswap.release.manifest import Manifest
from hotswap.release.record import MANIFEST_NAME, RECORD_NAME

MANIFEST = MANIFEST_NAME
RECORD = RECORD_NAME
LIB = "lib"
_EXT_SUFFIXES = tuple(sorted({*EXTENSION_SUFFIXES, ".so", ".pyd", ".dylib"}, key=len, reverse=True))


@dataclass(frozen=True)
class ReleaseTree:
    """An unpacked release: its root, manifest and file hashes."""

    root: Path
    manifest: dict[str, Any]
    record: dict[str, str] = field(repr=False)

    @property
    def lib(self) -> Path:
        return self.root / LIB

    @property
    def release_id(self) -> str:
        return str(self.manifest.get("release_id") or self.root.name)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @property
    def app(self) -> dict[str, Any]:
        app = self.manifest.get("app")
        return app if isinstance(app, dict) else {}

    @classmethod
    def load(cls, root: str | Path) -> ReleaseTree:
        root = Path(root).resolve()
        if not root.is_dir():
            raise UsageError("release_not_found", f"no release directory at {root}", path=str(root))
        manifest = read_manifest(root)
        record_path = root / RECORD
        record = read_record(record_path) if record_path.exists() else hash_tree(root)
        return cls(root, manifest, record)

    def source(self, rel: str, *, check: bool = True) -> bytes:
        """Bytes of a file of the release, checked against its RECORD hash (``check=False``:
        for a quick look; :meth:`verify` them before anything is made of them)."""
        data = (self.root / rel).read_bytes()
        return self.verify(rel, data) if check else data

    def verify(self, rel: str, data: bytes) -> bytes:
        """``data``, read from ``rel``, if it is what RECORD says; else ``hash_mismatch``."""
        want = self.record.get(rel)
        if want and want != file_hash(data):
            raise ReleaseError(
                "hash_mismatch", f"{rel} in {self.root} does not match RECORD", path=rel
            )
        return data


class PathMap:
    """Maps paths under the old release's ``lib/`` to the new one's, by string prefix only.

    The prefixes are computed once (``lib`` as given, its real path, and every ``sys.path``
    entry that resolves to it), so mapping a path inside the window makes no system call.
    """

    def __init__(self, old_lib: Path, new_lib: Path, sys_path: list[str]) -> None:
        real = os.path.realpath(old_lib)
        forms = {os.path.abspath(old_lib), real}
        for entry in sys_path:
            if isinstance(entry, str) and entry and os.path.realpath(entry) == real:
                forms.add(os.path.normpath(entry))
        self.prefixes = tuple(sorted(forms, key=len, reverse=True))
        self.new_lib = str(new_lib)
        self._new_prefix = os.path.join(self.new_lib, "")

    def relative(self, path: str) -> str | None:
        """``path`` relative to the old lib (``/`` separators), or None if not under it."""
        for prefix in self.prefixes:
            if path == prefix:
                return ""
            if path.startswith(prefix) and path[len(prefix)] == os.sep:
                return path[len(prefix) + 1 :].replace(os.sep, "/")
        return None

    def new_path(self, rel: str) -> str:
        """The new release's path of ``rel`` (as :meth:`relative` returns it)."""
        return self._new_prefix + rel if rel else self.new_lib

    def remap(self, path: str) -> str | None:
        rel = self.relative(path)
        if rel is None:
            return None
        return self.new_path(rel)


def module_attr(mod: object, name: str) -> Any:
    """``mod.<name>``, or None, without running a module-level ``__getattr__`` (PEP 562) for a
    name the module lacks: a lazy-import hook (pydantic's, for one) builds and raises an
    AttributeError each time, which costs more than every other test of an upgrade's scan
    over all modules together."""
    if type(mod) is types.ModuleType:
        return mod.__dict__.get(name)
    return getattr(mod, name, None)


_class_module = type.__dict__["__module__"].__get__
_class_dict = type.__dict__["__dict__"].__get__


def class_module(cls: type) -> Any:
    """``cls.__module__`` as ``type`` keeps it, without running an attribute hook of the
    class's metaclass (pydantic's ``ModelMetaclass``, typing's deprecated aliases)."""
    return _class_module(cls)


def class_dict(cls: type) -> Any:
    """``cls.__dict__`` (a mappingproxy) as ``type`` keeps it: see :func:`class_module`."""
    return _class_dict(cls)


def read_manifest(root: Path) -> dict[str, Any]:
    """The validated manifest (``hotswap.release.manifest``), as its JSON dict."""
    if not (root / MANIFEST).is_file():
        raise UsageError(
            "release_not_found", f"{root} is not a release (no {MANIFEST})", path=str(root)
        )
    return Manifest.load(root).raw


def read_record(path: Path) -> dict[str, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReleaseError("record_invalid", f"{path}: {exc}", path=str(path)) from None
    return {name: entry.digest for name, entry in record.loads(data).items()}


def file_hash(data: bytes) -> str:
    return record.encode_digest(hashlib.sha256(data).digest())


def hash_tree(root: Path) -> dict[str, str]:
    """For a tree without RECORD (hand-made): hash every file but the manifest."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(root).as_posix()
            if rel != MANIFEST:
                out[rel] = file_hash(path.read_bytes())
    return out


def is_extension(rel: str) -> bool:
    return rel.endswith(_EXT_SUFFIXES)


def module_name(rel: str) -> str | None:
    """``lib/a/b.py`` → ``a.b``; None for anything that is not an importable ``.py`` module."""
    if not rel.startswith(LIB + "/") or not rel.endswith(".py"):
        return None
    parts = rel[len(LIB) + 1 : -3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return (
        "__pycache__" in parts
        or any(p.endswith(".dist-info") for p in parts)
        or rel in (RECORD, MANIFEST)
        or rel.endswith((".pyc", ".pyo"))
    )


@dataclass(frozen=True)
class TreeDiff:
    """Files that differ between two releases (paths relative to the release roots)."""

    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted({*self.changed, *self.added, *self.removed}))

    def modules(self, which: str) -> dict[str, str]:
        """``{module name: path}`` of the ``.py`` files ``changed``, ``added`` or ``removed``."""
        paths: tuple[str, ...] = getattr(self, which)
        out: dict[str, str] = {}
        for rel in paths:
            name = module_name(rel)
            if name is not None:
                out[name] = rel
        return out

    def extensions(self) -> list[tuple[str, str]]:
        out = [(rel, "changed") for rel in self.changed if is_extension(rel)]
        out += [(rel, "added") for rel in self.added if is_extension(rel)]
        out += [(rel, "removed") for rel in self.removed if is_extension(rel)]
        return sorted(out)


def diff_trees(old: ReleaseTree, new: ReleaseTree) -> TreeDiff:
    old_rec = {k: v for k, v in old.record.items() if not _ignored(k)}
    new_rec = {k: v for k, v in new.record.items() if not _ignored(k)}
    changed = sorted(k for k in old_rec.keys() & new_rec.keys() if old_rec[k] != new_rec[k])
    added = sorted(new_rec.keys() - old_rec.keys())
    removed = sorted(old_rec.keys() - new_rec.keys())
    return TreeDiff(tuple(changed), tuple(added), tuple(removed))
