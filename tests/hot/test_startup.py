"""The record of what ran while a worker started (hotswap.child.startup), and the refusal of
changes to it (startup_code)."""

from __future__ import annotations

import sys
import threading

from hotswap.hot import startup
from tests.hot.conftest import Hot
from tests.hot.test_fresh_import import refused


def test_recording_keeps_functions_that_ran_on_threads_started_meanwhile_and_stops(
    hot: Hot,
) -> None:
    src = (
        "import threading\n"
        "def on_thread():\n    return 1\n"
        "def main():\n"
        "    t = threading.Thread(target=on_thread)\n    t.start()\n    t.join()\n"
        "def later():\n    return 2\n"
    )
    _, _r2, (m,) = hot.v1_v2({"m.py": src}, {"m.py": src}, "m")
    with startup.recording():
        m.main()
    m.later()
    names = startup.ran()[f"{hot.pkg}.m"]
    assert {"main", "on_thread"} <= names and "later" not in names
    assert sys.getprofile() is None  # nothing is left running after ready


def test_recording_leaves_a_profiler_of_the_apps_own_alone(hot: Hot) -> None:
    def theirs(*_args: object) -> None:
        return None

    sys.setprofile(theirs)
    try:
        assert startup.begin() is False
        startup.end()
        assert sys.getprofile() is theirs
    finally:
        sys.setprofile(None)
    assert startup.ran() == {}


def test_a_change_to_a_function_that_ran_at_start_up_is_refused_naming_it(hot: Hot) -> None:
    src = "POOL = {}\ndef connect():\n    POOL['size'] = 1\ndef handle():\n    return 'v1'\n"
    v1 = {"m.py": src}
    v2 = {"m.py": src.replace("'size'] = 1", "'size'] = 2")}
    r2, _ = hot.started(v1, v2, "m", "connect")
    assert refused(hot, r2) == {"startup_code"}


def test_a_change_to_code_that_did_not_run_at_start_up_is_applied(hot: Hot) -> None:
    src = (
        "ROUTES = {}\n"
        "def make_app():\n"
        "    def index():\n        return 'v1'\n"
        "    ROUTES['/'] = index\n"
        "def other():\n    return 'v1'\n"
    )
    v1 = {"m.py": src}
    v2 = {"m.py": src.replace("'v1'", "'v2'")}  # index's body and other's, not make_app's own
    r2, m = hot.started(v1, v2, "m", "make_app")
    hot.upgrade(r2)
    assert m.ROUTES["/"]() == m.other() == "v2"


def test_a_worker_thread_keeps_no_hook_after_start_up(hot: Hot) -> None:
    # a thread started during start-up drops the hook at its next call after ready
    go, done = threading.Event(), threading.Event()
    seen: list[object] = []

    def call() -> None:
        return None

    def worker() -> None:
        go.wait(5)
        call()  # its first Python call after ready: the hook removes itself
        seen.append(sys.getprofile())
        done.set()

    with startup.recording():
        t = threading.Thread(target=worker)
        t.start()
    go.set()
    assert done.wait(5)
    t.join(5)
    assert seen == [None]


def test_a_start_up_function_reading_a_value_the_upgrade_rebinds_is_refused(hot: Hot) -> None:
    # the lifespan built its pool from POOL_SIZE, imported from a module whose constant changed
    config = "POOL_SIZE = 4\n"
    main = (
        "from PKG.config import POOL_SIZE\n"
        "STATE = {}\n"
        "def lifespan():\n    STATE['pool'] = {'size': POOL_SIZE}\n"
    )
    v1 = {"config.py": config, "main.py": main}
    v2 = {**v1, "config.py": "POOL_SIZE = 16\n"}
    r2, _ = hot.started(v1, v2, "main", "lifespan")
    assert refused(hot, r2) == {"startup_code"}


def test_a_start_up_function_calling_changed_code_is_refused(hot: Hot) -> None:
    helpers = "def make_pool():\n    return {'size': 4}\n"
    main = (
        "from PKG.helpers import make_pool\n"
        "STATE = {}\n"
        "def lifespan():\n    STATE['pool'] = make_pool()\n"
    )
    v1 = {"helpers.py": helpers, "main.py": main}
    v2 = {**v1, "helpers.py": helpers.replace("4", "16")}
    r2, _ = hot.started(v1, v2, "main", "lifespan")
    assert refused(hot, r2) == {"startup_code"}


def test_a_method_that_ran_at_start_up_reading_a_rebound_constant_is_refused(hot: Hot) -> None:
    src = (
        "TIMEOUT = 1.0\n"
        "class Client:\n    def __init__(self):\n        self.timeout = TIMEOUT\n"
        "CLIENTS = []\n"
        "def lifespan():\n    CLIENTS.append(Client())\n"
    )
    v1 = {"m.py": src}
    v2 = {"m.py": src.replace("TIMEOUT = 1.0", "TIMEOUT = 5.0")}
    r2, _ = hot.started(v1, v2, "m", "lifespan")
    assert "startup_code" in refused(hot, r2)


def test_a_request_only_function_reading_a_rebound_constant_is_applied(hot: Hot) -> None:
    src = "LIMIT = 1\ndef lifespan():\n    return None\ndef handle():\n    return LIMIT\n"
    v1 = {"m.py": src}
    v2 = {"m.py": src.replace("LIMIT = 1", "LIMIT = 2")}
    r2, m = hot.started(v1, v2, "m", "lifespan")
    hot.upgrade(r2)
    assert m.handle() == 2


def test_a_django_app_config_ready_that_changed_is_refused_as_start_up_code(hot: Hot) -> None:
    # django.setup() runs AppConfig.ready() once, while the entry is imported
    apps = (
        "class AppConfig:\n    pass\n"
        "RECEIVERS = []\n"
        "class ShopConfig(AppConfig):\n"
        "    name = 'shop'\n"
        "    def ready(self):\n        RECEIVERS.append('v1')\n"
        "    def label_of(self):\n        return 'v1'\n"
    )
    v1 = {"apps.py": apps}
    v2 = {"apps.py": apps.replace("RECEIVERS.append('v1')", "RECEIVERS.append('v2')")}
    _, r2, (m,) = hot.v1_v2(v1, v2, "apps")
    assert refused(hot, r2) == {"startup_code"}
    v3 = {"apps.py": apps.replace("return 'v1'", "return 'v3'")}  # another method: applied
    r3 = hot.release(v3)
    hot.upgrade(r3)
    assert m.ShopConfig().label_of() == "v3"
