"""Find the live objects an upgrade must touch without scanning the heap inside the window.

Two kinds of objects cannot be reached from module namespaces alone: closures made by factory
functions (``make_handler()`` returns a new function object each call, sharing one code object)
and instances of classes whose ``__code_change__`` must run. IPython's autoreload calls
``gc.get_referrers`` once per class and jurigged once per code object: each call walks the whole
heap (about 23 ms at a million objects), so their pause grows with the heap.

Here the heap is walked **once, during prepare**, outside the suspension window. Right after,
the cyclic collector is paused (``gc.disable()``; reference counting still frees memory), so every
object allocated from then on stays in generation 0. Inside the window :meth:`HeapIndex.catch_up`
lists only the young generation(s), whose size depends on what ran since prepare, not on the
heap. If someone forces a collection meanwhile, a ``gc.callbacks`` hook notices and the
catch-up widens to the generations that collection could have promoted into (a full
``gc.collect()`` makes it one whole-heap walk; ``heap_rescans`` in the stats says so).

A worker of several that waits for another worker's analysis (:mod:`hotswap.hot.shared`) does
not know yet which modules will change: :meth:`HeapIndex.early` walks the heap for the
functions of every module of the app, and once the analysis is known, :meth:`HeapIndex.narrow`
keeps those of the changed modules. It serves only when no instance is wanted (they are found
by their class, known only from the analysis); otherwise prepare walks the heap as usual. The
same walk finds what holds a few values the upgrade may rebind (:func:`unaccounted` tells
which are held by anything but module namespaces), for the ``derived_state`` check.

Objects hidden by ``gc.freeze()`` are invisible to ``gc.get_objects``. Module- and class-level
functions are still found by :meth:`HeapIndex.walk_module`, which follows module and class
dicts and the usual wrappers (``__wrapped__``, ``__func__``, ``fget``, closures); frozen closures
and instances are not, and the index reports how many objects were frozen.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import gc
import operator
import sys
import types
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, compress, repeat
from typing import Any

from hotswap.hot.tree import class_dict, class_module

FunctionKey = tuple[int, str]  # (id of the module dict, co_qualname)


class HeapIndex:
    """Functions of given modules (by qualname) and instances of given classes."""

    def __init__(
        self,
        module_dicts: Iterable[dict[str, Any]],
        classes: Iterable[type],
        values: Iterable[object] = (),
    ) -> None:
        self._dicts = list(module_dicts)
        self._globals = {id(d) for d in self._dicts}
        self._types = set(classes)
        self._values = list(values)  # whose holders the same walk finds (holders_of)
        self._referrers: list[object] | None = None  # what held _values, once walked for
        # for an early walk: by id, each value's references unaccounted for then (unaccounted)
        self._unaccounted: dict[int, int] | None = None
        self.functions: dict[FunctionKey, list[types.FunctionType]] = {}
        self.instances: dict[type, list[object]] = {}
        self.wrappers: dict[int, list[object]] = {}  # id(function) -> objects wrapping it
        self.late: list[types.FunctionType] = []  # functions found by catch_up (made since scan)
        self._early: list[types.FunctionType] = []  # found by early(), until narrow()
        self._catching_up = False
        self._seen: set[int] = set()
        self._gc_was_enabled = False
        self._holding = False
        self._max_collected = -1
        self.frozen = 0
        self.scanned = 0
        self.young_scanned = 0
        self.heap_rescans = 0
        self.walks = 0  # of the whole heap, at prepare: early, scan, holders_of

    # -- prepare ----------------------------------------------------------------------------

    def scan(self) -> None:
        """Walk the whole heap once and pause the cyclic collector until :meth:`release`."""
        self._pause()
        # One walk of the heap in C: every tracked object that refers to a changed module's
        # globals (its functions, closures included) or to a wanted class (its instances:
        # an instance of a class defined in Python refers to its class). The same objects a
        # walk of gc.get_objects() would pick, without a Python-level test of each object.
        # And in the same walk, what holds one of the given values.
        objs = gc.get_referrers(*self._dicts, *self._types, *self._values)
        self.walks += 1
        self.scanned = len(objs)
        self._take(objs)
        if self._values:
            self._referrers = _holders(objs, self._own())
        del objs

    def holders_of(
        self, values: list[object], unaccounted_now: dict[int, int] | None = None
    ) -> list[object]:
        """What refers to one of ``values`` (and maybe more): found by the walk of :meth:`scan`
        or :meth:`early` if it was given them, else by a walk now. The early walk serves only
        if each value's references unaccounted for (:func:`unaccounted`) are as many now
        (``unaccounted_now``) as they were then: else something took or dropped one since."""
        if not values:
            return []
        ids = {id(v) for v in values}
        if self._referrers is not None and ids <= {id(v) for v in self._values}:
            then, now = self._unaccounted, unaccounted_now or {}
            if then is None or all(then.get(i) == now.get(i) for i in ids):  # None: at prepare
                return self._referrers
        self.walks += 1
        return gc.get_referrers(*values)

    def _own(self) -> tuple[object, ...]:
        """The containers the index keeps what a walk looks for in (found by the walk)."""
        return (self._dicts, self._types, self._values)

    def owned_ids(self) -> list[int]:
        """The ids of the values this index holds a reference to (:func:`unaccounted`)."""
        return list(map(id, self._values))

    @classmethod
    def early(
        cls,
        module_dicts: Iterable[dict[str, Any]],
        values: Sequence[object] = (),
        unaccounted_then: dict[int, int] | None = None,
    ) -> HeapIndex | None:
        """The functions of all these modules, before the changed ones are known (see
        :meth:`narrow`); None if one of the modules runs with builtins of its own. In the same
        walk, what holds ``values`` (a few the upgrade may rebind, with their references
        unaccounted for now, ``unaccounted_then``; see :meth:`holders_of`).

        Many targets would make ``gc.get_referrers`` slow (each reference it visits is
        compared with each of them), so the walk asks for the one thing every function refers
        to: the builtins its globals had when it was made (CPython keeps them on the function
        since 3.10). A module whose ``__builtins__`` is not the interpreter's is not covered:
        then there is no early walk."""
        dicts = list(module_dicts)
        shared = builtins.__dict__
        for d in dicts:
            b = d.get("__builtins__", shared)
            if (b.__dict__ if isinstance(b, types.ModuleType) else b) is not shared:
                return None
        index = cls(dicts, (), values)
        index._pause()
        objs = gc.get_referrers(shared, *values)
        index.walks = 1
        index.scanned = len(objs)
        # thousands of functions: tested in C (map, compress), keyed only once narrowed
        ftype, ours = types.FunctionType, index._globals.__contains__
        fns = list(compress(objs, map(operator.is_, map(type, objs), repeat(ftype))))
        if values:
            index._referrers = _holders(objs, (values, *index._own()))
            index._unaccounted = dict(unaccounted_then or {})
        del objs
        index._early = list(compress(fns, map(ours, map(id, map(_globals_of, fns)))))
        return index

    def covers(self, module_dicts: Iterable[dict[str, Any]]) -> bool:
        return self._holding and all(id(d) in self._globals for d in module_dicts)

    def narrow(self, module_dicts: Iterable[dict[str, Any]]) -> None:
        """Keep only the functions of these modules (all of them covered, see :meth:`covers`)."""
        self._dicts = list(module_dicts)
        self._globals = {id(d) for d in self._dicts}
        early, self._early = self._early, []
        keep = self._globals.__contains__
        for fn in compress(early, map(keep, map(id, map(_globals_of, early)))):
            self._add_function(fn)

    def walk_module(self, module: types.ModuleType) -> None:
        """Add the functions reachable from a module's namespace and its classes' dicts."""
        mdict = module.__dict__
        if id(mdict) not in self._globals:
            return
        visited: set[int] = set()
        stack: list[tuple[Any, int]] = [(v, 0) for v in mdict.values()]
        while stack:
            obj, depth = stack.pop()
            if depth > 6 or id(obj) in visited:
                continue
            visited.add(id(obj))
            children: list[object] = []
            # by the value's type, never isinstance: a failed isinstance asks the value for
            # its __class__, which runs a metaclass's or a proxy's attribute hook
            kind = type(obj)
            if kind is types.FunctionType:
                if id(obj.__globals__) in self._globals:
                    self._add_function(obj)
                cells = obj.__closure__ or ()
                children.extend(c.cell_contents for c in cells if _full(c))
            elif issubclass(kind, type):
                if class_module(obj) != module.__name__:
                    continue
                children.extend(class_dict(obj).values())
            elif issubclass(kind, staticmethod | classmethod):
                children.append(obj.__func__)
            elif issubclass(kind, property):
                fns = (obj.fget, obj.fset, obj.fdel)
                children.extend(f for f in fns if f is not None)
            elif issubclass(kind, functools.cached_property | functools.partial):
                children.append(obj.func)
            wrapped = _own_wrapped(obj)
            if wrapped is not None:
                children.append(wrapped)
                holders = self.wrappers.setdefault(id(wrapped), [])
                if not any(h is obj for h in holders):
                    holders.append(obj)
            stack.extend((child, depth + 1) for child in children)

    # -- window -----------------------------------------------------------------------------

    def catch_up(self) -> None:
        """Add objects created since :meth:`scan`: a walk of the young generation(s) only."""
        if not self._holding:
            return
        self._catching_up = True
        top = min(self._max_collected + 1, 2)
        if top >= 2:
            self.heap_rescans += 1
        for gen in range(top + 1):
            objs = gc.get_objects(generation=gen)
            self.young_scanned += len(objs)
            self._take(objs)
            del objs

    def release(self) -> None:
        """Resume the cyclic collector (if it ran before) and drop every reference held."""
        if self._holding:
            self._holding = False
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self._on_gc)
            if self._gc_was_enabled:
                gc.enable()
        self.functions.clear()
        self.instances.clear()
        self.wrappers.clear()
        self.late.clear()
        self._early.clear()
        self._referrers = None
        self._values.clear()
        self._seen.clear()
        self._dicts.clear()

    # -- internals --------------------------------------------------------------------------

    def _pause(self) -> None:
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        # Promote what was allocated so far out of generation 0, so that the young generation
        # the window walks holds only what is created from now on.
        gc.collect(0)
        gc.callbacks.append(self._on_gc)
        self._holding = True
        self._max_collected = -1
        self.frozen = gc.get_freeze_count()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._max_collected = max(self._max_collected, info.get("generation", 2))

    def _take(self, objs: list[object]) -> None:
        ftype = types.FunctionType
        globals_ids = self._globals
        # Comprehensions first: the per-object test runs at C speed, Python only sees the hits.
        for fn in [o for o in objs if type(o) is ftype]:
            if id(fn.__globals__) in globals_ids:
                self._add_function(fn)
        wanted = self._types
        if wanted:
            seen = self._seen
            for o in [o for o in objs if type(o) in wanted]:
                if id(o) not in seen:
                    seen.add(id(o))
                    self.instances.setdefault(type(o), []).append(o)

    def _add_function(self, fn: types.FunctionType) -> None:
        if id(fn) in self._seen:
            return
        self._seen.add(id(fn))
        if self._catching_up:
            self.late.append(fn)
        code = fn.__code__
        key = (id(fn.__globals__), code.co_qualname)
        self.functions.setdefault(key, []).append(fn)

    def functions_of(self, module: types.ModuleType, qualname: str) -> list[types.FunctionType]:
        return self.functions.get((id(module.__dict__), qualname), [])


_globals_of = operator.attrgetter("__globals__")


def _full(c: Any) -> bool:
    try:
        c.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _own_wrapped(obj: object) -> object | None:
    """``obj.__dict__["__wrapped__"]`` without running any ``__getattr__`` of ``obj``'s class."""
    if issubclass(type(obj), types.ModuleType | type):
        return None
    try:
        d = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        return None
    return d.get("__wrapped__") if isinstance(d, dict) else None


