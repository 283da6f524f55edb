"""BeamDeploy's hot-upgrade scenarios (its unit and integration tests), in process.

The fixture app keeps its state in a server object, as ``HotReleaseApp`` keeps it in a GenServer:
label v1 → v2 and a migration counter incremented by ``__code_change__``; v2 adds a module;
a failing ``__code_change__`` leaves everything as it was and the old code answering.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from hotswap.errors import ChildError, UsageError
from hotswap.hot import UpgradeGate, hot_upgrade
from hotswap.hot.testing import code_change
from tests.hot.conftest import Hot

SERVER_V1 = """
    class Server:
        def __init__(self):
            self.label = "v1"
            self.migrations = 0
        def version(self):
            return "v1"
        def state(self):
            return {"label": self.label, "migrations": self.migrations}

    SERVER = Server()

    def new_module():
        return "missing"
"""

SERVER_V2 = """
    import PKG.new_feature

    __vsn__ = "2"

    class Server:
        __vsn__ = "2"

        def __init__(self):
            self.label = "v2"
            self.migrations = 0
        def version(self):
            return "v2"
        def state(self):
            return {"label": self.label, "migrations": self.migrations,
                    "previous_label": getattr(self, "previous_label", None)}
        def __code_change__(self, old_vsn, extra):
            if extra == "fail":
                self.label = "half-migrated"
                raise ValueError("forced failure")
            self.previous_label = self.label
            self.label = "v2"
            self.migrations += 1
            self.old_vsn = old_vsn

    SERVER = Server()

    def new_module():
        return PKG.new_feature.hello()

    CHANGES = []
    def __code_change__(old_vsn, extra):
        CHANGES.append((old_vsn, extra))
