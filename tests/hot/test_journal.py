"""The undo journal, the closure writer and the heap index, each on its own."""

from __future__ import annotations

import enum
import gc
import sys
import types

import pytest

from hotswap.hot import closure
from hotswap.hot.heap import HeapIndex
from hotswap.hot.journal import Journal, record_sys_modules


def test_rollback_restores_containers_in_place() -> None:
    d, lst, s = {"a": 1}, [1, 2], {1}
    j = Journal()
    for c in (d, lst, s):
        j.snapshot_container(c)
    d["b"] = 2
    del d["a"]
    lst.append(3)
    s.clear()
    assert j.rollback() == []
    assert d == {"a": 1} and lst == [1, 2] and s == {1}


def test_rollback_restores_class_dict_through_type_setattr() -> None:
    class Color(enum.Enum):
        RED = 1

    red = Color.RED
    j = Journal()
    j.snapshot_class(Color)  # what the commit does before it writes to a class
    type.__setattr__(Color, "hello", lambda self: "hi")
    type.__setattr__(Color, "__eq__", lambda self, other: True)
    type.__setattr__(Color, "RED", "replaced")  # behind the journal's back, within the class
    assert j.rollback() == []
    assert Color.RED is red and "hello" not in Color.__dict__
    assert (Color.RED == 1) is False  # the slot wrapper followed the dict back


def test_rollback_restores_function_code_closure_and_defaults() -> None:
    def make(x: int):  # type: ignore[no-untyped-def]
        def f(a: int = 1) -> int:
            return a + x

        return f

    f = make(10)
    code, cells = f.__code__, f.__closure__
    j = Journal()
    j.snapshot_function(f)
    f.__defaults__ = (5,)
    f.__dict__["tag"] = 1
    closure.set_closure(f, None, (lambda a=1: a * 2).__code__)
    assert f(3) == 6
    assert j.rollback() == []
    assert f.__code__ is code and f.__closure__ is cells and f() == 11 and "tag" not in f.__dict__


def test_rollback_keeps_going_after_a_failing_record() -> None:
    d = {"a": 1}
    j = Journal()
    j.snapshot_dict(d)
    j.record(lambda: (_ for _ in ()).throw(RuntimeError("bad record")))
    d["a"] = 2
    errors = j.rollback()
    assert errors == ["RuntimeError: bad record"] and d == {"a": 1}


def test_sys_modules_undo_forgets_new_modules_and_their_parent_attribute() -> None:
    parent = types.ModuleType("hs_journal_parent")
    sys.modules[parent.__name__] = parent
    try:
        j = Journal()
        record_sys_modules(j)
        child = types.ModuleType("hs_journal_parent.child")
        sys.modules[child.__name__] = child
        parent.child = child  # type: ignore[attr-defined]
        j.rollback()
        assert "hs_journal_parent.child" not in sys.modules and not hasattr(parent, "child")
    finally:
        sys.modules.pop(parent.__name__, None)


def test_instance_snapshot_covers_slots_and_one_level_of_containers() -> None:
    class Slotted:
        __slots__ = ("a", "b")

    class Plain:
        pass

    s, p = Slotted(), Plain()
    s.a = [1]
    p.items = {"k": 1}  # type: ignore[attr-defined]
    j = Journal()
    j.snapshot_instance(s)
    j.snapshot_instance(p)
    s.a.append(2)
    s.b = 1
    p.items["k"] = 2  # type: ignore[attr-defined]
    p.new = 1  # type: ignore[attr-defined]
    j.rollback()
    assert s.a == [1] and not hasattr(s, "b") and p.items == {"k": 1} and not hasattr(p, "new")  # type: ignore[attr-defined]


def test_closure_writer_probed_the_layout() -> None:
    assert closure.available() is (sys.implementation.name == "cpython")


def test_set_closure_adds_a_class_cell() -> None:
    class Base:
        def who(self) -> str:
            return "base"

    class Child(Base):
        def who(self) -> str:
            return "child"

    src = "class Child:\n    def who(self):\n        return 'child+' + super().who()\n"
    new_code = next(
        c for c in compile(src, "x", "exec").co_consts[0].co_consts if isinstance(c, types.CodeType)
    )
    fn = Child.__dict__["who"]
    closure.set_closure(fn, (closure.cell(Child),), new_code)
    assert Child().who() == "child+base"
    with pytest.raises(ValueError):
        closure.set_closure(fn, None, new_code)  # wrong number of cells: refused, not written


def test_heap_index_catches_objects_created_after_the_scan() -> None:
    class Tracked:
        pass

    mod = types.ModuleType("hs_heap_test")
    early = Tracked()
    index = HeapIndex([mod.__dict__], {Tracked})
    index.scan()
    try:
        assert not gc.isenabled()
        late = Tracked()
        gc.collect(0)  # even a young collection in between: the catch-up widens to gen 1
        later = Tracked()
        index.catch_up()
        found = index.instances[Tracked]
        assert any(o is early for o in found) and any(o is late for o in found)
        assert any(o is later for o in found)
        assert index.young_scanned < len(gc.get_objects())  # not a walk of the heap
    finally:
        index.release()
    assert gc.isenabled() and index.instances == {}
