"""Promise 9, as a property: a hot upgrade that fails at any step of its commit leaves every
function's code, every class dict and every module dict exactly as before, and the old code
keeps answering.

The failure is injected through the engine's ``checkpoint`` hook (called before every step of
the commit), the one fake in these tests: a real failure cannot be provoked at an arbitrary step.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotswap.errors import ChildError
from hotswap.hot import HotUpgrade
from tests.hot import snapshot
from tests.hot.conftest import Hot

V1 = {
    "__init__.py": "from PKG.config import LIMIT\n",
    "config.py": '"""Config v1."""\nLIMIT = 10\nNAMES = ["a"]\nGONE = 1\n',
    "old_mod.py": "X = 1\n",
    "models.py": """
        import dataclasses
        import enum

        class Color(enum.Enum):
            RED = 1

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 0

        class Base:
            def hello(self):
                return "base"

        class Service(Base):
            kind = "v1"
            def __init__(self):
                self.label = "v1"
                self.items = [1]
            def hello(self):
                return "service v1"
            @property
            def size(self):
                return len(self.items)

        def make(n):
            def add(x):
                return x + n
            return add

        ADD = make(1)
        SERVICE = Service()
        POINT = Point(1)
        REGISTRY = {"svc": SERVICE}
    """,
    "views.py": """
        from PKG.config import LIMIT, NAMES
        from PKG.models import SERVICE, ADD

        def page(n=LIMIT):
            return ("v1", n, ADD(1), SERVICE.hello())
    """,
}

V2 = {
    "__init__.py": "from PKG.config import LIMIT\n",
    "config.py": '"""Config v2."""\nLIMIT = 20\nNAMES = ["a", "b"]\nNEW = 2\n',
    "new_mod.py": "def hi():\n    return 'hi'\n",
    "models.py": """
        import dataclasses
        import enum

        class Color(enum.Enum):
            RED = 1
            BLUE = 2

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 0
            tags: list = dataclasses.field(default_factory=list)

        class Base:
            def hello(self):
                return "base"

        class Service(Base):
            kind = "v2"
            extra = "new attribute"
            def __init__(self):
                self.label = "v2"
                self.items = [1]
            def hello(self):
                return "service v2 " + super().hello()
            @property
            def size(self):
                return len(self.items) * 2
            def __code_change__(self, old_vsn, extra):
                self.items.append(2)
                self.label = "v2"

        def make(n):
            def add(x):
                return x + n * 100
            return add

        ADD = make(1)
        SERVICE = Service()
        POINT = Point(1)
        REGISTRY = {"svc": SERVICE}

        def __code_change__(old_vsn, extra):
            REGISTRY["migrated"] = True
    """,
    "views.py": """
        from PKG.config import LIMIT, NAMES
        from PKG.models import SERVICE, ADD
        from PKG import new_mod

        def page(n=LIMIT):
            return ("v2", n, ADD(1), SERVICE.hello(), new_mod.hi())
    """,
}

MODULES = ("", "config", "old_mod", "models", "views")


def _run(base: Path, checkpoint: object) -> tuple[Hot, Path, Path, ExitStack]:
    stack = ExitStack()
    hot = Hot(base, stack)
    r1, r2 = hot.release(V1), hot.release(V2)
    hot.start(r1, *MODULES)
    return hot, r1, r2, stack


def _steps() -> list[str]:
    """The commit's step names, from one successful upgrade."""
    names: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        hot, r1, r2, stack = _run(Path(tmp), None)
        with stack:
            up = HotUpgrade(r1, r2, checkpoint=names.append)
            up.prepare()
            up.commit()
            views = hot.imp("views")
            assert views.page() == ("v2", 20, 101, "service v2 base", "hi")
    return names


STEPS = _steps()


class Injected(Exception):
    pass


def test_snapshot_sees_what_a_successful_upgrade_changes() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hot, r1, r2, stack = _run(Path(tmp), None)
        with stack:
            before = snapshot.take(hot.pkg)
            HotUpgrade(r1, r2).commit()
            assert before != snapshot.take(hot.pkg)
    assert len(STEPS) > 20


def test_steps_cover_every_kind_of_change() -> None:
    kinds = {s.split(":")[0] for s in STEPS}
    assert kinds >= {
        "catch_up",
        "paths",
        "code",
        "exec",
        "def",
        "class",
        "remove",
        "rebind",
        "drop",
        "fill",
        "code_change",
    }


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(at=st.integers(0, len(STEPS) - 1), interrupt=st.booleans())
def test_failure_at_any_step_leaves_everything_as_before(at: int, interrupt: bool) -> None:
    calls = [0]

    def checkpoint(step: str) -> None:
        if calls[0] == at:
            raise KeyboardInterrupt(step) if interrupt else Injected(step)
        calls[0] += 1

    with tempfile.TemporaryDirectory() as tmp:
        hot, r1, r2, stack = _run(Path(tmp), checkpoint)
        with stack:
            views, models = hot.imp("views"), hot.imp("models")
            before = snapshot.take(hot.pkg)
            up = HotUpgrade(r1, r2, checkpoint=checkpoint)
            up.prepare()
            if interrupt:
                with pytest.raises(KeyboardInterrupt):
                    up.commit()
            else:
                with pytest.raises(ChildError) as err:
                    up.commit()
                assert err.value.code == "hot_upgrade_failed"
                assert "rolled back" in err.value.message
            after = snapshot.take(hot.pkg)
            assert before == after, before.diff(after)
            assert views.page() == ("v1", 10, 2, "service v1")
            assert models.SERVICE.label == "v1" and models.SERVICE.items == [1]
            assert list(models.Color) == [models.Color.RED]
            assert not hasattr(models.POINT, "tags")