"""

FEATURE = "def hello():\n    return 'new-module-loaded'\n"


def _releases(hot: Hot) -> tuple[Path, Path]:
    return (
        hot.release({"server.py": SERVER_V1}),
        hot.release({"server.py": SERVER_V2, "new_feature.py": FEATURE}),
    )


def test_hot_upgrade_keeps_the_process_and_migrates_state(hot: Hot) -> None:
    r1, r2 = _releases(hot)
    (server,) = hot.start(r1, "server")
    live = server.SERVER
    pid = os.getpid()
    assert (live.version(), server.new_module()) == ("v1", "missing")
    assert live.state() == {"label": "v1", "migrations": 0}
    stats = hot.upgrade(r2, extra="deploy-2")
    assert os.getpid() == pid
    assert server.SERVER is live  # `SERVER = Server()` did not change, so it did not run again
    assert live.version() == "v2"
    assert server.new_module() == "new-module-loaded"
    assert live.state() == {"label": "v2", "migrations": 1, "previous_label": "v1"}
    assert live.old_vsn == stats_old_vsn(r1)
    assert [(stats_old_vsn(r1), "deploy-2")] == server.CHANGES
    assert stats.instances_migrated == 1 and stats.modules_migrated == 1
    assert stats.modules_added == (f"{hot.pkg}.new_feature",)
    assert stats.window_ms >= 0 and stats.prepare_ms > 0


def stats_old_vsn(root: Path) -> str:
    """v1 sets no __vsn__: the default is a hash of the module source."""
    from hotswap.hot.codeobjects import source_vsn

    return source_vsn(next((root / "lib").glob("*/server.py")).read_bytes())


def test_code_change_failing_restores_everything_and_old_code_answers(hot: Hot) -> None:
    r1, r2 = _releases(hot)
    (server,) = hot.start(r1, "server")
    live = server.SERVER
    version_code = type(live).version.__code__
    before = dict(server.__dict__)
    class_dict = dict(type(live).__dict__)
    path = list(sys.path)
    with pytest.raises(ChildError) as err:
        hot_upgrade(r2, current=r1, extra="fail", no_quiesce=True)
    assert err.value.code == "hot_upgrade_failed"
    assert "forced failure" in err.value.message and "rolled back" in err.value.message
    assert err.value.details["step"].startswith("code_change:")
    assert live.version() == "v1" and server.new_module() == "missing"
    assert live.state() == {"label": "v1", "migrations": 0}
    assert type(live).version.__code__ is version_code
    assert server.__dict__ == before and dict(type(live).__dict__) == class_dict
    assert sys.path == path and server.__file__.startswith(str(r1))
    assert f"{hot.pkg}.new_feature" not in sys.modules
    assert not hasattr(sys.modules[hot.pkg], "new_feature")
    # and the same release applies cleanly afterwards
    hot.upgrade(r2)
    assert live.state()["label"] == "v2"


def test_missing_tarball_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        hot_upgrade(tmp_path / "nope.tar.gz", current=tmp_path)
    assert err.value.code == "release_not_found"


def test_missing_tarball_leaves_no_upgrade_in_progress(hot: Hot, tmp_path: Path) -> None:
    r1, r2 = _releases(hot)
    hot.start(r1, "server")
    with pytest.raises(UsageError):
        hot_upgrade(tmp_path / "nope.tar.gz", current=r1)
    hot.upgrade(r2)  # not refused as "upgrade_in_progress"


def test_not_running_a_release_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        hot_upgrade(tmp_path, app="nothing-runs-this")
    assert err.value.code == "release_not_found"


def test_current_release_found_on_sys_path_for_repeated_upgrades(hot: Hot) -> None:
    r1 = hot.release({"m.py": "def v():\n    return 1\n"})
    r2 = hot.release({"m.py": "def v():\n    return 2\n"})
    r3 = hot.release({"m.py": "def v():\n    return 3\n"})
    (m,) = hot.start(r1, "m")
    v = m.v
    hot_upgrade(r2, no_quiesce=True)  # no current=: found on sys.path
    hot_upgrade(r3, no_quiesce=True)
    assert v() == 3


def test_second_upgrade_while_one_runs_is_refused_at_once(hot: Hot) -> None:
    r1, r2 = _releases(hot)
    hot.start(r1, "server")
    gate = UpgradeGate()
    entered, release_handler = threading.Event(), threading.Event()

    def handler() -> None:
        with gate:
            entered.set()
            release_handler.wait(10)

    t = threading.Thread(target=handler)
    t.start()
    assert entered.wait(5)
    first: list[object] = []
    upgrader = threading.Thread(
        target=lambda: first.append(hot_upgrade(r2, current=r1, gate=gate, suspend_timeout=10))
    )
    upgrader.start()
    assert gate.wait_until(lambda g: g.closed, timeout=5)
    with pytest.raises(UsageError) as err:
        hot_upgrade(r2, current=r1)
    assert err.value.code == "upgrade_in_progress"
    release_handler.set()
    t.join(5)
    upgrader.join(10)
    assert first and not isinstance(first[0], Exception)


def test_explicit_vsn_unchanged_skips_code_change(hot: Hot) -> None:
    v1 = {"m.py": "__vsn__ = 1\nCALLS = []\ndef f():\n    return 1\n"}
    v2 = {
        "m.py": "__vsn__ = 1\nCALLS = []\ndef f():\n    return 2\n"
        "def __code_change__(old, extra):\n    CALLS.append(old)\n"
    }
    _, r2, (m,) = hot.v1_v2(v1, v2, "m")
    stats = hot.upgrade(r2)
    assert m.CALLS == [] and stats.modules_migrated == 0 and m.f() == 2


def test_testing_code_change_helper_restores_state_on_failure() -> None:
    class Thing:
        def __init__(self) -> None:
            self.items = [1]
            self.label = "v1"

        def __code_change__(self, old_vsn: object, extra: object) -> None:
            self.items.append(2)
            self.label = "v2"
            if extra == "fail":
                raise RuntimeError("nope")

    t = Thing()
    items = t.items
    with pytest.raises(RuntimeError):
        code_change(t, "1", "fail")
    assert t.label == "v1" and t.items == [1] and t.items is items
    code_change(t, "1")
    assert t.label == "v2" and t.items == [1, 2]
