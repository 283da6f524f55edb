"""Work done once: one analysis for every worker (hotswap.hot.shared: the first worker writes
it, the others read it, and a worker uses it only where it is what it would have made itself),
and the release tree of one upgrade kept for the next."""

from __future__ import annotations

import builtins
import gc
import os
import types
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import ChildError
from hotswap.hot import shared
from hotswap.hot.engine import PendingUpgrade, prepare_hot_upgrade
from hotswap.hot.heap import HeapIndex, unaccounted
from hotswap.hot.importers import ModuleValues
from hotswap.hot.shared import Sharing
from tests.hot.conftest import Hot

V1 = {"__init__.py": "VERSION = '1'\n", "core.py": "def f():\n    return 1\n"}
V2 = {"__init__.py": "VERSION = '2'\n", "core.py": "def f():\n    return 2\n"}


def _prepare(hot: Hot, new: Path, sharing: Sharing) -> PendingUpgrade:
    pending = prepare_hot_upgrade(new, current=hot.current, no_quiesce=True, sharing=sharing)
    hot.stack.callback(pending.abort)  # even when an assertion fails (abort is idempotent)
    return pending


def test_reader_uses_the_writers_analysis_and_applies_the_same(hot: Hot, tmp_path: Path) -> None:
    _r1, r2, (core,) = hot.v1_v2(V1, V2, "core")
    path = tmp_path / "analysis"
    told: list[bool] = []
    writer = _prepare(hot, r2, Sharing(path, write=True, on_analyzed=lambda: told.append(True)))
    writer.abort()
    assert told == [True] and path.is_file()
    reader = _prepare(hot, r2, Sharing(path, write=False))
    assert reader.upgrade.analysis_shared
    stats = reader.commit()
    assert stats.analysis_shared and stats.functions_patched == 1 and core.f() == 2


def test_a_module_imported_in_one_worker_only_makes_the_reader_analyse_anew(
    hot: Hot, tmp_path: Path
) -> None:
    v1 = {**V1, "extra.py": "from PKG import VERSION\nTAG = 'v' + VERSION\n"}
    v2 = {**V2, "extra.py": v1["extra.py"]}
    _r1, r2, (_core,) = hot.v1_v2(v1, v2, "core")
    path = tmp_path / "analysis"
    _prepare(hot, r2, Sharing(path, write=True)).abort()  # made while extra was not imported
    extra = hot.imp("extra")  # now it is: the writer's analysis did not follow it
    reader = _prepare(hot, r2, Sharing(path, write=False))
    assert not reader.upgrade.analysis_shared
    reader.commit()
    assert extra.TAG == "v2"  # re-derived, as its own analysis says


def test_a_file_for_other_releases_or_torn_is_not_used(hot: Hot, tmp_path: Path) -> None:
    r1, r2, _ = hot.v1_v2(V1, V2, "core")
    r3 = hot.release({**V2, "core.py": "def f():\n    return 3\n"})
    path = tmp_path / "analysis"
    _prepare(hot, r2, Sharing(path, write=True)).abort()
    assert shared.read(path, r1, r2) is not None
    assert shared.read(path, r1, r3) is None and shared.read(path, r2, r1) is None
    path.write_bytes(path.read_bytes()[:100])  # torn
    assert shared.read(path, r1, r2) is None
    reader = _prepare(hot, r2, Sharing(path, write=False))
    assert not reader.upgrade.analysis_shared
    reader.abort()
    assert shared.read(tmp_path / "missing", r1, r2) is None


def test_a_refused_upgrade_is_not_written_nor_announced(hot: Hot, tmp_path: Path) -> None:
    _r1, r2, _ = hot.v1_v2(V1, {**V2, "core.py": "class f(:\n"}, "core")
    path = tmp_path / "analysis"
    told: list[bool] = []
    try:
        _prepare(hot, r2, Sharing(path, write=True, on_analyzed=lambda: told.append(True)))
    except Exception as exc:
        assert getattr(exc, "code", None) == "hot_upgrade_refused"
    else:
        raise AssertionError("a syntax error was not refused")
    assert not told and not path.exists()
    assert not list(tmp_path.glob(".analysis.*"))  # no temporary file either


def test_recorder_remembers_every_answer() -> None:
    rec = shared.Recorder({"a", "b"}.__contains__)
    assert rec("a") and not rec("c")
    assert rec.asked == {"a": True, "c": False}


