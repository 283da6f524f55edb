"""State migration, the last part of a commit: new dataclass fields filled on live instances,
the modules' ``__code_change__(old_vsn, extra)``, the packages' ``__data_change__(files, extra)``
for changed data files, then ``__code_change__(self, old_vsn, extra)`` on the live instances of
classes that define it. ``old_vsn`` is the old ``__vsn__`` (module or class), else a hash of the
old module source; a module or class that sets ``__vsn__`` explicitly and did not change it is
not migrated. Every write goes through the journal first.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

from hotswap.errors import ChildError
from hotswap.hot.datafiles import HOOK as DATA_HOOK
from hotswap.hot.journal import MISSING, Journal
from hotswap.hot.plan import CODE_CHANGE, ClassStep, Prepared
from hotswap.hot.stats import Counts


class StateMigration:
    """The migration steps of :class:`~hotswap.hot.commit.Commit` (a part of it)."""

    p: Prepared
    j: Journal
    extra: Any
    counts: Counts
    step: Callable[[str], None]
    _switch_file: Callable[[types.ModuleType, Journal], None]

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
                    if cs.op.body.fills:
                        self._fill_attributes(cs)
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

    def _fill_attributes(self, cs: ClassStep) -> None:
        """Old instances get what the new ``__init__`` sets first (``self._cache = None``),
        where they lack it and were made through that ``__init__`` (their class's own
        ``__init__`` is it, or calls an ``__init__``: ``super().__init__(...)``)."""
        self.step(f"fill:{cs.cls.__qualname__}")
        init = cs.cls.__dict__.get("__init__")
        for obj in self._instances(cs.cls):
            d = getattr(obj, "__dict__", None)
            if not isinstance(d, dict):
                continue
            own = type(obj).__init__
            code = getattr(own, "__code__", None)
            if own is not init and (code is None or "__init__" not in code.co_names):
                continue
            for name, value in cs.op.body.fills:
                if name in d or hasattr(type(getattr(type(obj), name, None)), "__set__"):
                    continue
                self.j.snapshot_instance(obj)
                d[name] = value
                self.counts.fields_filled += 1
