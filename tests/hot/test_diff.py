"""The definition-level diff (pure: source text in, plan out; no imports, no live objects)."""

from __future__ import annotations

import textwrap

import pytest

from hotswap.hot.diff import diff_module
from hotswap.hot.names import bound_names, may_import_from, parse
from hotswap.hot.plan import Exec, PatchClass, PatchDef


def _diff(old: str, new: str):  # type: ignore[no-untyped-def]
    return diff_module("m", textwrap.dedent(old), textwrap.dedent(new), "m.py")


def test_unchanged_statements_are_not_in_the_plan() -> None:
    src = "import os\nCACHE = {}\ndef f():\n    return 1\n"
    md = _diff(src, src)
    assert md.plan.is_empty() and not md.refusals


def test_changed_def_is_patched_not_rerun() -> None:
    md = _diff("@deco\ndef f():\n    return 1\n", "@deco\ndef f():\n    return 2\n")
    (op,) = md.plan.ops
    assert isinstance(op, PatchDef) and op.qualname == "f" and op.old_firstlineno == 1


def test_redecorated_def_runs_again_with_a_warning() -> None:
    md = _diff("def f():\n    return 1\n", "@cache\ndef f():\n    return 1\n")
    (op,) = md.plan.ops
    assert isinstance(op, Exec) and op.why == "redecorated" and md.warnings


def test_changed_plain_statement_is_rerun_and_its_name_kept() -> None:
    md = _diff("X = 1\nY = 2\n", "X = 10\n")
    assert [type(op) for op in md.plan.ops] == [Exec]
    assert md.plan.removed == frozenset({"Y"}) and md.rebound == frozenset({"X"})


def test_class_body_diff_and_header_refusal() -> None:
    md = _diff(
        "class C:\n    a = 1\n    def m(self):\n        return 1\n",
        "class C:\n    a = 1\n    b = 2\n    def m(self):\n        return 2\n",
    )
    (op,) = md.plan.ops
    assert isinstance(op, PatchClass)
    assert [type(o) for o in op.body.ops] == [Exec, PatchDef]
    # a module-level class whose header changed is made anew (prepare refuses it while
    # instances or subclasses of the old one live); a nested one is refused
    anew = _diff("class C(A):\n    pass\n", "class C(B):\n    pass\n")
    assert [o.why for o in anew.plan.ops if isinstance(o, Exec)] == ["replaced"]
    assert [n for n, _why in anew.plan.replaced] == ["C"] and not anew.refusals
    nested = "class O:\n    class C({}):\n        pass\n"
    refused = _diff(nested.format("A"), nested.format("B"))
    assert [r.code for r in refused.refusals] == ["class_layout"]


def test_property_setter_pairs_are_matched_by_rank() -> None:
    old = (
        "class C:\n    @property\n    def x(self):\n        return 1\n"
        "    @x.setter\n    def x(self, v):\n        pass\n"
    )
    new = old.replace("return 1", "return 2")
    (op,) = _diff(old, new).plan.ops
    assert isinstance(op, PatchClass)
    (patch,) = op.body.ops
    assert isinstance(patch, PatchDef) and patch.old_firstlineno == 2


def test_stale_registration_refused_and_defaults_reevaluated() -> None:
    old = "app = App(1)\n@app.get('/')\ndef index():\n    pass\nN = 1\ndef f(n=N):\n    return n\n"
    md = _diff(old, old.replace("App(1)", "App(2)"))
    assert [r.code for r in md.refusals] == ["stale_registration"]
    md = _diff(old, old.replace("N = 1", "N = 2"))
    assert not md.refusals
    assert any(isinstance(op, PatchDef) and op.why == "defaults" for op in md.plan.ops)


def test_changed_import_list_is_not_a_stale_registration() -> None:
    old = "from x import a, b\n@a.route('/')\ndef f():\n    pass\n"
    md = _diff(old, old.replace("a, b", "a, b, c"))
    assert not md.refusals


def test_bound_names() -> None:
    tree = parse(
        "import a.b\nfrom c import d as e\nx, (y, *z) = 1, (2, 3)\nfor i in []: pass\n"
        "with f() as g: pass\ntry:\n    pass\nexcept E as err:\n    pass\n"
        "if (w := 1): pass\nclass K: pass\nasync def h(): pass\n",
        "t.py",
    )
    names: set[str] = set()
    for stmt in tree.body:
        names |= bound_names(stmt)
    assert names == {"a", "e", "x", "y", "z", "i", "g", "err", "w", "K", "h"}


def test_syntax_error_is_a_refusal_not_an_exception() -> None:
    md = _diff("x = 1\n", "x = (\n")
    assert [r.code for r in md.refusals] == ["syntax_error"]


@pytest.mark.parametrize(
    ("importer", "text", "modules", "want"),
    [
        ("pkg.a", "from .b import X", ["pkg.b"], True),  # relative: same top-level package
        ("pkg.sub.a", "from ..b import X", ["pkg.b"], True),
        ("app.main", "from pkg.b import X", ["pkg.b"], True),  # absolute: spells the top name
        ("app.main", "import pkg.b as b", ["pkg.b"], True),
        ("app.main", "from other import X", ["pkg.b"], False),
        ("app.main", "from . import X", ["pkg.b"], False),  # relative, other package
        ("app.main", "from other import X", ["pkg.b", "app.util"], True),
        ("app.main", "from other import X", [], False),
    ],
)
def test_may_import_from(importer: str, text: str, modules: list[str], want: bool) -> None:
    assert may_import_from(importer, text, modules) is want
