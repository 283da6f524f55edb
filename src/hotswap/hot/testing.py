"""Helpers to test your own hot upgrades and ``__code_change__`` hooks.

:func:`write_release` lays out a minimal unpacked release (``RELEASE.json``, ``RECORD``,
``lib/``) from a dict of files, so a test can import v1 from one directory and hot-upgrade to v2
from another::

    v1 = write_release(tmp_path / "v1", {"app/core.py": OLD}, version="1")
    v2 = write_release(tmp_path / "v2", {"app/core.py": NEW}, version="2")
    with running_release(v1):
        import app.core
        stats = hot_upgrade(v2, current=v1)

:func:`code_change` runs one ``__code_change__`` (of an instance or a module) the way the upgrader
does: if it raises, the object's state is put back exactly before the exception propagates.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hotswap.hot.journal import Journal
from hotswap.hot.plan import CODE_CHANGE
from hotswap.hot.tree import LIB, MANIFEST
from hotswap.release import interpreter, record
from hotswap.release.manifest import FORMAT, make_release_id


def write_release(
    root: str | os.PathLike[str],
    files: Mapping[str, str | bytes],
    *,
    name: str = "app",
    version: str = "1",
    distributions: list[dict[str, Any]] | None = None,
    app: dict[str, Any] | None = None,
    python: dict[str, Any] | None = None,
) -> Path:
    """Write an unpacked release at ``root``: ``files`` (paths relative to ``lib/``), a RECORD
    and a manifest that :mod:`hotswap.release.manifest` accepts, built for this interpreter
    unless ``python`` says otherwise. Returns ``root``."""
    root = Path(root)
    (root / LIB).mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / LIB / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_bytes(content))
    record_bytes = record.write(root, record.scan_tree(root))
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "release_id": make_release_id(version, hashlib.sha256(record_bytes).hexdigest()),
        "created": 0,
        "builder": {"hotswap": "test", "installer": "hotswap.hot.testing"},
        "python": python if python is not None else interpreter.identity(),
        "distributions": distributions
        if distributions is not None
        else [
            {
                "name": name,
                "version": version,
                "purelib": True,
                "has_extensions": False,
                "tags": ["py3-none-any"],
            }
        ],
        "app": app or {"distribution": name, "entry": "app:main", "server": "callable"},
        "record": {
            "sha256": hashlib.sha256(record_bytes).hexdigest(),
            "files": len(files),
            "bytes": sum(len(_bytes(c)) for c in files.values()),
        },
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root


def _bytes(content: str | bytes) -> bytes:
    return content.encode() if isinstance(content, str) else content


@contextmanager
def running_release(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Put ``root/lib`` first on ``sys.path`` (as a generation's bootstrap does); on exit forget
    every module imported from this release or any other directory under ``root``'s parent, and
    restore ``sys.path``."""
    root = Path(root).resolve()
    saved = list(sys.path)
    sys.path.insert(0, str(root / LIB))
    try:
        yield root
    finally:
        sys.path[:] = saved
        base = str(root.parent) + os.sep
        # all decided before any is forgotten: a namespace package's __path__ is recomputed
        # from its parent's, which must still be there
        gone = []
        for key, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None) or ""
            try:
                paths = list(getattr(mod, "__path__", None) or ())
            except (KeyError, AttributeError):
                paths = []
            if f.startswith(base) or any(str(p).startswith(base) for p in paths):
                gone.append(key)
        for key in gone:
            sys.modules.pop(key, None)
        import importlib

        importlib.invalidate_caches()


def code_change(target: object, old_vsn: object, extra: Any = None) -> None:
    """Call ``target.__code_change__`` like the upgrader: for an instance ``(old_vsn, extra)``
    bound to it, for a module the module-level function. If it raises, ``target``'s state (its
    ``__dict__``, slots, and one level of containers in them) is restored, then it re-raises."""
    hook = getattr(target, CODE_CHANGE, None)
    if not callable(hook):
        raise TypeError(f"{target!r} has no {CODE_CHANGE}")
    journal = Journal()
    if isinstance(target, types.ModuleType):
        journal.snapshot_namespace(target.__dict__, set(target.__dict__))
    else:
        journal.snapshot_instance(target)
    try:
        hook(old_vsn, extra)
    except BaseException:
        journal.rollback()
        raise
    journal.discard()
