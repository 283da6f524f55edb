"""The throwaway child in which :func:`hotswap.hot.check` asks the live engine for its verdict.

:func:`run` starts ``python -I -S -B`` with the old release's ``lib/`` first on ``sys.path``
(``site.addsitedir``, as a generation's boot does) and hotswap and ``packaging`` after it (from
a temporary directory of links, as the supervisor's runtime copy is laid out), in its own
session, stdin from ``/dev/null``. The child (:func:`child_main`) imports ``app.entry`` as a
generation would, then every changed module of the old release not imported yet (a live process
may import it later; one that fails to import is a warning: a process cannot have it either),
then runs :meth:`HotUpgrade.prepare` against the new release, never the commit, and writes the
verdict as JSON to a file. Nothing is written to the releases (``-B``: no bytecode caches).
When the child is done, or past ``timeout``, its whole session is killed, so nothing it started
outlives the check.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hotswap.errors import ChildError, HotswapError
from hotswap.hot.tree import ReleaseTree, diff_trees
from hotswap.hot.verdict import Reason, Verdict
from hotswap.release.manifest import Manifest

_BOOT = """\
import os, site, sys
site.addsitedir(os.path.join(sys.argv[1], "lib"))
sys.path.append(sys.argv[2])
from hotswap.hot.isolated import child_main
sys.exit(child_main(sys.argv[1], sys.argv[3], sys.argv[4], sys.argv[5]))
"""
IMPORT_FAILED = 3  # the child's exit status when importing the old release failed


def run(
    old: ReleaseTree,
    new: ReleaseTree,
    *,
    allow_dependency_changes: bool,
    timeout: float,
    env: Mapping[str, str] | None = None,
    startup: Mapping[str, Any] | None = None,
) -> Verdict:
    import packaging

    import hotswap

    with tempfile.TemporaryDirectory(prefix="hotswap-check-") as scratch:
        runtime = Path(scratch) / "runtime"
        runtime.mkdir()
        for pkg in (hotswap, packaging):
            src = Path(pkg.__file__ or "").parent
            os.symlink(src, runtime / src.name)
        out = Path(scratch) / "verdict.json"
        record = Path(scratch) / "startup.json"  # a file: it may outgrow an argument
        record.write_text(json.dumps(dict(startup or {})), encoding="utf-8")
        opts = json.dumps(
            {"allow_dependency_changes": allow_dependency_changes, "startup": str(record)}
        )
        argv = [sys.executable, "-I", "-S", "-B", "-c", _BOOT]
        argv += [str(old.root), str(runtime), str(new.root), str(out), opts]
        child_env = _environment(old, env)
        log = Path(scratch) / "output"
        with open(log, "wb") as sink:  # a file, not a pipe: what the child started may hold it
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=scratch,
                start_new_session=True,
            )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ChildError(
                "check_failed",
                f"the check's child importing {old.release_id} did not finish within"
                f" {timeout:g} s; nothing was changed",
                output=_tail(log),
            ) from None
        finally:
            _kill_session(proc)
        return _result(old, new, proc.returncode, out, _tail(log))


def _environment(old: ReleaseTree, extra: Mapping[str, str] | None) -> dict[str, str]:
    """A generation's environment (the release's defaults, this process's environment, the
    state dir's env file as ``extra``), with nothing that would make the child serve."""
    try:
        defaults = dict(Manifest.load(old.root).app_config().env)
    except HotswapError:
        defaults = {}
    env = {**defaults, **os.environ, **(extra or {})}
    for key in ("HOTSWAP", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(key, None)
    env.update({"HOTSWAP_RELEASE_DIR": str(old.root), "HOTSWAP_CHECK": "1"})
    return env


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's session (it and anything it started), then reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(log: Path, lines: int = 20, limit: int = 1 << 16) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _result(old: ReleaseTree, new: ReleaseTree, status: int, out: Path, tail: str) -> Verdict:
    try:
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if status == IMPORT_FAILED and data.get("status") == "import_failed":
        raise ChildError(
            "boot_failed",
            f"importing {data.get('entry')} of {old.release_id} failed in the check's child,"
            " so a generation would fail too",
            output=data.get("traceback") or tail,
        )
    if data.get("status") == "error" and isinstance(data.get("error"), dict):
        raise HotswapError.from_json(data["error"])
    if status != 0 or data.get("status") != "ok":
        raise ChildError(
            "check_failed",
            f"the check's child exited with status {status} before giving a verdict",
            output=tail,
        )
    diff = diff_trees(old, new)
    return Verdict(
        old_release=old.release_id,
        new_release=new.release_id,
        reasons=tuple(Reason(**r) for r in data["reasons"]),
        warnings=tuple(data["warnings"]),
        modules_changed=tuple(sorted(diff.modules("changed"))),
        modules_added=tuple(sorted(diff.modules("added"))),
        modules_removed=tuple(sorted(diff.modules("removed"))),
        files_changed=diff.files,
    )


def child_main(old_root: str, new_root: str, out: str, opts: str) -> int:
    """In the child: import the old release, run the engine's prepare, write the verdict."""
    from hotswap.child import startup
    from hotswap.child.runtime import import_target
    from hotswap.hot.engine import HotUpgrade

    def write(**data: Any) -> None:
        Path(out).write_text(json.dumps(data), encoding="utf-8")

    options = json.loads(opts)
    try:
        old, new = ReleaseTree.load(old_root), ReleaseTree.load(new_root)
    except HotswapError as exc:
        write(status="error", error=exc.to_json())
        return 1
    entry = str(old.app.get("entry", ""))
    try:
        if entry:
            import_target(entry)
    except BaseException:
        write(status="import_failed", entry=entry, traceback=traceback.format_exc(limit=-8))
        return IMPORT_FAILED
    warnings = [_import(name) for name in _modules_to_import(old, new)]
    warnings = [w for w in warnings if w]
    warnings += _quiescence_warning(old)
    startup.adopt(json.loads(Path(options["startup"]).read_text(encoding="utf-8")))
    up = HotUpgrade(old, new, allow_dependency_changes=options["allow_dependency_changes"])
    try:
        verdict = up.prepare()
        reasons = _instance_guards(up)
        warnings += verdict.warnings
    except ChildError as exc:
        if exc.code != "hot_upgrade_refused":
            write(status="error", error=exc.to_json())
            return 1
        reasons = list(exc.details.get("reasons") or ())
        warnings += exc.details.get("warnings") or ()
    except HotswapError as exc:
        write(status="error", error=exc.to_json())
        return 1
    finally:
        up.abort()
    write(status="ok", reasons=reasons, warnings=warnings)
    return 0


# the adapters that register their loop (uvicorn, hypercorn) or an UpgradeGate (waitress)
_QUIESCING_SERVERS = ("uvicorn", "hypercorn", "waitress")


def _quiescence_warning(old: ReleaseTree) -> list[str]:
    """The server adapters register their loop or a gate; a ``callable`` server must register
    one itself, maybe only when it starts serving, which the child never sees."""
    from hotswap.hot.quiesce import default_quiescence

    q = default_quiescence()
    server = old.app.get("server")
    if server in _QUIESCING_SERVERS or q.loop is not None or q.gate is not None:
        return []
    return [
        f"app.server is {server!r} and importing the app registered no quiescence, so this"
        " check cannot tell whether the live upgrade can quiesce: it can if serve() registers"
        " its event loop or an UpgradeGate (hotswap.set_quiescence) when it starts, as the"
        " aiohttp and asyncio recipes do; if it never does, the live upgrade is refused"
        " (no_quiescence) unless run with --no-quiesce"
    ]


def _modules_to_import(old: ReleaseTree, new: ReleaseTree) -> list[str]:
    """What a live process may have imported by the time of an upgrade that matters to it: the
    changed modules, and the packages holding changed data files (not ``__main__``)."""
    diff = diff_trees(old, new)
    names = set(diff.modules("changed"))
    for rel in (*diff.changed, *diff.added, *diff.removed):
        if rel.endswith(".py") or "__pycache__" in rel or ".dist-info/" in rel:
            continue
        parent = Path(rel).parent
        while parent.parts[1:] and not (old.root / parent / "__init__.py").is_file():
            parent = parent.parent
        if parent.parts[1:]:
            names.add(".".join(parent.parts[1:]))
    return sorted(n for n in names if n.rpartition(".")[2] != "__main__")


def _import(name: str) -> str:
    if name in sys.modules:
        return ""
    try:
        importlib.import_module(name)
    except BaseException as exc:
        return f"{name} does not import here ({type(exc).__name__}: {exc}); not analysed"
    return ""


def _instance_guards(up: Any) -> list[dict[str, Any]]:
    """``instance_state`` for the classes the live engine refuses once instances exist: a
    fresh import makes none, a serving process usually has them."""
    prepared = up.prepared
    out = []
    for cls, why in getattr(prepared, "guards", None) or ():
        where = f"{cls.__module__}.{cls.__qualname__}"
        msg = (
            f"{where}: {why}; instances made by the old code would hold the old state (none"
            " exist right after import, but a serving process makes them); define"
            " __code_change__(self, old_vsn, extra) in the class to migrate them"
        )
        out.append(Reason("instance_state", msg, subject=where).to_json())
    for cls, why in getattr(prepared, "replaced", None) or ():
        if type(cls) is getattr(typing, "_TypedDictMeta", None):
            continue  # its instances are plain dicts; a subclass would be in this child too
        where = f"{cls.__module__}.{cls.__qualname__}"
        msg = (
            f"{why}; the class would be made anew, and instances of the old one would keep it"
            " (none exist right after import, but a serving process may make them)"
        )
        out.append(Reason("class_layout", msg, subject=where).to_json())
    return out