def test_the_tree_upgraded_to_is_the_next_upgrades_old_tree_until_its_files_change(
    hot: Hot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hotswap.hot import engine
    from hotswap.hot.tree import ReleaseTree

    loads: list[Path] = []
    real = ReleaseTree.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ReleaseTree], root: str | Path) -> ReleaseTree:
        loads.append(Path(root))
        return real(cls, root)  # type: ignore[no-any-return]

    monkeypatch.setattr(ReleaseTree, "load", classmethod(counting))
    r1, r2, (core,) = hot.v1_v2(V1, V2, "core")
    r3 = hot.release({**V2, "core.py": "def f():\n    return 3\n"})
    hot.upgrade(r2)
    assert loads[-2:] == [r1.resolve(), r2.resolve()]
    loads.clear()
    hot.upgrade(r3)
    assert loads == [r3.resolve()] and core.f() == 3  # r2's tree was kept
    record = r3 / "RECORD"
    record.write_bytes(record.read_bytes())  # rewritten (a new mtime): read again
    os.utime(record, ns=(1, 1))
    loads.clear()
    hot.upgrade(r1)
    assert loads == [r3.resolve(), r1.resolve()] and core.f() == 1
    assert engine._last_tree[0][1].root == r1.resolve()


def test_a_file_others_can_write_or_a_link_is_not_read(hot: Hot, tmp_path: Path) -> None:
    r1, r2, _ = hot.v1_v2(V1, V2, "core")
    path = tmp_path / "analysis"
    _prepare(hot, r2, Sharing(path, write=True)).abort()
    assert shared.read(path, r1, r2) is not None
    path.chmod(0o666)  # writable by anyone: whoever wrote it, it is not trusted
    assert shared.read(path, r1, r2) is None
    path.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(path)
    assert shared.read(link, r1, r2) is None


def test_a_reader_told_to_wait_takes_its_snapshot_first_then_reads_the_analysis(
    hot: Hot, tmp_path: Path
) -> None:
    v1 = {**V1, "late.py": "def g():\n    return 1\n"}
    v2 = {**V2, "late.py": "def g():\n    return 2\n"}
    _r1, r2, (core,) = hot.v1_v2(v1, v2, "core")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()  # as the first worker would
    late: list[object] = []

    def wait() -> bool:
        assert not path.exists()  # asked before the first worker has written it
        late.append(hot.imp("late"))  # imported after this worker's snapshot of its modules
        os.replace(made, path)
        return True

    reader = _prepare(hot, r2, Sharing(path, write=False, wait=wait))
    assert reader.upgrade.analysis_shared
    stats = reader.commit()
    # the snapshot came before wait(): the module imported meanwhile was not in it, and the
    # commit saw that and planned again (with its own analysis), rather than leave it old
    assert stats.replans == 1 and core.f() == 2 and late[0].g() == 2  # type: ignore[attr-defined]


def test_a_reader_told_to_drop_it_while_waiting_prepares_nothing(hot: Hot, tmp_path: Path) -> None:
    _r1, r2, (core,) = hot.v1_v2(V1, V2, "core")
    path = tmp_path / "analysis"
    with pytest.raises(ChildError) as err:
        prepare_hot_upgrade(
            r2,
            current=hot.current,
            no_quiesce=True,
            sharing=Sharing(path, False, wait=lambda: False),
        )
    assert err.value.code == "hot_upgrade_refused" and "withdrawn" in err.value.message
    assert hot.upgrade(r2).functions_patched == 1 and core.f() == 2  # nothing held on to


MAKER_V1 = "def make():\n    def h():\n        return 1\n    return h\n"
MAKER_V2 = MAKER_V1.replace("return 1", "return 2")


def _turned(hot: Hot, r2: Path, path: Path, made: Path, meanwhile: Any = None) -> PendingUpgrade:
    """A reader given a turn while the first worker analyses: it walks the heap then, and
    reads the analysis (``made``, put at ``path``) once told to go on."""
    turns: list[str] = []

    def wait() -> bool:
        assert turns == ["turn", "done"]  # its part needing no analysis came first
        if meanwhile is not None:
            meanwhile()
        os.replace(made, path)
        return True

    def turn() -> bool:
        turns.append("turn")
        return True

    sharing = Sharing(path, False, wait=wait, turn=turn, turn_done=lambda: turns.append("done"))
    return _prepare(hot, r2, sharing)


