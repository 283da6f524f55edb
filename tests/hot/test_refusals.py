"""What cannot be applied in place is refused before anything changed (promise 9's first half)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.errors import ChildError
from hotswap.hot import hot_upgrade
from tests.hot import snapshot
from tests.hot.conftest import Hot


def _refused(hot: Hot, v1: dict[str, str], v2: dict[str, str], *modules: str) -> ChildError:
    r1, r2 = hot.release(v1), hot.release(v2)
    hot.start(r1, *modules)
    before = snapshot.take(hot.pkg)
    with pytest.raises(ChildError) as err:
        hot_upgrade(r2, current=r1, no_quiesce=True)
    after = snapshot.take(hot.pkg)
    assert before == after, before.diff(after)
    assert err.value.code == "hot_upgrade_refused"
    assert "use a blue-green upgrade" in err.value.message
    return err.value


def _codes(err: ChildError) -> set[str]:
    return {r["code"] for r in err.details["reasons"]}


def test_slots_change_refused_before_anything_changed(hot: Hot) -> None:
    # a live instance holds the old layout (without one the class is made anew)
    v1 = {"m.py": "class P:\n    __slots__ = ('x',)\n    def f(self):\n        return 1\nO = P()\n"}
    v2 = {"m.py": v1["m.py"].replace("('x',)", "('x', 'y')").replace("return 1", "return 2")}
    err = _refused(hot, v1, v2, "m")
    assert _codes(err) == {"class_layout"} and "__slots__" in err.message


def test_bases_change_refused_before_anything_changed(hot: Hot) -> None:
    v1 = {"m.py": "class A: pass\nclass B: pass\nclass C(A):\n    pass\nO = C()\n"}
    v2 = {"m.py": v1["m.py"].replace("C(A)", "C(A, B)")}
    err = _refused(hot, v1, v2, "m")
    assert _codes(err) == {"class_layout"} and "bases" in err.message


def test_metaclass_change_refused(hot: Hot) -> None:
    v1 = {"m.py": "import abc\nclass C:\n    pass\nO = C()\n"}
    v2 = {"m.py": "import abc\nclass C(metaclass=abc.ABCMeta):\n    pass\nO = C()\n"}
    assert _codes(_refused(hot, v1, v2, "m")) == {"class_layout"}


def test_native_extension_change_refused_before_anything_changed(hot: Hot) -> None:
    v1 = {"m.py": "def f():\n    return 1\n", "_speed.cpython-311-x86_64-linux-gnu.so": "ELF1"}
    v2 = {"m.py": "def f():\n    return 2\n", "_speed.cpython-311-x86_64-linux-gnu.so": "ELF2"}
    err = _refused(hot, v1, v2, "m")
    assert _codes(err) == {"native_extension"}


def test_enum_member_removed_refused(hot: Hot) -> None:
    v1 = {"m.py": "import enum\nclass E(enum.Enum):\n    A = 1\n    B = 2\n"}
    v2 = {"m.py": "import enum\nclass E(enum.Enum):\n    A = 1\n"}
    assert _codes(_refused(hot, v1, v2, "m")) == {"enum_members"}


def test_flag_member_added_refused(hot: Hot) -> None:
    v1 = {"m.py": "import enum\nclass F(enum.Flag):\n    A = 1\n"}
    v2 = {"m.py": "import enum\nclass F(enum.Flag):\n    A = 1\n    B = 2\n"}
    assert _codes(_refused(hot, v1, v2, "m")) == {"enum_members"}


def test_dataclass_field_without_default_refused(hot: Hot) -> None:
    v1 = {"m.py": "import dataclasses\n@dataclasses.dataclass\nclass D:\n    a: int\n"}
    v2 = {"m.py": "import dataclasses\n@dataclasses.dataclass\nclass D:\n    a: int\n    b: int\n"}
    assert _codes(_refused(hot, v1, v2, "m")) == {"dataclass_fields"}


def test_live_closure_needing_a_new_free_variable_refused(hot: Hot) -> None:
    v1 = {
        "m.py": """
            def make(step, scale):
                def inc(x):
                    return x + step
                return inc
            HANDLER = make(1, 10)
        """
    }
    v2 = {"m.py": v1["m.py"].replace("return x + step", "return (x + step) * scale")}
    err = _refused(hot, v1, v2, "m")
    assert _codes(err) == {"closure"} and "'scale'" in err.message


def test_rebinding_an_object_unchanged_decorators_registered_on_refused(hot: Hot) -> None:
    v1 = {
        "m.py": """
            class App:
                def __init__(self, title):
                    self.routes = {}
                def get(self, path):
                    def deco(fn):
                        self.routes[path] = fn
                        return fn
                    return deco
            app = App("one")
            @app.get("/")
            def index():
                return 1
        """
    }
    v2 = {**v1, "m.py": v1["m.py"].replace('App("one")', 'App("two")')}
    err = _refused(hot, v1, v2, "m")
    assert _codes(err) == {"stale_registration"}


def test_syntax_error_refused(hot: Hot) -> None:
    v1 = {"m.py": "def f():\n    return 1\n"}
    v2 = {"m.py": "def f(:\n    return 2\n"}
    assert _codes(_refused(hot, v1, v2, "m")) == {"syntax_error"}


def test_unloaded_module_changes_are_not_analysed(hot: Hot, tmp_path: Path) -> None:
    # a layout change in a module the process never imported cannot hurt it
    v1 = {"m.py": "X = 1\n", "cold.py": "class P:\n    __slots__ = ('x',)\n"}
    v2 = {"m.py": "X = 2\n", "cold.py": "class P:\n    __slots__ = ('x', 'y')\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    hot.upgrade(r2)
    assert m.X == 2
