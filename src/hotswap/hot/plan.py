"""The plan of a hot upgrade as data: what the diff decided (ops), what prepare compiled (steps).

The diff (:mod:`.diff`) turns two versions of a module into a :class:`ModuleDiff` whose
:class:`BodyPlan` lists one *op* per unit that must change, in new-source order:

- :class:`PatchDef`: a changed ``def`` with unchanged decorators, patched in place;
- :class:`Exec`: a statement to run in the live namespace (added, changed, re-decorated);
- :class:`PatchClass`: a changed class with an unchanged header, whose body has its own plan.

Prepare (:mod:`.prepare`) compiles each op against the live module into a *step*
(:class:`ExecStep`, :class:`DefStep`, :class:`ClassStep`) of a :class:`ModulePlan`; the
:class:`Prepared` plan of every changed module is what the commit (:mod:`.commit`) applies.
Nothing here runs code.
"""

from __future__ import annotations

import ast
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap.hot.heap import HeapIndex
from hotswap.hot.names import first_line
from hotswap.hot.tree import PathMap
from hotswap.hot.verdict import Reason

if TYPE_CHECKING:
    from hotswap.hot.check import Analysis
    from hotswap.hot.codeobjects import CodeMap
    from hotswap.hot.fragment import Capture

Def = ast.FunctionDef | ast.AsyncFunctionDef
CODE_CHANGE = "__code_change__"

# -- ops: what the diff decided -----------------------------------------------------------------


@dataclass
class PatchDef:
    """A changed ``def`` with unchanged decorators: patch the live function in place."""

    node: Def  # the new statement
    qualname: str
    old_node: Def  # the old statement
    why: str = "changed"  # or "defaults" (unchanged text, defaults read a rebound name)

    @property
    def lineno(self) -> int:
        return self.node.lineno

    @property
    def old_firstlineno(self) -> int:
        """``co_firstlineno`` of the old code."""
        return first_line(self.old_node)


@dataclass
class Exec:
    """A statement to run in the live namespace: added, changed, or a re-decorated ``def``."""

    node: ast.stmt
    names: frozenset[str]  # names it binds
    why: str  # "added" | "changed" | "redecorated" | "annotation" | "derived"
    keep: frozenset[str] = frozenset()  # names it binds that a later, unchanged statement binds
    fresh_target: str | None = None  # `x += ...` run again: x must have a new object by then

    @property
    def lineno(self) -> int:
        return self.node.lineno


@dataclass
class PatchClass:
    """A changed class with an unchanged header: apply ``body`` to the live class."""

    name: str
    qualname: str
    node: ast.ClassDef  # new
    old_node: ast.ClassDef
    body: BodyPlan

    @property
    def lineno(self) -> int:
        return self.node.lineno


Op = PatchDef | Exec | PatchClass


@dataclass
class BodyPlan:
    """What to do to one namespace (a module, or a class body), in new-source order."""

    ops: list[Op] = field(default_factory=list)
    removed: frozenset[str] = frozenset()
    doc: tuple[bool, str | None] = (False, None)  # (changed, new docstring)
    annotations: tuple[str, ...] | None = None  # new order of annotated names, if it changed
    defined: frozenset[str] = frozenset()  # names bound by the new body (all units)
    same: list[tuple[ast.stmt, ast.stmt]] = field(default_factory=list, repr=False)  # unchanged
    fields_changed: bool = False  # annotated names or their values changed (not only types)
    first_bound: dict[str, int] = field(default_factory=dict, repr=False)  # name -> first line
    state_shape: tuple[str, ...] = ()  # how changed methods now shape instance state
    fills: tuple[tuple[str, object], ...] = ()  # (attribute, constant) for old instances
    # (names, reason): an unchanged statement read these names, which another module's upgrade
    # may rebind (a ``from m import`` copy); the commit fails with ``reason`` if it does
    guards: list[tuple[frozenset[str], Reason]] = field(default_factory=list)
    # (op, reason): an unchanged statement that made a container and is run again; the live
    # container must hold only what the statement made (:mod:`.rebuild`), else ``reason``
    containers: list[tuple[Exec, Reason]] = field(default_factory=list)
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (class, why) made anew
    # module level: the names whose call runs other code after the upgrade (changed functions,
    # functions calling them, and such names imported from other modules): an importer's
    # unchanged statement calling one is followed (:func:`~hotswap.hot.derive.changed_code`)
    called: frozenset[str] = frozenset()
    # module level: its unchanged functions that store a value computed from a name the
    # upgrade rebinds (:func:`~hotswap.hot.derive.stores_of`): checked against start-up code
    stores: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        return (
            not self.ops
            and not self.removed
            and not self.doc[0]
            and self.annotations is None
            and not self.guards
        )

    def walk_classes(self) -> Iterator[PatchClass]:
        for op in self.ops:
            if isinstance(op, PatchClass):
                yield op
                yield from op.body.walk_classes()


@dataclass
class ModuleDiff:
    """The definition-level diff of one module, and what it implies."""

    name: str
    plan: BodyPlan
    future_flags: int
    imports: frozenset[str]  # absolute modules the new top level imports (for ordering)
    rebound: frozenset[str]  # module names re-bound by Exec ops (importers may hold the old)
    touched: frozenset[str]  # globals the code run in the window can name (for snapshots)
    code_change: bool  # new module defines __code_change__
    code_change_classes: tuple[str, ...]  # qualnames of new classes defining __code_change__
    refusals: list[Reason] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    import_nodes: tuple[ast.stmt, ...] = field(default=(), repr=False)  # top-level imports (new)
    base_checks: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (class, new bases) to verify live


# -- steps: the ops compiled against the live process ----------------------------------------------


@dataclass
class ExecStep:
    """Run a compiled statement in the live namespace."""

    op: Exec
    code: types.CodeType


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


Step = ExecStep | DefStep | ClassStep


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
    codes: CodeMap  # which new code each old definition becomes
    steps: list[Step] = field(default_factory=list)
    migrate_classes: list[type] = field(default_factory=list)
    state_guards: list[tuple[type, str]] = field(default_factory=list)  # (class, why)
    replace_guards: list[tuple[type, str]] = field(default_factory=list)  # classes made anew
    patches: list[tuple[types.FunctionType, types.CodeType]] = field(default_factory=list)


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
    guards: list[tuple[type, str]] = field(default_factory=list)  # no live instance may exist
    replaced: list[tuple[type, str]] = field(default_factory=list)  # old classes made anew
    data_hooks: list[tuple[types.ModuleType, tuple[str, ...]]] = field(default_factory=list)
    unplanned: frozenset[str] = frozenset()  # changed modules not imported when prepared
    code_registries: dict[int, list[object]] = field(default_factory=dict)  # id(code) -> holders
    star_importers: dict[str, list[types.ModuleType]] = field(default_factory=dict)
    # (list, its entries at prepare, the entries it gets): sys.path and package paths
    path_lists: list[tuple[Any, list[str], list[str]]] = field(default_factory=list)
    # (namespace, name, live container, what its statement makes, reason if they part)
    containers: list[tuple[dict[str, object], str, object, object, Reason]] = field(
        default_factory=list
    )
    prepare_ms: float = 0.0

    def release(self) -> None:
        self.index.release()