def test_a_reader_given_a_turn_walks_the_heap_early_and_misses_no_closure(
    hot: Hot, tmp_path: Path
) -> None:
    _r1, r2, (core,) = hot.v1_v2({**V1, "core.py": MAKER_V1}, {**V2, "core.py": MAKER_V2}, "core")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()
    before = core.make()  # found by the early walk
    after: list[Any] = []  # made after it, before the commit: found in the window
    reader = _turned(hot, r2, path, made, lambda: after.append(core.make()))
    assert not gc.isenabled()  # paused from the early walk on
    stats = reader.commit()
    assert stats.analysis_shared and stats.heap_walked_early
    assert before() == 2 and after[0]() == 2 and core.make()() == 2
    assert gc.isenabled()


def test_an_early_walk_serves_no_upgrade_that_wants_instances(hot: Hot, tmp_path: Path) -> None:
    # a class with __code_change__ and a live instance: its instances are wanted, found by
    # their class, which only the analysis names, so prepare walks the heap itself
    v1 = {**V1, "core.py": "class C:\n    n = 1\n    def get(self):\n        return self.n\n"}
    migrate = "    def __code_change__(self, old, extra):\n        self.n = 5\n"
    v2 = {**V1, "core.py": v1["core.py"].replace("self.n\n", "self.n * 2\n") + migrate}
    _r1, r2, (core,) = hot.v1_v2(v1, v2, "core")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()
    live = core.C()
    stats = _turned(hot, r2, path, made).commit()
    assert stats.analysis_shared and not stats.heap_walked_early
    assert stats.instances_migrated == 1 and live.get() == 10
    assert gc.isenabled()


def test_a_reader_given_a_turn_then_told_to_drop_it_leaves_the_collector_as_it_was(
    hot: Hot, tmp_path: Path
) -> None:
    _r1, r2, (core,) = hot.v1_v2(V1, V2, "core")
    callbacks = list(gc.callbacks)
    with pytest.raises(ChildError) as err:
        prepare_hot_upgrade(
            r2,
            current=hot.current,
            no_quiesce=True,
            sharing=Sharing(tmp_path / "analysis", False, wait=lambda: False, turn=lambda: True),
        )
    assert err.value.code == "hot_upgrade_refused"
    assert gc.isenabled() and gc.callbacks == callbacks
    assert hot.upgrade(r2).functions_patched == 1 and core.f() == 2


def test_a_refusal_after_an_early_walk_leaves_the_collector_as_it_was(
    hot: Hot, tmp_path: Path
) -> None:
    _r1, r2, _ = hot.v1_v2(V1, {**V2, "core.py": "class f(:\n"}, "core")
    callbacks = list(gc.callbacks)
    sharing = Sharing(tmp_path / "none", False, wait=lambda: True, turn=lambda: True)
    with pytest.raises(ChildError) as err:  # no file: it analyses itself, and refuses
        prepare_hot_upgrade(r2, current=hot.current, no_quiesce=True, sharing=sharing)
    assert err.value.code == "hot_upgrade_refused"
    assert gc.isenabled() and gc.callbacks == callbacks


def test_a_reader_whose_turn_came_after_the_go_takes_its_part_then(
    hot: Hot, tmp_path: Path
) -> None:
    _r1, r2, (core,) = hot.v1_v2(V1, V2, "core")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()
    os.replace(made, path)
    sharing = Sharing(path, False, wait=lambda: True, turn=lambda: False)
    stats = _prepare(hot, r2, sharing).commit()
    assert stats.analysis_shared and not stats.heap_walked_early and core.f() == 2


def test_the_early_walk_finds_every_function_of_the_modules_it_is_given() -> None:
    ours, other = types.ModuleType("ours"), types.ModuleType("other")
    for m in (ours, other):
        m.__dict__["__builtins__"] = builtins
        exec("def f():\n    def g():\n        pass\n    return g\n", m.__dict__)
    closures = [ours.f(), other.f()]
    index = HeapIndex.early([ours.__dict__, other.__dict__])
    assert index is not None
    try:
        assert index.covers([ours.__dict__]) and not index.covers([{}])
        index.narrow([ours.__dict__])
        assert index.functions_of(ours, "f") == [ours.f]
        assert index.functions_of(ours, "f.<locals>.g") == [closures[0]]
        assert index.functions_of(other, "f") == []  # not a changed module
    finally:
        index.release()
    assert not index.covers([ours.__dict__])  # released


