"""The ``deployer`` service: rebuilds the example with a new label and swaps to it.

It runs under the supervisor, in a process of its own (``[tool.hotswap] services``), so it is
not touched by the swaps it makes: the generation that asked for a deploy is drained away
half-way through, while the deployer and its log carry on. (BeamDeploy's example keeps its
``Example.Deployer`` GenServer in the parent node for the same reason.)

A deploy runs on a thread of its own; ``deploy()`` returns at once. The page follows it by
polling :meth:`Deployer.log` (through the app's event stream)::

    idle ──deploy()──▶ building ──▶ swapping ──▶ done
                          │            │
                          └────────────┴──▶ failed   (the running release keeps serving)

A second ``deploy()`` while one runs is refused with ``upgrade_in_progress``, as hotswap
itself refuses a second upgrade: refused at once, never queued.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import hotswap
from example_app import builder

MODES = ("blue-green", "hot")
LOG_LINES = 500
BUILD_KEY = "example.last_build"  # the build counter, kept in the supervisor's handoff store


class Deployer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LINES)
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._ids = itertools.count(1)
        self._deploy: dict[str, Any] | None = None  # the current or last deploy
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._stopping = False
        self._last_build = 0

    # -- service hooks ----------------------------------------------------------------

    def start(self) -> None:
        self._last_build = self._read_last_build()
        self._append("info", f"deployer ready (pid {os.getpid()})", deploy=None)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)

    # -- the public methods (called from generations with hotswap.call_service) -------

    def deploy(
        self, label: str, mode: str = "blue-green", fault: str | None = None
    ) -> dict[str, Any]:
        """Start a deploy of ``label`` and return at once; refuse if one runs."""
        try:
            label = builder.check_label(label)
        except ValueError as e:
            raise hotswap.UsageError("bad_request", str(e)) from None
        if mode not in MODES:
            raise hotswap.UsageError("bad_request", f"mode must be one of {MODES}, got {mode!r}")
        if fault is not None and fault not in builder.FAULTS:
            raise hotswap.UsageError(
                "bad_request", f"fault must be one of {builder.FAULTS}, got {fault!r}"
            )
        with self._lock:
            running = self._deploy
            if running is not None and running["state"] in ("building", "swapping"):
                raise hotswap.UsageError(
                    "upgrade_in_progress",
                    f"deploy #{running['id']} ({running['label']!r}) is still {running['state']};"
                    " try again when it is done",
                )
            if self._stopping:
                raise hotswap.UsageError("upgrade_in_progress", "the deployer is stopping")
            self._last_build += 1
            build = self._last_build
            deploy = {
                "id": next(self._ids),
                "label": label,
                "mode": mode,
                "fault": fault,
                "build": build,
                "version": builder.version_of(build),
                "state": "building",
                "phase": "build",
                "started_at": time.time(),
                "finished_at": None,
                "error": None,
                "result": None,
            }
            self._deploy = deploy
            self._thread = threading.Thread(
                target=self._run, args=(deploy,), name=f"deploy-{deploy['id']}", daemon=True
            )
            self._thread.start()
        return dict(deploy)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "deploy": dict(self._deploy) if self._deploy else None,
                "last_seq": self._last_seq,
                "pid": os.getpid(),
            }

    def log(self, since: int = 0, limit: int = 200) -> dict[str, Any]:
        """Log entries after ``since`` (at most ``limit``), with the deploy's state."""
        with self._lock:
            entries = [e for e in self._log if e["seq"] > since][:limit]
            return {
                "entries": entries,
                "last_seq": self._last_seq,
                "deploy": dict(self._deploy) if self._deploy else None,
            }

    # -- the deploy thread ------------------------------------------------------------

    def _run(self, deploy: dict[str, Any]) -> None:
        started = time.monotonic()
        scratch = Path(tempfile.mkdtemp(prefix="example-deploy-"))
        say = self._sayer(deploy, started)
        try:
            how = "hot upgrade" if deploy["mode"] == "hot" else "blue-green swap"
            say(
                "info",
                f"deploy #{deploy['id']}: {deploy['label']!r} as {deploy['version']} ({how})",
            )
            self._remember_build(deploy["build"])
            source = builder.default_source()
            project = builder.stamp_project(
                source,
                scratch / "project",
                label=deploy["label"],
                build=deploy["build"],
                fault=deploy["fault"],
            )
            say("info", f"copied {source} and wrote example_app/_build.py")
            say("step", f"$ hotswap build {project.name} -o dist")
            say("phase", "build ...", phase="build", phase_state="started")
            built = time.monotonic()
            tarball = builder.run_build(
                project,
                scratch / "dist",
                lambda line: say("build", line),
                on_start=self._set_proc,
            )
            self._set_proc(None)
            ms = (time.monotonic() - built) * 1000
            say("phase", f"build: done in {ms:.0f} ms", phase="build", phase_state="done", ms=ms)
            self._update(
                deploy, state="swapping", phase="unpack" if deploy["mode"] != "hot" else "hot"
            )
            if deploy["mode"] == "hot":
                result = self._hot(deploy, tarball, say)
            else:
                result = self._blue_green(deploy, tarball, say)
            self._update(deploy, state="done", phase=None, result=result)
            say("done", f"deploy #{deploy['id']} done in {time.monotonic() - started:.1f}s")
        except builder.BuildFailed as e:
            self._fail(deploy, say, "build_failed", str(e))
        except hotswap.HotswapError as e:
            for line in _detail_lines(e):
                say("output", line)
            phase = (e.details or {}).get("phase")
            if isinstance(phase, str):
                self._update(deploy, phase=phase)
            self._fail(deploy, say, e.code, e.message)
        except Exception as e:  # the deployer must outlive any deploy
            self._fail(deploy, say, "deploy_failed", f"{type(e).__name__}: {e}")
        finally:
            self._set_proc(None)
            shutil.rmtree(scratch, ignore_errors=True)

    def _blue_green(self, deploy: dict[str, Any], tarball: Path, say: Any) -> dict[str, Any]:
        say("step", f"$ hotswap.upgrade({tarball.name})")

        def on_phase(event: dict[str, Any]) -> None:
            phase = event.get("phase")
            if event.get("state") == "started":
                self._update(deploy, phase=phase)
                say("phase", f"{phase} ...", phase=phase, phase_state="started")
            elif event.get("state") == "done":
                ms = event.get("ms")
                took = f" in {ms:.0f} ms" if isinstance(ms, int | float) else ""
                say("phase", f"{phase}: done{took}", phase=phase, phase_state="done", ms=ms)

        result = hotswap.upgrade(tarball, on_phase=on_phase)
        say(
            "info",
            f"now serving {result['release']} as generation {result['generation']}"
            f" (pid {result['pid']}) in {result['total_ms']:.0f} ms",
        )
        return {k: result.get(k) for k in ("how", "release", "generation", "pid", "total_ms")}

    def _hot(self, deploy: dict[str, Any], tarball: Path, say: Any) -> dict[str, Any]:
        from hotswap.control import client

        say("step", f"$ hotswap hot-upgrade {tarball.name}")
        say("phase", "hot ...", phase="hot", phase_state="started")
        result = client.call("hot_upgrade", release=str(tarball), timeout=None)
        stats = result.get("stats") or {}
        say(
            "phase",
            f"hot: done in {result['total_ms']:.0f} ms",
            phase="hot",
            phase_state="done",
            ms=result["total_ms"],
        )
        say(
            "info",
            f"generation {result['generation']} (pid {result['pid']}) now runs {result['release']};"
            f" {len(stats.get('modules_changed', []))} module(s) changed, suspension window"
            f" {stats.get('window_ms', 0):.2f} ms",
        )
        return {k: result.get(k) for k in ("how", "release", "generation", "pid", "total_ms")} | {
            "window_ms": stats.get("window_ms")
        }

    # -- helpers --------------------------------------------------------------------

    def _sayer(self, deploy: dict[str, Any], started: float) -> Any:
        def say(kind: str, text: str, **extra: Any) -> None:
            self._append(kind, text, deploy=deploy["id"], t=time.monotonic() - started, **extra)

        return say

    def _append(
        self, kind: str, text: str, *, deploy: int | None, t: float = 0.0, **extra: Any
    ) -> None:
        with self._lock:
            seq = next(self._seq)
            self._last_seq = seq
            self._log.append(
                {
                    "seq": seq,
                    "deploy": deploy,
                    "kind": kind,
                    "t": round(t, 2),
                    "text": text,
                    **extra,
                }
            )

    def _update(self, deploy: dict[str, Any], **changes: Any) -> None:
        with self._lock:
            deploy.update(changes)
            if changes.get("state") in ("done", "failed"):
                deploy["finished_at"] = time.time()

    def _fail(self, deploy: dict[str, Any], say: Any, code: str, message: str) -> None:
        say("error", f"[{code}] {message}")
        say("error", "deploy failed: the running release keeps serving")
        self._update(deploy, state="failed", error={"code": code, "message": message})

    def _set_proc(self, proc: subprocess.Popen[str] | None) -> None:
        with self._lock:
            self._proc = proc

    def _read_last_build(self) -> int:
        try:
            value = hotswap.get_handoff(BUILD_KEY)
        except hotswap.HotswapError:
            return 0
        return value if isinstance(value, int) else 0

    def _remember_build(self, build: int) -> None:
        # a counter that restarts is harmless: release ids carry a content hash
        with contextlib.suppress(hotswap.HotswapError):
            hotswap.put_handoff(BUILD_KEY, build)


def _detail_lines(error: hotswap.HotswapError) -> list[str]:
    """The interesting part of an error's details: the failing child's last output lines."""
    details = error.details or {}
    tail = details.get("tail") or details.get("output") or []
    if isinstance(tail, str):
        tail = tail.splitlines()
    return [str(line) for line in tail][-20:]
