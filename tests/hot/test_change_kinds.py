"""Each change kind of the table in research/hot-reload-anchors.md §12, applied to live modules.

Every test holds references taken *before* the upgrade (``from`` imports in another module,
callbacks in a registry, bound methods, instances) and checks they run the new code after it:
the failure modes of IPython autoreload, jurigged and ``importlib.reload``.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from tests.hot.conftest import Hot


def test_function_body_edit_reaches_every_reference(hot: Hot) -> None:
    v1 = {
        "core.py": """
            CALLBACKS = []
            def greet(name):
                return f"hello {name} v1"
            CALLBACKS.append(greet)
        """,
        "views.py": "from PKG.core import greet\n",
    }
    v2 = {**v1, "core.py": v1["core.py"].replace("hello {name} v1", "hi {name} v2")}
    _, r2, (core, views) = hot.v1_v2(v1, v2, "core", "views")
    imported, callback, obj = views.greet, core.CALLBACKS[0], core.greet
    stats = hot.upgrade(r2)
    assert imported("a") == callback("a") == core.greet("a") == "hi a v2"
    assert core.greet is obj  # patched in place, not replaced
    assert [obj] == core.CALLBACKS  # the statement that filled the registry did not run again
    assert stats.functions_patched == 1 and stats.modules_changed == (f"{hot.pkg}.core",)


def test_new_and_removed_function(hot: Hot) -> None:
    v1 = {"core.py": "def old():\n    return 'old'\n\ndef keep():\n    return 1\n"}
    v2 = {"core.py": "def keep():\n    return new()\n\ndef new():\n    return 2\n"}
    _, r2, (core,) = hot.v1_v2(v1, v2, "core")
    old_ref = core.old
    stats = hot.upgrade(r2)
    assert core.keep() == 2 and core.new() == 2
    assert not hasattr(core, "old")
    assert old_ref() == "old"  # references held elsewhere stay callable, as in IPython
    assert stats.names_removed == 1


def test_method_edit_seen_by_existing_instances_and_bound_methods(hot: Hot) -> None:
    v1 = {
        "m.py": """
            class Box:
                def __init__(self):
                    self.n = 3
                def get(self):
                    return self.n
        """
    }
    v2 = {"m.py": v1["m.py"].replace("return self.n", "return self.n * 10")}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    box = m.Box()
    bound = box.get
    cls = m.Box
    hot.upgrade(r2)
    assert box.get() == bound() == 30
    assert m.Box is cls and isinstance(box, m.Box)


def test_new_class_attribute_and_method(hot: Hot) -> None:
    v1 = {"m.py": "class Box:\n    size = 1\n    def get(self):\n        return self.size\n"}
    v2 = {
        "m.py": """
            class Box:
                size = 1
                color = "red"
                LIMIT = size * 5
                def get(self):
                    return self.size
                def describe(self):
                    return f"{self.color} {self.LIMIT}"
        """
    }
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    box = m.Box()
    stats = hot.upgrade(r2)
    assert box.describe() == "red 5" and box.color == "red"
    assert stats.classes_patched == 1


def test_new_descriptor_gets_set_name(hot: Hot) -> None:
    v1 = {"m.py": "import functools\nclass Box:\n    n = 2\n"}
    v2 = {
        "m.py": "import functools\nclass Box:\n    n = 2\n"
        "    @functools.cached_property\n    def double(self):\n        return self.n * 2\n"
    }
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    box = m.Box()
    hot.upgrade(r2)
    assert box.double == 4 and box.__dict__["double"] == 4


def test_changed_signature_and_defaults(hot: Hot) -> None:
    v1 = {"m.py": "def f(a, b=1, *, c=2) -> int:\n    return a + b + c\n"}
    v2 = {"m.py": "def f(a, b=10, d=0, *, c=20, e=5) -> str:\n    return str(a + b + c + d + e)\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    f = m.f
    hot.upgrade(r2)
    assert f(1) == "36" and f(1, 1, 1, c=1, e=1) == "5"
    assert f.__defaults__ == (10, 0) and f.__kwdefaults__ == {"c": 20, "e": 5}
    assert f.__annotations__ == {"return": "str"} or f.__annotations__ == {"return": str}


def test_method_defaults_read_class_scope_names(hot: Hot) -> None:
    # jurigged #30: defaults referring to class-scope names raise NameError there
    v1 = {"m.py": "class C:\n    LIMIT = 3\n    def f(self, n=LIMIT):\n        return n\n"}
    v2 = {"m.py": "class C:\n    LIMIT = 3\n    def f(self, n=LIMIT * 2):\n        return n\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    c = m.C()
    hot.upgrade(r2)
    assert c.f() == 6


def test_new_module_imported_and_removed_module_dropped(hot: Hot) -> None:
    v1 = {"gone.py": "X = 1\n", "main.py": "def feature():\n    return 'missing'\n"}
    v2 = {
        "fresh.py": "def hello():\n    return 'new-module-loaded'\n",
        "main.py": "from PKG import fresh\n\ndef feature():\n    return fresh.hello()\n",
    }
    _, r2, (gone, main) = hot.v1_v2(v1, v2, "gone", "main")
    stats = hot.upgrade(r2)
    assert main.feature() == "new-module-loaded"
    assert f"{hot.pkg}.fresh" in sys.modules
    assert sys.modules[f"{hot.pkg}.fresh"].__file__.startswith(str(r2))
    assert f"{hot.pkg}.gone" not in sys.modules
    assert stats.modules_added == (f"{hot.pkg}.fresh",)
    assert stats.modules_removed == (f"{hot.pkg}.gone",)
    assert gone.X == 1  # holders of the old module object keep it (nothing can purge it)


def test_module_file_and_path_switch_to_the_new_release(hot: Hot) -> None:
    v1 = {"a.py": "A = 1\n", "sub/__init__.py": "", "sub/b.py": "B = 1\n"}
    v2 = {**v1, "a.py": "A = 2\n", "sub/c.py": "C = 3\n"}
    r1, r2, (pkg, a, sub) = hot.v1_v2(v1, v2, "", "a", "sub")
    hot.upgrade(r2)
    assert a.__file__ == str(r2 / "lib" / hot.pkg / "a.py")
    assert a.__spec__.origin == a.__file__
    assert sub.__path__ == [str(r2 / "lib" / hot.pkg / "sub")]
    assert str(r2 / "lib") in sys.path and str(r1 / "lib") not in sys.path
    # a later import reads the new release
    assert hot.imp("sub.c").C == 3
    # modules that did not change point at the new release too
    assert pkg.__file__ == str(r2 / "lib" / hot.pkg / "__init__.py")
    for mod in (a, pkg):  # every file attribute, the bytecode paths as the import system says
        cached = importlib.util.cache_from_source(mod.__file__)
        assert mod.__cached__ == mod.__spec__.cached == cached
        assert mod.__spec__.origin == mod.__loader__.path == mod.__file__


def test_constant_change_seen_through_from_imports(hot: Hot) -> None:
    v1 = {
        "config.py": "TIMEOUT = 5\nNAMES = ('a',)\n",
        "__init__.py": "from PKG.config import TIMEOUT\n",  # a re-export
        "client.py": (
            "from PKG.config import TIMEOUT, NAMES as ALIASES\nfrom PKG import TIMEOUT as T2\n"
        ),
    }
    v2 = {**v1, "config.py": "TIMEOUT = 30\nNAMES = ('a', 'b')\n"}
    _, r2, (pkg, config, client) = hot.v1_v2(v1, v2, "", "config", "client")
    stats = hot.upgrade(r2)
    assert config.TIMEOUT == pkg.TIMEOUT == client.TIMEOUT == client.T2 == 30
    assert client.ALIASES == ("a", "b")
    assert stats.importers_rebound == 4


def test_from_import_rebound_only_where_it_still_holds_the_old_object(hot: Hot) -> None:
    v1 = {
        "config.py": "LEVEL = 'info'\n",
        "user.py": "from PKG.config import LEVEL\nLEVEL = 'own'\n",
    }
    v2 = {**v1, "config.py": "LEVEL = 'debug'\n"}
    _, r2, (user,) = hot.v1_v2(v1, v2, "user")
    hot.upgrade(r2)
    assert user.LEVEL == "own"


def test_decorated_function_through_wrapper_and_registry(hot: Hot) -> None:
    v1 = {
        "deco.py": """
            import functools
            ROUTES = {}
            def route(path):
                def register(fn):
                    ROUTES[path] = fn
                    return fn
                return register
            def logged(fn):
                @functools.wraps(fn)
                def wrapper(*a, **kw):
                    return "logged:" + fn(*a, **kw)
                return wrapper
        """,
        "views.py": """
            from PKG.deco import route, logged
            @route("/")
            def index():
                return "v1"
            @logged
            def hello():
                return "v1"
        """,
        "app.py": "from PKG.views import hello\n",
    }
    v2 = {**v1, "views.py": v1["views.py"].replace('"v1"', '"v2"')}
    _, r2, (deco, views, app) = hot.v1_v2(v1, v2, "deco", "views", "app")
    wrapper = app.hello
    hot.upgrade(r2)
    assert deco.ROUTES["/"]() == "v2" and len(deco.ROUTES) == 1  # decorator not re-run
    assert wrapper() == "logged:v2" and views.hello is wrapper
    assert wrapper.__wrapped__() == "v2"


def test_closure_with_changed_free_variables(hot: Hot) -> None:
    v1 = {
        "m.py": """
            def make(step, scale):
                def inc(x):
                    return x + step if x else scale
                return inc
            HANDLER = make(1, 10)
        """
    }
    # the new inner code drops a free variable: live closures are rebuilt from their cells
    v2 = {"m.py": v1["m.py"].replace("return x + step if x else scale", "return x * scale")}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    handler, other = m.HANDLER, m.make(2, 100)
    assert handler.__code__.co_freevars == ("scale", "step")
    hot.upgrade(r2)
    assert handler(2) == 20 and other(2) == 200
    assert handler.__code__.co_freevars == ("scale",)
    assert [c.cell_contents for c in handler.__closure__] == [10]


def test_super_newly_used(hot: Hot) -> None:
    v1 = {
        "m.py": """
            class Base:
                def name(self):
                    return "base"
            class Child(Base):
                def name(self):
                    return "child"
        """
    }
    v2 = {**v1, "m.py": v1["m.py"].replace('return "child"', 'return "child+" + super().name()')}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    obj, bound = m.Child(), m.Child().name
    hot.upgrade(r2)
    assert obj.name() == bound() == "child+base"
    assert m.Child.__dict__["name"].__closure__[0].cell_contents is m.Child


def test_super_no_longer_used(hot: Hot) -> None:
    v1 = {
        "m.py": """
            class Base:
                def name(self):
                    return "base"
            class Child(Base):
                def name(self):
                    return "child+" + super().name()
        """
    }
    v2 = {**v1, "m.py": v1["m.py"].replace('"child+" + super().name()', '"child"')}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    obj = m.Child()
    hot.upgrade(r2)
    assert obj.name() == "child" and m.Child.name.__closure__ is None


def test_dataclass_field_added(hot: Hot) -> None:
    v1 = {
        "m.py": """
            import dataclasses
            @dataclasses.dataclass
            class Point:
                x: int
                y: int = 0
        """
    }
    v2 = {
        "m.py": """
            import dataclasses
            @dataclasses.dataclass
            class Point:
                x: int
                y: int = 0
                tags: list = dataclasses.field(default_factory=list)
                z: int = 7
        """
    }
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    old = m.Point(1, 2)
    cls = m.Point
    stats = hot.upgrade(r2)
    assert m.Point is cls
    assert old.tags == [] and old.z == 7 and old == m.Point(1, 2)
    assert m.Point(1, 2, ["a"], 3) == m.Point(x=1, y=2, tags=["a"], z=3)
    assert repr(old) == "Point(x=1, y=2, tags=[], z=7)"
    assert [f.name for f in __import__("dataclasses").fields(m.Point)] == ["x", "y", "tags", "z"]
    assert stats.fields_filled == 2


def test_enum_member_added_keeps_identity(hot: Hot) -> None:
    v1 = {
        "m.py": "import enum\nclass Color(enum.Enum):\n    RED = 1\n    GREEN = 2\n",
        "user.py": "from PKG.m import Color\nFAVOURITE = Color.RED\n",
    }
    v2 = {
        **v1,
        "m.py": "import enum\nclass Color(enum.Enum):\n    RED = 1\n    GREEN = 2\n    BLUE = 3\n"
        "    def warm(self):\n        return self is Color.RED\n",
    }
    _, r2, (m, user) = hot.v1_v2(v1, v2, "m", "user")
    red, cls = m.Color.RED, m.Color
    stats = hot.upgrade(r2)
    assert m.Color is cls is user.Color
    assert user.FAVOURITE is m.Color.RED is red and red == m.Color(1)
    assert m.Color.BLUE is m.Color(3) is m.Color["BLUE"] and isinstance(m.Color.BLUE, cls)
    assert list(m.Color) == [m.Color.RED, m.Color.GREEN, m.Color.BLUE]
    assert red.warm() and not m.Color.BLUE.warm()
    assert stats.enum_members_added == 1


def test_auto_enum_member_added(hot: Hot) -> None:
    v1 = {"m.py": "import enum\nclass S(enum.StrEnum):\n    A = enum.auto()\n"}
    v2 = {"m.py": "import enum\nclass S(enum.StrEnum):\n    A = enum.auto()\n    B = enum.auto()\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    hot.upgrade(r2)
    assert m.S.B == "b" and m.S("b") is m.S.B


def test_module_state_survives(hot: Hot) -> None:
    v1 = {
        "m.py": """
            import threading
            CACHE = {}
            LOCK = threading.Lock()
            LOADS = []
            LOADS.append(1)
            def get(k):
                return CACHE.get(k)
        """
    }
    v2 = {**v1, "m.py": v1["m.py"].replace("return CACHE.get(k)", "return CACHE.get(k, 'miss')")}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    m.CACHE["a"] = 1
    cache, lock = m.CACHE, m.LOCK
    hot.upgrade(r2)
    assert m.CACHE is cache and m.LOCK is lock and m.LOADS == [1]
    assert m.get("a") == 1 and m.get("b") == "miss"


def test_property_classmethod_staticmethod_and_nested_class(hot: Hot) -> None:
    v1 = {
        "m.py": """
            class Outer:
                class Inner:
                    def who(self):
                        return "inner1"
                @property
                def p(self):
                    return "p1"
                @classmethod
                def c(cls):
                    return "c1"
                @staticmethod
                def s():
                    return "s1"
        """
    }
    v2 = {"m.py": v1["m.py"].replace('1"', '2"')}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    o, i = m.Outer(), m.Outer.Inner()
    hot.upgrade(r2)
    assert (o.p, o.c(), m.Outer.s(), i.who()) == ("p2", "c2", "s2", "inner2")


def test_async_function_body_edit(hot: Hot) -> None:
    import asyncio

    v1 = {"m.py": "async def f():\n    return 1\n"}
    v2 = {"m.py": "async def f():\n    return 2\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    f = m.f
    hot.upgrade(r2)
    assert asyncio.run(f()) == 2


def test_running_frames_finish_on_old_code(hot: Hot) -> None:
    v1 = {"m.py": "def gen():\n    yield 'v1-a'\n    yield 'v1-b'\n"}
    v2 = {"m.py": "def gen():\n    yield 'v2-a'\n    yield 'v2-b'\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    running = m.gen()
    assert next(running) == "v1-a"
    hot.upgrade(r2)
    assert next(running) == "v1-b"  # the frame started on v1 finishes on v1
    assert list(m.gen()) == ["v2-a", "v2-b"]


def test_tracebacks_point_at_the_new_file(hot: Hot) -> None:
    v1 = {"m.py": "def boom():\n    raise ValueError('v1')\n"}
    v2 = {"m.py": "# a comment\n\n\ndef boom():\n    x = 1\n    raise ValueError('v2')\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    hot.upgrade(r2)
    try:
        m.boom()
    except ValueError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
    assert frame.filename == str(r2 / "lib" / hot.pkg / "m.py")
    assert frame.lineno == 6 and frame.line == "raise ValueError('v2')"


def test_unchanged_function_shifted_lines_keeps_working_across_upgrades(hot: Hot) -> None:
    v1 = {"m.py": "def a():\n    return 'a'\n\ndef b():\n    return 'b1'\n"}
    v2 = {"m.py": "X = 1\n\n\ndef a():\n    return 'a'\n\ndef b():\n    return 'b2'\n"}
    v3 = {"m.py": "X = 1\n\n\ndef a():\n    return 'a3'\n\ndef b():\n    return 'b3'\n"}
    r1 = hot.release(v1)
    r2, r3 = hot.release(v2), hot.release(v3)
    (m,) = hot.start(r1, "m")
    a = m.a
    hot.upgrade(r2)
    hot.upgrade(r3)  # finds a() by its v2 position although its text never changed in v2
    assert a() == "a3" and m.b() == "b3"


def test_unchanged_def_with_default_from_changed_constant(hot: Hot) -> None:
    v1 = {"m.py": "LIMIT = 5\n\ndef page(n=LIMIT):\n    return n\n"}
    v2 = {"m.py": "LIMIT = 50\n\ndef page(n=LIMIT):\n    return n\n"}
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    page = m.page
    hot.upgrade(r2)
    assert page() == 50  # as if freshly imported


def test_abstract_method_made_concrete(hot: Hot) -> None:
    v1 = {
        "m.py": """
            import abc
            class Shape(abc.ABC):
                @abc.abstractmethod
                def area(self): ...
        """
    }
    v2 = {
        "m.py": """
            import abc
            class Shape(abc.ABC):
                def area(self):
                    return 0
        """
    }
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    hot.upgrade(r2)
    assert m.Shape().area() == 0


def test_paths_changed_between_prepare_and_commit_are_switched_all_the_same(
    hot: Hot, tmp_path: Path
) -> None:
    from hotswap.hot.engine import prepare_hot_upgrade

    v1 = {"a.py": "A = 1\n", "sub/__init__.py": ""}
    v2 = {**v1, "a.py": "A = 2\n", "sub/c.py": "C = 3\n"}
    r1, r2, (_a, sub) = hot.v1_v2(v1, v2, "a", "sub")
    pending = prepare_hot_upgrade(r2, current=hot.current, no_quiesce=True)
    extra = str(tmp_path / "elsewhere")
    sys.path.append(extra)  # both lists change after prepare worked them out
    sub.__path__.append(extra)
    try:
        pending.commit()
        assert str(r2 / "lib") in sys.path and str(r1 / "lib") not in sys.path
        assert sub.__path__ == [str(r2 / "lib" / hot.pkg / "sub"), extra]
        assert hot.imp("sub.c").C == 3
    finally:
        sys.path.remove(extra)
    hot.current = r2


def test_a_namespace_package_inside_the_release_points_at_the_new_release(hot: Hot) -> None:
    # PKG/ns has no __init__.py: its __path__ is a _NamespacePath, not a list
    v1 = {"ns/m.py": "M = 1\n"}
    v2 = {"ns/m.py": "M = 2\n", "ns/n.py": "N = 3\n"}
    r1, r2, (ns, m) = hot.v1_v2(v1, v2, "ns", "ns.m")
    assert not isinstance(ns.__path__, list)
    hot.upgrade(r2)
    assert m.M == 2 and hot.imp("ns.n").N == 3
    assert str(r1) not in str(list(ns.__path__))


def test_finish_later_points_the_unchanged_modules_at_the_new_release_on_finish(
    hot: Hot,
) -> None:
    from hotswap.hot.engine import prepare_hot_upgrade

    v1 = {"a.py": "A = 1\n", "same.py": "S = 1\n"}
    v2 = {**v1, "a.py": "A = 2\n"}
    r1, r2, (a, same) = hot.v1_v2(v1, v2, "a", "same")
    pending = prepare_hot_upgrade(r2, current=hot.current, no_quiesce=True)
    pending.commit(finish_later=True)  # as a worker of several does
    hot.current = r2
    assert a.A == 2 and a.__file__.startswith(str(r2))  # the changed module: in the window
    assert same.__file__.startswith(str(r1))  # the rest waits for finish()
    pending.finish()
    assert same.__file__ == str(r2 / "lib" / hot.pkg / "same.py")
    assert same.__spec__.origin == same.__file__
    pending.finish()  # once: nothing left


def test_a_worker_whose_hot_finish_never_came_finishes_before_its_next_prepare(
    hot: Hot,
) -> None:
    from types import SimpleNamespace

    from hotswap import contract
    from hotswap.child.twophase import TwoPhase

    v1 = {"a.py": "A = 1\n", "same.py": "S = 1\n"}
    v2 = {**v1, "a.py": "A = 2\n"}
    r1, r2, (a, same) = hot.v1_v2(v1, v2, "a", "same")
    r3 = hot.release({**v2, "a.py": "A = 3\n"})
    events: list[str] = []

    def event(name: str, **_data: object) -> None:
        events.append(name)
        if name == contract.EVENT_HOT_APPLIED:  # the supervisor keeps it
            worker.on_decide({"keep": True})

    runtime = SimpleNamespace(channel=SimpleNamespace(event=event), release_root=r1, release_id="1")
    worker = TwoPhase(runtime)  # type: ignore[arg-type]
    worker.on_prepare({"release_root": str(r2), "no_quiesce": True})
    worker.on_commit({})
    hot.current = r2
    assert a.A == 2 and same.__file__.startswith(str(r1))  # no hot_finish (supervisor gone)
    try:
        worker.on_prepare({"release_root": str(r3), "no_quiesce": True})
        assert same.__file__ == str(r2 / "lib" / hot.pkg / "same.py")  # finished first
    finally:
        worker.on_abort({})