def test_no_early_walk_for_a_module_with_builtins_of_its_own() -> None:
    sandboxed = types.ModuleType("sandboxed")
    sandboxed.__dict__["__builtins__"] = {"len": len}
    assert HeapIndex.early([sandboxed.__dict__]) is None


def test_an_upgrade_the_generation_did_not_keep_is_rolled_back_at_the_hold_step(
    hot: Hot, tmp_path: Path
) -> None:
    _r1, r2, (core,) = hot.v1_v2(V1, V2, "core")
    pending = _prepare(hot, r2, Sharing(tmp_path / "analysis", write=True))
    seen: list[int] = []

    def hold() -> bool:
        seen.append(core.f())  # applied here, in the window
        return False  # another worker could not apply it

    with pytest.raises(ChildError) as err:
        pending.commit(hold=hold)
    assert seen == [2] and core.f() == 1  # rolled back before anything ran it
    assert err.value.details["step"] == "hold" and "withdrawn" in err.value.message


def test_one_walk_finds_the_functions_and_what_holds_the_rebound_values() -> None:
    ns = types.ModuleType("ns")
    exec("def f():\n    pass\nSETTING = ['a']\n", ns.__dict__)
    holder = types.SimpleNamespace(copy=ns.SETTING)
    index = HeapIndex([ns.__dict__], (), [ns.SETTING])
    try:
        index.scan()
        found = index.holders_of([ns.SETTING])
        assert index.holders_of([ns.SETTING]) is found  # the scan's, not a second walk
        assert any(h is holder or h is vars(holder) for h in found)
        assert index.functions_of(ns, "f") == [ns.f]
    finally:
        index.release()


def test_unaccounted_counts_the_references_no_namespace_or_own_list_holds() -> None:
    ns, other, unlisted = (types.ModuleType(n) for n in ("ns", "other", "unlisted"))
    exec("ALONE = '1.0.0'\nIMPORTED = '2.0.0'\nCOPIED = '3.0.0'\nOUTSIDE = '4.0.0'\n", vars(ns))
    exec("LISTED = ['a']\nSMALL = 7\nTWICE = '5.0.0'\n", vars(ns))
    other.IMPORTED = ns.IMPORTED  # from ns import IMPORTED, in another loaded module
    unlisted.OUTSIDE = ns.OUTSIDE  # a module the release did not load (not counted)
    holder = types.SimpleNamespace(COPIED=ns.COPIED, again=ns.COPIED)
    cache = {"k": ns.LISTED}
    loaded = {"ns.py": ns, "other.py": other}
    snapshot = ModuleValues(loaded)  # held while it counts: its references are owned
    names = ["ALONE", "IMPORTED", "COPIED", "OUTSIDE", "LISTED", "SMALL", "TWICE"]
    mine = [ns.TWICE]
    found = unaccounted(
        [vars(ns)[n] for n in names],
        [vars(m) for m in loaded.values()],
        [snapshot.ids, list(map(id, mine))],
    )
    by_name = {n: found[id(vars(ns)[n])] for n in names if id(vars(ns)[n]) in found}
    # a small int is shared by the whole interpreter: kept, and walked for, as before
    assert by_name.keys() == {"COPIED", "OUTSIDE", "LISTED", "SMALL"}
    assert by_name["COPIED"] == 2 and by_name["OUTSIDE"] == 1 and by_name["LISTED"] == 1
    assert holder.COPIED is ns.COPIED and cache["k"] is ns.LISTED and unlisted.OUTSIDE


def _with_entry(hot: Hot, v1: dict[str, str], v2: dict[str, str]) -> tuple[Path, Path]:
    """Two releases whose ``app.entry`` is in the test's package: the early walk looks for
    the holders of its data values too."""
    app = {"distribution": "app", "entry": f"{hot.pkg}.core:main", "server": "callable"}
    return hot.release(v1, app=app), hot.release(v2, app=app)


