"""A service process: a long-lived object under the supervisor that generations can call.

Declared in ``[tool.hotswap]`` (``services = [{ name = "deployer", entry = "pkg.mod:Deployer" }]``)
or passed to ``hotswap.start(services=...)``. The supervisor starts each service in a process of
its own *before* the first generation, from the release it booted with; restarts it (with
backoff) if it dies; never restarts it on a cutover; stops it last at shutdown.

The entry names a class or a zero-argument factory. The object is built once; its optional
``start()`` runs before the service is reported ready and its optional ``stop()`` at shutdown
(or when the supervisor dies). Any other public method is callable from a generation or any
client: ``hotswap.call_service("deployer", "deploy", "blue")``. Arguments and results are
JSON-compatible (or bytes); each call runs on a thread of its own, so the object guards its
own state. A method that raises a :class:`hotswap.HotswapError` gives the caller that error
and code; any other exception becomes ``service_failed``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from typing import Any

import hotswap
from hotswap import contract
from hotswap.child.channel import Channel
from hotswap.child.runtime import import_target, log
from hotswap.contract import ENV_CHANNEL_FD, ENV_SERVICE, ENV_SERVICE_ENTRY, STARTUP_FAILURE
from hotswap.control.protocol import VERSION
from hotswap.errors import ChildError, HotswapError, UsageError

_RESERVED = frozenset({"start", "stop"})


def main() -> int:
    name = os.environ[ENV_SERVICE]
    entry = os.environ[ENV_SERVICE_ENTRY]
    channel = Channel.from_fd(int(os.environ[ENV_CHANNEL_FD]))
    os.set_inheritable(channel.fileno(), False)
    channel.event(
        contract.EVENT_HELLO, protocol=VERSION, hotswap=hotswap.__version__, pid=os.getpid()
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the handler only records; the main thread acts
    signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
    try:
        obj = import_target(entry)()
        starter = getattr(obj, "start", None)
        if callable(starter):
            starter()
    except BaseException:
        log(f"service {name}: {entry} failed to start")
        traceback.print_exc()
        return STARTUP_FAILURE

    def call(args: dict[str, Any]) -> Any:
        method = args.get("method")
        if not isinstance(method, str) or method.startswith("_") or method in _RESERVED:
            raise UsageError("bad_request", f"{method!r} is not a public method of {name}")
        fn = getattr(obj, method, None)
        if not callable(fn):
            raise UsageError("bad_request", f"service {name} has no method {method!r}")
        try:
            return fn(*args.get("args", []), **args.get("kwargs", {}))
        except HotswapError:
            raise
        except Exception as e:
            traceback.print_exc()
            raise ChildError(
                "service_failed", f"{name}.{method} raised {type(e).__name__}: {e}"
            ) from None

    channel.handle(contract.OP_CALL, call, threaded=True)
    channel.on_eof(stop.set)
    channel.start()
    channel.event(contract.EVENT_READY, pid=os.getpid())
    log(f"service {name} ({entry}) ready, pid {os.getpid()}")
    while not stop.wait(0.5):
        pass
    stopper = getattr(obj, "stop", None)
    if callable(stopper):
        try:
            stopper()
        except Exception:
            traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
