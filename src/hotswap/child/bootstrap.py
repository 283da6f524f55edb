"""Boot of a generation: the first hotswap code that runs in a child process.

The supervisor starts ``python -I -S -u -B <runtime>/boot.py`` (``OsChildren.spawn``), so what
a generation imports is decided by the release and the supervisor alone:

- ``-I`` isolated mode: no ``PYTHON*`` variable (``PYTHONPATH``, ``PYTHONHOME``, ...) of the
  operator's shell or unit changes the interpreter, no user site-packages, and neither the
  working dir nor the script's dir goes on ``sys.path``;
- ``-S`` no ``site`` at start: the interpreter's own site-packages (the supervisor's venv) are
  not on ``sys.path``, so the release runs the dependencies it bundles, not whatever the host
  has installed;
- ``-u`` unbuffered stdout and stderr: every line reaches the supervisor's log pipe when it is
  written, so the last lines before a crash are in the log and in a failed swap's
  ``details.output`` instead of lost in a buffer;
- ``-B`` no ``.pyc`` writes: the release's ``lib/`` is verified and read-only, and the runtime
  copy is precompiled with checked-hash pycs; a generation never writes into either.

``boot.py`` puts the release's ``lib/`` on ``sys.path`` (``site.addsitedir``, so ``.pth`` files
work), then the supervisor's own copy of hotswap *after* it, and calls :func:`main`. A release
that bundles its own hotswap therefore uses it; ``hello`` carries its control protocol version,
and a generation speaking another one is refused (``version_mismatch``).

Descriptors: 0 is /dev/null, 1 and 2 go to the supervisor's log, 3 .. 3+LISTEN_FDS-1 are the
public listeners (systemd's protocol, with ``LISTEN_PID`` set here to this pid), then the
private probe socket and the channel (their numbers are in the environment).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import traceback
from pathlib import Path

import hotswap
from hotswap import contract
from hotswap.child import startup
from hotswap.child.channel import Channel
from hotswap.child.runtime import ChildRuntime, import_target, log, set_current
from hotswap.contract import (
    ENV_CHANNEL_FD,
    ENV_GENERATION,
    ENV_OUTGOING,
    ENV_PROBE_FD,
    ENV_RELEASE_DIR,
    ENV_SERVICE,
    ENV_WORKER,
    ENV_WORKERS,
    LISTEN_FDS_START,
    STARTUP_FAILURE,
)
from hotswap.control.protocol import VERSION
from hotswap.release.manifest import Manifest


def _listeners() -> list[tuple[str, socket.socket]]:
    count = int(os.environ.get("LISTEN_FDS", "0"))
    names = os.environ.get("LISTEN_FDNAMES", "").split(":") if count else []
    os.environ["LISTEN_PID"] = str(os.getpid())  # the pid that consumes them: this one
    out = []
    for i in range(count):
        fd = LISTEN_FDS_START + i
        os.set_inheritable(fd, False)  # as sd_listen_fds(): no leak into grandchildren
        name = names[i] if i < len(names) else "unknown"
        out.append((name, socket.socket(fileno=fd)))
    return out


def _json_env(name: str) -> dict[str, object] | None:
    import json

    value = os.environ.get(name)
    if not value:
        return None
    loaded = json.loads(value)
    return loaded if isinstance(loaded, dict) else None


def main() -> int:
    if os.environ.get(ENV_SERVICE):
        from hotswap.child import service

        return service.main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM drains
    generation = int(os.environ[ENV_GENERATION])
    worker = int(os.environ.get(ENV_WORKER, "0"))
    workers = int(os.environ.get(ENV_WORKERS, "1"))
    release_root = Path(os.environ[ENV_RELEASE_DIR])
    listeners = _listeners()
    probe = socket.socket(fileno=int(os.environ[ENV_PROBE_FD]))
    channel = Channel.from_fd(int(os.environ[ENV_CHANNEL_FD]))
    for fd in (probe.fileno(), channel.fileno()):
        os.set_inheritable(fd, False)
    channel.event(
        contract.EVENT_HELLO, protocol=VERSION, hotswap=hotswap.__version__, pid=os.getpid()
    )
    try:
        manifest = Manifest.load(release_root)
        config = manifest.app_config()
    except Exception:
        traceback.print_exc()
        return STARTUP_FAILURE
    runtime = ChildRuntime(
        generation=generation,
        release_id=manifest.release_id,
        release_root=release_root,
        config=config,
        listeners=listeners,
        probe=probe,
        channel=channel,
        outgoing=_json_env(ENV_OUTGOING),
        worker=worker,
        workers=workers,
    )
    runtime.attach()
    set_current(runtime)
    channel.start()
    log(
        f"{runtime.name}: {manifest.name} {manifest.version} "
        f"({manifest.release_id}), pid {os.getpid()}, server {config.server}"
    )
    try:
        app = import_target(config.entry)
    except BaseException:
        log(f"{runtime.name}: importing {config.entry} failed")
        traceback.print_exc()
        return STARTUP_FAILURE
    startup.begin()  # what runs from here to ready, a hot upgrade cannot run again
    if config.server == "uvicorn":
        from hotswap.child.adapters import uvicorn as adapter
    elif config.server == "hypercorn":
        from hotswap.child.adapters import hypercorn as adapter  # type: ignore[no-redef]
    elif config.server == "waitress":
        from hotswap.child.adapters import waitress as adapter  # type: ignore[no-redef]
    else:
        from hotswap.child.adapters import callable as adapter  # type: ignore[no-redef]
    try:
        return adapter.run(runtime, app)
    except BaseException:
        traceback.print_exc()
        return 1 if runtime.ready_reported else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