@pytest.mark.parametrize("held", [False, True])
def test_a_reader_that_walked_its_heap_early_walks_it_once_for_the_rebound_values_holders(
    hot: Hot, tmp_path: Path, held: bool
) -> None:
    # values the interpreter shares (everything holds them) leave the early walk its targets
    shared = "A = None\nB = True\nC = False\nD = 0\nE = 1\nF = 2\nG = 3\nH = ''\nI = ()\n"
    v1 = {"__init__.py": "VERSION = '1.0.0'\n" + shared, "core.py": "from PKG import VERSION\n"}
    v2 = {**v1, "__init__.py": "VERSION = '2.0.0'\n" + shared}
    r1, r2 = _with_entry(hot, v1, v2)
    (core,) = hot.start(r1, "core")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()
    # held, not a copy (not under its own name): FastAPI(version=VERSION)
    app = types.SimpleNamespace(version=core.VERSION) if held else None
    stats = _turned(hot, r2, path, made).commit()
    assert stats.heap_walked_early and stats.heap_walks == 1  # found with the functions
    assert core.VERSION == "2.0.0" and (app is None or app.version == "1.0.0")


def test_a_container_the_plan_rebuilds_from_a_held_value_costs_no_second_walk(
    hot: Hot, tmp_path: Path
) -> None:
    # ABOUT holds VERSION and reads it: the plan rebuilds it to compare, which holds VERSION
    # too; counted after that, VERSION would seem to have gained a holder since the early walk
    core_v1 = "from PKG import VERSION\nABOUT = {'version': VERSION}\n"
    v1 = {"__init__.py": "VERSION = '1.0.0'\n", "core.py": core_v1}
    v2 = {**v1, "__init__.py": "VERSION = '2.0.0'\n"}
    r1, r2 = _with_entry(hot, v1, v2)
    (core,) = hot.start(r1, "core")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()
    stats = _turned(hot, r2, path, made).commit()
    assert stats.heap_walked_early and stats.heap_walks == 1
    assert core.ABOUT == {"version": "2.0.0"}


def test_a_value_outside_the_apps_package_held_is_walked_for_after_the_analysis(
    hot: Hot, tmp_path: Path
) -> None:
    v1 = {"__init__.py": "VERSION = '1.0.0'\n", "core.py": "from PKG import VERSION\n"}
    v2 = {**v1, "__init__.py": "VERSION = '2.0.0'\n"}
    _r1, r2, (core,) = hot.v1_v2(v1, v2, "core")  # app.entry is "app:main": not this package
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()
    app = types.SimpleNamespace(version=core.VERSION)
    stats = _turned(hot, r2, path, made).commit()
    assert stats.heap_walked_early and stats.heap_walks == 2 and core.VERSION == "2.0.0"
    assert app.version == "1.0.0"


def test_a_copy_taken_after_the_early_walk_is_still_refused(hot: Hot, tmp_path: Path) -> None:
    from tests.hot.test_fresh_import import _LAZY_SETTINGS

    conf_v1 = _LAZY_SETTINGS + "def main():\n    pass\n"
    v1 = {"settings.py": "DEBUG = False\nGREETING = 'hi there'\n", "core.py": conf_v1}
    v2 = {**v1, "settings.py": "DEBUG = False\nGREETING = 'howdy'\n"}
    r1, r2 = _with_entry(hot, v1, v2)
    (core, _settings) = hot.start(r1, "core", "settings")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()
    copies: list[Any] = []
    with pytest.raises(ChildError) as err:  # the first request, between the turn and proceed
        _turned(hot, r2, path, made, lambda: copies.append(core.settings()))
    codes = {r["code"] for r in err.value.details["reasons"]}
    assert codes == {"derived_state"} and copies[0].GREETING == "hi there"


def test_a_reader_that_walked_its_heap_early_still_refuses_a_copied_setting(
    hot: Hot, tmp_path: Path
) -> None:
    from tests.hot.test_fresh_import import _LAZY_SETTINGS

    v1 = {"settings.py": "DEBUG = False\nGREETING = 'hello'\n", "conf.py": _LAZY_SETTINGS}
    v2 = {**v1, "settings.py": "DEBUG = False\nGREETING = 'howdy'\n"}
    _r1, r2, (conf,) = hot.v1_v2(v1, v2, "conf")
    made, path = tmp_path / "made", tmp_path / "analysis"
    _prepare(hot, r2, Sharing(made, write=True)).abort()  # the first worker: it had no copy
    assert conf.settings().GREETING == "hello"  # this one has, since its first request
    with pytest.raises(ChildError) as err:
        _turned(hot, r2, path, made)
    codes = {r["code"] for r in err.value.details["reasons"]}
    assert codes == {"derived_state"} and conf.settings().GREETING == "hello"
