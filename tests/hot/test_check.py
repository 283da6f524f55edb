"""``check(old, new)``: the verdict ``hotswap check OLD NEW`` prints, which is the live engine's:
the old release is imported in a throwaway child (nothing imported here, nothing written)."""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import ChildError, ReleaseError, UsageError
from hotswap.hot import check, hot_upgrade
from hotswap.hot.check import static_check
from hotswap.hot.testing import running_release, write_release
from hotswap.release import interpreter

APP = {"distribution": "demo", "entry": "demo:app", "server": "uvicorn"}
INIT = "def app(scope, receive, send): pass\n"
PURE = {"purelib": True, "has_extensions": False, "tags": ["py3-none-any"]}


def _dists(**versions: str) -> list[dict[str, Any]]:
    out = [{"name": "demo", "version": versions.pop("demo", "1"), **PURE}]
    for name, version in versions.items():
        native = name.startswith("native")
        out.append(
            {
                "name": name,
                "version": version,
                "purelib": not native,
                "has_extensions": native,
                "tags": ["py3-none-any"],
            }
        )
    return out


def _rel(
    tmp: Path,
    tag: str,
    files: dict[str, str] | None = None,
    *,
    version: str = "1",
    dists: list[dict[str, Any]] | None = None,
    app: dict[str, Any] | None = None,
    python: dict[str, Any] | None = None,
) -> Path:
    files = files if files is not None else {"demo/__init__.py": "", "demo/main.py": "X = 1\n"}
    if files.get("demo/__init__.py") == "":
        files = {**files, "demo/__init__.py": INIT}
    return write_release(
        tmp / tag,
        files,
        name="demo",
        version=version,
        distributions=dists if dists is not None else _dists(demo=version, attrs="23.1"),
        app=app or APP,
        python=python,
    )


def _codes(tmp: Path, **kw: Any) -> set[str]:
    old = _rel(tmp, "old")
    new = _rel(tmp, "new", **kw)
    return {r.code for r in check(old, new).reasons}


