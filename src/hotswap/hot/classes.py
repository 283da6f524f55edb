"""Class fragments applied to live classes, inside the window.

A fragment (:mod:`.fragment`) ran the changed statements of a class body over a copy of the live
class's namespace; here what they bound is written onto the live class through
``type.__setattr__`` (so slot wrappers follow), removed names are deleted, ``__annotations__``
follows the new body, new enum members are created as members of the *same* enum class
(``Color.RED is old_red`` holds), dataclasses are processed again so ``__init__``, ``__repr__``,
``__eq__`` and ``fields()`` know the new fields, and ABC abstract sets are updated.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from hotswap.errors import ChildError
from hotswap.hot.journal import Journal
from hotswap.hot.plan import ClassStep, Exec, ModulePlan, PatchClass, PatchDef, Prepared
from hotswap.hot.stats import Counts

_TYPE_CHECK: Callable[[object, str], object] = typing._type_check  # type: ignore[attr-defined]
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


class ClassPatching:
    """The class steps of :class:`~hotswap.hot.commit.Commit` (a part of it)."""

    p: Prepared
    j: Journal
    counts: Counts
    _copy_def: Callable[[ModulePlan, PatchDef, object], None]

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
            own = {n: ann[n] for n in body.annotations if n in ann}
            new_fn = getattr(cls.__dict__.get("__new__"), "__func__", None)  # a staticmethod
            if _typed_namedtuple(cls) and isinstance(new_fn, types.FunctionType):
                # what typing.NamedTuple's metaclass stores: a string as a ForwardRef, None
                # as NoneType; the generated __new__ shares the dict
                own = {n: _TYPE_CHECK(t, f"field {n} must be a type") for n, t in own.items()}
                self.j.snapshot_function(new_fn)
                new_fn.__annotations__ = own
            type.__setattr__(cls, "__annotations__", own)
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


def _typed_namedtuple(cls: type) -> bool:
    """A class made by ``typing.NamedTuple`` (its ``__new__`` shares its annotations)."""
    d = cls.__dict__
    new = getattr(d.get("__new__"), "__func__", None)
    return (
        issubclass(cls, tuple)
        and "_fields" in d
        and isinstance(d.get("__annotations__"), dict)
        and getattr(new, "__annotations__", None) is d["__annotations__"]
    )


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
