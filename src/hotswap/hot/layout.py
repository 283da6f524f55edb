"""Class layouts: the class changes that cannot be applied to a live class, and how a live class
will be patched.

Two layers. From the syntax alone (:func:`header_change`, :func:`class_body_refusals`): bases,
metaclass, class keywords, class decorators, ``__slots__``, the fields of a
``dataclass(slots=True)`` and enum members removed or revalued. Against the live class
(:func:`classify`, in prepare): enum members changed in place, a ``Flag`` whose members change,
dataclass fields nobody can fill, a metaclass that derives state at class creation, and
``NamedTuple`` fields. :func:`classify` also decides how the commit re-processes the class
(``plain``, ``enum`` or ``dataclass``).
"""

from __future__ import annotations

import abc
import ast
import builtins
import enum
import types
import typing

from hotswap.hot.names import ann_names, bound_names, dump, dumps
from hotswap.hot.plan import ClassStep, Exec, ModuleDiff
from hotswap.hot.verdict import Reason

_ENUM_BASES = ("Enum", "IntEnum", "StrEnum", "Flag", "IntFlag", "ReprEnum")

# -- from the syntax ----------------------------------------------------------------------------


def header_change(old: ast.ClassDef, new: ast.ClassDef, *, bases: bool = True) -> str | None:
    """Why the header change cannot be applied; ``bases=False`` leaves the bases to
    :func:`dotted_bases` (spelled differently, they may still be the same objects)."""
    if bases and dumps(old.bases) != dumps(new.bases):
        return "its bases changed (instances would need a new layout)"
    if dumps(old.keywords) != dumps(new.keywords):
        return "its metaclass or class keywords changed"
    if dumps(old.decorator_list) != dumps(new.decorator_list):
        return "its class decorators changed (they derive state when the class is created)"
    return None


def dotted_bases(old: ast.ClassDef, new: ast.ClassDef) -> tuple[str, ...] | None:
    """The new bases as dotted names (``typing.Dict``, ``abc.ABC``) when only their spelling
    may have changed: the same number of them, each a plain name or attribute chain ending in
    the same name as before (``t.Generic`` → ``typing.Generic``). The live check
    (:func:`same_bases`) then asks whether they are the class's bases."""
    if dumps(old.bases) == dumps(new.bases) or len(old.bases) != len(new.bases):
        return None
    out = []
    for was, base in zip(old.bases, new.bases, strict=True):
        if _last_name(was) is None or _last_name(was) != _last_name(base):
            return None  # another name altogether: refused without looking
        parts: list[str] = []
        node: ast.expr = base
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        out.append(".".join([node.id, *reversed(parts)]))
    return tuple(out)


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def same_bases(module: types.ModuleType, cls: type, dotted: tuple[str, ...]) -> bool:
    """Do ``dotted`` names, looked up in the live module (namespaces only: nothing runs),
    name exactly ``cls.__bases__``?"""
    if len(dotted) != len(cls.__bases__):
        return False
    for name, base in zip(dotted, cls.__bases__, strict=True):
        head, *rest = name.split(".")
        obj: object = vars(module).get(head, vars(builtins).get(head, _NOTHING))
        for part in rest:
            d = getattr(obj, "__dict__", None)
            if not isinstance(d, dict | types.MappingProxyType) or part not in d:
                return False
            obj = d[part]
        if obj is not base:
            return False
    return True


_NOTHING = object()


def _slots(body: list[ast.stmt]) -> str | None:
    for stmt in body:
        if "__slots__" in bound_names(stmt):
            return dump(stmt)
    return None


def looks_typed_dict(node: ast.ClassDef) -> bool:
    return any(ast.unparse(b).rsplit(".", 1)[-1] == "TypedDict" for b in node.bases)


def looks_enum(node: ast.ClassDef) -> bool:
    for base in node.bases:
        text = ast.unparse(base)
        if text.rsplit(".", 1)[-1] in _ENUM_BASES:
            return True
    return False


def _dataclass_slots(node: ast.ClassDef) -> bool:
    for dec in node.decorator_list:
        if isinstance(dec, ast.Call) and "dataclass" in ast.unparse(dec.func):
            for kw in dec.keywords:
                if kw.arg == "slots" and not (
                    isinstance(kw.value, ast.Constant) and not kw.value.value
                ):
                    return True
    return False


def class_body_refusals(old: ast.ClassDef, new: ast.ClassDef, where: str) -> list[Reason]:
    out: list[Reason] = []
    if _slots(old.body) != _slots(new.body):
        out.append(Reason("class_layout", f"{where}: __slots__ changed", subject=where))
    if _dataclass_slots(new) and ann_names(old.body) != ann_names(new.body):
        out.append(
            Reason(
                "class_layout",
                f"{where}: fields of a dataclass(slots=True) changed (its layout is fixed)",
                subject=where,
            )
        )
    if looks_enum(new):
        old_members = _enum_assignments(old.body)
        new_members = _enum_assignments(new.body)
        for member, value in old_members.items():
            if member not in new_members:
                out.append(
                    Reason(
                        "enum_members",
                        f"{where}.{member}: enum member removed (stored values may hold it)",
                        subject=f"{where}.{member}",
                    )
                )
            elif new_members[member] != value:
                out.append(
                    Reason(
                        "enum_members",
                        f"{where}.{member}: enum member value changed",
                        subject=f"{where}.{member}",
                    )
                )
    return out


def _enum_assignments(body: list[ast.stmt]) -> dict[str, str]:
    out: dict[str, str] = {}
    for stmt in body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            name = stmt.targets[0].id
            if not (name.startswith("_") or isinstance(stmt.value, ast.Lambda)):
                out[name] = dump(stmt.value)
    return out


# -- against the live class -----------------------------------------------------------------------


def classify(step: ClassStep, md: ModuleDiff, reasons: list[Reason], where: str) -> None:
    cls, body = step.cls, step.op.body
    execs = [o for o in body.ops if isinstance(o, Exec)]
    # Annotation-only changes (same names, order and values; only the types changed) update
    # ``__annotations__`` and nothing else where the class derives nothing else from them.
    types_only = body.annotations is not None and not body.fields_changed
    state_change = body.fields_changed or any(
        not isinstance(o.node, ast.FunctionDef | ast.AsyncFunctionDef) and o.why != "annotation"
        for o in execs
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
        if not (state_change or types_only):
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
    typed_dict = meta is getattr(typing, "_TypedDictMeta", None)
    if meta not in (type, abc.ABCMeta) and (state_change or (types_only and not typed_dict)):
        reasons.append(
            Reason(
                "metaclass_state",
                f"{where}: class attributes changed and its metaclass {meta.__qualname__} "
                "derives state when the class is created",
                where,
            )
        )
    elif issubclass(cls, tuple) and hasattr(cls, "_fields") and body.fields_changed:
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