# referrers that hold no value that matters (a function by its name at most), and frames: a
# running frame refers to its globals and builtins, and kept, it would keep its locals alive
_NOT_HOLDERS = frozenset({types.FunctionType, types.FrameType})


def _holders(objs: list[object], own: Iterable[object]) -> list[object]:
    """Of the objects a walk found, those that may hold a copy (tested in C), less the
    containers the walk was asked about from (``own``)."""
    kept = list(compress(objs, map(operator.not_, map(_NOT_HOLDERS.__contains__, map(type, objs)))))
    mine = {id(o) for o in own}.__contains__
    return list(compress(kept, map(operator.not_, map(mine, map(id, kept)))))


def unaccounted(
    values: list[object],
    namespaces: Iterable[dict[str, Any]],
    owned: Iterable[Iterable[int]] = (),
) -> dict[int, int]:
    """By id, how many references to each of ``values`` (a list holding each once) neither a
    slot of these ``namespaces`` nor the lists whose ids are ``owned`` (a snapshot's, an
    index's) account for, where there are any: only such a value can be held by anything
    else, and only its holders need a walk of the heap. Its reference count tells; the
    references the counting itself takes are measured on an object of its own, held the same
    way, so the rule holds whatever the interpreter adds. An immortal value (3.12+) never adds
    up, and is kept."""
    if not values:
        return {}
    want = {id(v) for v in values}.__contains__
    known = Counter(filter(want, map(id, chain.from_iterable(d.values() for d in namespaces))))
    for ids in owned:
        known.update(filter(want, ids))
    probe = [object()]
    (base,) = _refcounts(probe)
    out: dict[int, int] = {}
    for v, n in zip(values, _refcounts(values), strict=True):
        if n - base != known[id(v)]:
            out[id(v)] = n - base - known[id(v)]
    return out


def _refcounts(values: list[object]) -> list[int]:
    return list(map(sys.getrefcount, values))