def test_new_version_of_the_app_itself_is_fine(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = _rel(
        tmp_path,
        "new",
        {"demo/__init__.py": "", "demo/main.py": "X = 2\n"},
        version="2",
        dists=_dists(demo="2", attrs="23.1"),
    )
    verdict = check(old, new)
    assert verdict.ok and verdict.modules_changed == ("demo.main",)
    assert "hot upgrade possible" in str(verdict)


def test_interpreter_mismatch_refused(tmp_path: Path) -> None:
    other = {**interpreter.identity(), "cache_tag": "cpython-399", "magic": "00000000"}
    assert _codes(tmp_path, python=other) == {"interpreter"}


def test_interpreter_minor_version_change_refused(tmp_path: Path) -> None:
    here = interpreter.identity()
    other = {**here, "version": "3.99.0"}
    assert _codes(tmp_path, python=other) == {"interpreter"}


@pytest.mark.parametrize("how", ["added", "changed", "removed"])
def test_native_extension_added_changed_or_removed_refused(tmp_path: Path, how: str) -> None:
    base = {"demo/__init__.py": "", "demo/main.py": "X = 1\n"}
    so = "demo/_fast.cpython-311-x86_64-linux-gnu.so"
    old_files = base if how == "added" else {**base, so: "ELF-1"}
    new_files = {"added": {**base, so: "ELF-1"}, "changed": {**base, so: "ELF-2"}}.get(how, base)
    old = _rel(tmp_path, "old", old_files)
    new = _rel(tmp_path, "new", new_files)
    reasons = check(old, new).reasons
    assert [r.code for r in reasons] == ["native_extension"] and how in reasons[0].message


def test_dependency_version_change_refused(tmp_path: Path) -> None:
    assert _codes(tmp_path, dists=_dists(attrs="24.1")) == {"dependencies"}


def test_dependency_added_or_removed_refused(tmp_path: Path) -> None:
    assert _codes(tmp_path, dists=_dists(attrs="23.1", idna="3.7")) == {"dependencies"}
    assert _codes(tmp_path / "b", dists=_dists()) == {"dependencies"}


def test_pure_dependency_change_allowed_with_the_option(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = _rel(tmp_path, "new", dists=_dists(attrs="24.1"))
    verdict = check(old, new, allow_dependency_changes=True)
    assert verdict.ok and any("attrs" in w for w in verdict.warnings)


def test_dependency_with_extensions_refused_even_with_the_option(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old", dists=_dists(attrs="23.1", native_lib="1"))
    new = _rel(tmp_path, "new", dists=_dists(attrs="23.1", native_lib="2"))
    reasons = check(old, new, allow_dependency_changes=True).reasons
    assert [r.code for r in reasons] == ["dependencies"] and "compiled" in reasons[0].message


@pytest.mark.parametrize(
    "change",
    [
        {"entry": "demo.other:app"},
        {"server": "callable"},
        {"listeners": ["http", "admin"]},
    ],
)
def test_entry_point_server_or_listeners_change_refused(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    assert _codes(tmp_path, app={**APP, **change}) == {"wiring"}


def test_class_layout_changes_refused_offline(tmp_path: Path) -> None:
    old = _rel(
        tmp_path,
        "old",
        {
            "demo/__init__.py": "",
            "demo/main.py": "class A: pass\nclass S:\n    __slots__ = ('a',)\nclass C(A): pass\n",
        },
    )
    new = _rel(
        tmp_path,
        "new",
        {
            "demo/__init__.py": "",
            "demo/main.py": "class A: pass\nclass S:\n    __slots__ = ('b',)\nclass C: pass\n",
        },
    )
    reasons = check(old, new).reasons
    assert [r.code for r in reasons] == ["class_layout", "class_layout"]
    assert {r.subject for r in reasons} == {"demo.main.S", "demo.main.C"}


def test_different_app_refused(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = write_release(tmp_path / "other", {"x/__init__.py": ""}, name="other")
    assert "different_app" in {r.code for r in check(old, new).reasons}


def test_verdict_is_json_and_says_use_blue_green(tmp_path: Path) -> None:
    verdict = check(_rel(tmp_path, "old"), _rel(tmp_path, "new", dists=_dists(attrs="9")))
    data = json.loads(json.dumps(verdict.to_json()))
    assert data["ok"] is False and data["verdict"] == "use a blue-green upgrade"
    assert data["reasons"][0]["code"] == "dependencies"
    assert "use a blue-green upgrade, because" in str(verdict)


def test_missing_release_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        check(tmp_path / "nope", _rel(tmp_path, "new"))
    assert err.value.code == "release_not_found"


def test_tampered_file_is_a_release_error(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = _rel(tmp_path, "new", {"demo/__init__.py": "", "demo/main.py": "X = 2\n"})
    (new / "lib" / "demo" / "main.py").write_text("X = 'tampered'\n")
    with pytest.raises(ReleaseError) as err:
        check(old, new)
    assert err.value.code == "hash_mismatch"


# -- check and the live engine agree (the check imports the old release in a child) -----------


def _pkg_release(
    tmp: Path, tag: str, pkg: str, files: dict[str, str], version: str, server: str = "callable"
) -> Path:
    out = {f"{pkg}/{rel}": textwrap.dedent(text) for rel, text in files.items()}
    out.setdefault(f"{pkg}/__init__.py", "")
    app = {"distribution": pkg, "entry": f"{pkg}:__name__", "server": server}
    return write_release(tmp / tag, out, name=pkg, version=version, app=app)


def _live(r1: Path, r2: Path, pkg: str, modules: list[str]) -> tuple[bool, set[str]]:
    """What the live engine does in a process that imported ``modules`` of ``r1``."""
    with running_release(r1):
        for m in [pkg, *modules]:
            importlib.import_module(m)
        try:
            hot_upgrade(r2, current=r1, no_quiesce=True)
        except ChildError as exc:
            assert exc.code == "hot_upgrade_refused", exc
            return False, {r["code"] for r in exc.details["reasons"]}
    return True, set()


NAMEDTUPLE = """
    import typing
    class Pair(typing.NamedTuple):
        key: typing.List
        value: typing.Any
"""
META = """
    class Meta(type):
        def __new__(mcs, name, bases, ns):
            cls = super().__new__(mcs, name, bases, ns)
            cls.fields = [k for k in ns if not k.startswith("_")]
            return cls
    class Model(metaclass=Meta):
        a = 1
"""
CLOSURE = """
    def make(step, scale):
        def inc(x):
            return x + step
        return inc
    HANDLER = make(1, 10)
"""
REGISTRY = """
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
AGREE_CASES = {
    "body_edit": ("def f():\n    return 1\n", "def f():\n    return 2\n"),
    "namedtuple_annotation": (NAMEDTUPLE, NAMEDTUPLE.replace("typing.List", "typing.List[int]")),
    "metaclass_state": (META, META.replace("a = 1", "a = 1\n        b = 2")),
    "closure": (CLOSURE, CLOSURE.replace("return x + step", "return (x + step) * scale")),
    "stale_registration": (REGISTRY, REGISTRY.replace('App("one")', 'App("two")')),
    "enum_members": (
        "import enum\nclass C(enum.Enum):\n    A = 1\n    B = 2\n",
        "import enum\nclass C(enum.Enum):\n    A = 1\n",
    ),
    "dataclass_fields": (
        "import dataclasses\n@dataclasses.dataclass\nclass D:\n    x: int = 0\n",
        "import dataclasses\n@dataclasses.dataclass\nclass D:\n    x: int = 0\n    y: int\n",
    ),
    "class_layout": (  # made anew when no instance lives; this one lives from import on
        "class P:\n    __slots__ = ('x',)\nORIGIN = P()\n",
        "class P:\n    __slots__ = ('y',)\nORIGIN = P()\n",
    ),
    "syntax_error": ("def f():\n    return 1\n", "def f(:\n    return 2\n"),
}


@pytest.mark.parametrize("case", sorted(AGREE_CASES))
def test_check_agrees_with_the_live_engine(tmp_path: Path, case: str) -> None:
    pkg = f"agree_{case}_{uuid.uuid4().hex[:6]}"
    v1, v2 = AGREE_CASES[case]
    r1 = _pkg_release(tmp_path, "r1", pkg, {"m.py": v1}, "1")
    r2 = _pkg_release(tmp_path, "r2", pkg, {"m.py": v2}, "2")
    verdict = check(r1, r2)  # first: the live upgrade below may commit
    live_ok, live_codes = _live(r1, r2, pkg, [f"{pkg}.m"])
    assert (verdict.ok, {r.code for r in verdict.reasons}) == (live_ok, live_codes)


def test_metaclass_state_is_seen_by_check_where_the_static_analysis_is_blind(
    tmp_path: Path,
) -> None:
    pkg = f"meta_{uuid.uuid4().hex[:6]}"
    v1, v2 = AGREE_CASES["metaclass_state"]
    r1 = _pkg_release(tmp_path, "r1", pkg, {"m.py": v1}, "1")
    r2 = _pkg_release(tmp_path, "r2", pkg, {"m.py": v2}, "2")
    assert static_check(r1, r2).ok
    assert [r.code for r in check(r1, r2).reasons] == ["metaclass_state"]


def test_a_changed_module_the_entry_does_not_import_is_analysed_too(tmp_path: Path) -> None:
    pkg = f"lazy_{uuid.uuid4().hex[:6]}"
    v1, v2 = AGREE_CASES["metaclass_state"]
    r1 = _pkg_release(tmp_path, "r1", pkg, {"lazy.py": v1}, "1")
    r2 = _pkg_release(tmp_path, "r2", pkg, {"lazy.py": v2}, "2")
    assert [r.code for r in check(r1, r2).reasons] == ["metaclass_state"]
    assert not any(m.startswith(pkg) for m in sys.modules)  # nothing imported here


def _tree_state(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    } | {str(p.relative_to(root)) + "/": (0, 0, b"") for p in root.rglob("*") if p.is_dir()}


def _gone(pid: int, within: float = 10.0) -> bool:
    """Has ``pid`` exited (SIGKILL is delivered asynchronously: poll up to ``within`` s)?"""
    deadline = time.monotonic() + within
    while not _exited(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # killed, waiting for its (new) parent to reap it


SPAWNER = """
    import os, subprocess, sys
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(PIDS, "w") as f:
        f.write(f"{os.getpid()} {sleeper.pid}")
"""


def test_check_changes_nothing_and_leaves_no_process_behind(tmp_path: Path) -> None:
    pkg = f"quiet_{uuid.uuid4().hex[:6]}"
    pids = tmp_path / "pids"
    init = SPAWNER.replace("PIDS", repr(str(pids)))
    rels = tmp_path / "releases"
    r1 = _pkg_release(rels, "r1", pkg, {"__init__.py": init, "m.py": "X = 1\n"}, "1")
    r2 = _pkg_release(rels, "r2", pkg, {"__init__.py": init, "m.py": "X = 2\n"}, "2")
    before = _tree_state(rels)
    verdict = check(r1, r2)
    assert verdict.ok, verdict
    assert any("(no_quiescence)" in w for w in verdict.warnings)  # a callable server
    assert _tree_state(rels) == before  # no bytecode cache, no file touched
    assert not any(m.startswith(pkg) for m in sys.modules)
    child, sleeper = map(int, pids.read_text().split())
    assert child != os.getpid()
    assert _gone(child) and _gone(sleeper)


def test_old_release_crashing_at_import_is_boot_failed(tmp_path: Path) -> None:
    pkg = f"crash_{uuid.uuid4().hex[:6]}"
    init = "import os\nif 'DB_URL' not in os.environ:\n    raise RuntimeError('no DB_URL')\n"
    r1 = _pkg_release(tmp_path, "r1", pkg, {"__init__.py": init, "m.py": "X = 1\n"}, "1")
    r2 = _pkg_release(tmp_path, "r2", pkg, {"__init__.py": init, "m.py": "X = 2\n"}, "2")
    with pytest.raises(ChildError) as err:
        check(r1, r2)
    assert err.value.code == "boot_failed"
    assert "RuntimeError: no DB_URL" in err.value.details["output"]
    assert check(r1, r2, env={"DB_URL": "x"}).ok  # the env file a generation would get


@pytest.mark.parametrize(
    ("init", "code"),
    [
        ("import os\nos._exit(7)\n", "check_failed"),
        ("import time\ntime.sleep(60)\n", "check_failed"),
    ],
    ids=["exits", "hangs"],
)
def test_child_dying_or_hanging_is_check_failed(tmp_path: Path, init: str, code: str) -> None:
    pkg = f"dies_{uuid.uuid4().hex[:6]}"
    r1 = _pkg_release(tmp_path, "r1", pkg, {"__init__.py": init, "m.py": "X = 1\n"}, "1")
    r2 = _pkg_release(tmp_path, "r2", pkg, {"__init__.py": init, "m.py": "X = 2\n"}, "2")
    t0 = time.monotonic()
    with pytest.raises(ChildError) as err:
        check(r1, r2, timeout=3.0)
    assert err.value.code == code
    assert time.monotonic() - t0 < 30


READER = """
    class Reader:
        def __init__(self):
            self.to_discard = 0
        def feed(self, data):
            if self.to_discard > 0:
                data = data[self.to_discard:]
            return data
    def make():
        return Reader()
"""


def test_instance_state_is_refused_as_in_a_process_holding_instances(tmp_path: Path) -> None:
    pkg = f"shape_{uuid.uuid4().hex[:6]}"
    v2 = READER.replace("self.to_discard = 0", "self.to_discard = b''")
    r1 = _pkg_release(tmp_path, "r1", pkg, {"r.py": READER}, "1")
    r2 = _pkg_release(tmp_path, "r2", pkg, {"r.py": v2}, "2")
    assert [r.code for r in check(r1, r2).reasons] == ["instance_state"]
    with running_release(r1):
        live = importlib.import_module(f"{pkg}.r").make()  # a serving process has instances
        with pytest.raises(ChildError) as err:
            hot_upgrade(r2, current=r1, no_quiesce=True)
        assert {r["code"] for r in err.value.details["reasons"]} == {"instance_state"}
        assert live.feed(b"abc") == b"abc"


def test_data_files_of_a_package_the_entry_does_not_import_are_seen(tmp_path: Path) -> None:
    pkg = f"data_{uuid.uuid4().hex[:6]}"
    load = "import json, pathlib\nTABLE = json.loads((pathlib.Path(__file__).parent / 't.json')"
    load += ".read_text())\n"
    files = {"tables/__init__.py": load, "tables/t.json": '{"a": 1}'}
    r1 = _pkg_release(tmp_path, "r1", pkg, files, "1")
    r2 = _pkg_release(tmp_path, "r2", pkg, {**files, "tables/t.json": '{"a": 2}'}, "2")
    assert [r.code for r in check(r1, r2).reasons] == ["data_files"]
    assert _live(r1, r2, pkg, [f"{pkg}.tables"]) == (False, {"data_files"})


@pytest.mark.parametrize("server", ["hypercorn", "waitress"])
def test_no_quiescence_warning_for_a_server_whose_adapter_registers_it(
    tmp_path: Path, server: str
) -> None:
    pkg = f"served_{uuid.uuid4().hex[:6]}"
    rels = tmp_path / "releases"
    r1 = _pkg_release(rels, "r1", pkg, {"m.py": "X = 1\n"}, "1", server=server)
    r2 = _pkg_release(rels, "r2", pkg, {"m.py": "X = 2\n"}, "2", server=server)
    verdict = check(r1, r2)
    assert verdict.ok, verdict
    assert not any("no_quiescence" in w for w in verdict.warnings), verdict.warnings
