"""Rendering helpers shared by the commands: progress lines on stderr, sizes, times, values.

A command's own human renderer sits beside its handler; what more than one command shows
lives here.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from typing import Any

from hotswap.errors import HotswapError


class Progress:
    """Phase lines on stderr with the time since start: ``[  1.2s] building the wheel``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


class PhasePrinter:
    """Prints each swap phase as it finishes, with its duration."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(quiet)

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("state") == "started":
            self.progress(f"{event['phase']} ...")
        elif event.get("state") == "done" and event.get("ms") is not None:
            self.progress(f"{event['phase']}: done in {event['ms']:.0f} ms")
        elif event.get("state") == "failed" and event.get("ms") is not None:
            self.progress(f"{event['phase']}: FAILED after {event['ms']:.0f} ms")


def human_bytes(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ... up to GiB."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"


def when(ts: int) -> str:
    """A UNIX time as ``2026-12-01 21:37:48 UTC``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def show(value: Any) -> str:
    """A handoff value for people: JSON, or ``<N bytes>``."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return json.dumps(value)


def as_json(data: dict[str, Any]) -> str:
    """The fallback renderer: the JSON object, indented."""
    return json.dumps(data, indent=2)


def error_text(error: HotswapError, *, tail: int) -> str:
    """``hotswap: error [code]: message``, then the last ``tail`` lines of the failed
    generation's output when the error carries it (``--json`` has all of it in
    ``details.output``)."""
    text = f"hotswap: error [{error.code}]: {error.message}"
    reasons = error.details.get("reasons")
    if isinstance(reasons, list) and reasons:  # a refused hot upgrade: its codes, as documented
        each = [
            f"{r.get('code')} ({r['subject']})" if r.get("subject") else str(r.get("code"))
            for r in reasons
            if isinstance(r, dict)
        ]
        text += "\n  reasons: " + ", ".join(each)
    output = error.details.get("output")
    if tail <= 0 or not isinstance(output, list) or not output:
        return text
    lines = [str(line) for line in output[-tail:]]
    shown = f"last {len(lines)} of {len(output)}" if len(output) > len(lines) else "all"
    worker = error.details.get("worker")
    whose = f"worker {worker}" if isinstance(worker, int) else "the generation"
    return "\n".join([text, f"  output of {whose} ({shown} lines):", *(f"  | {x}" for x in lines)])


# -- status --watch -------------------------------------------------------------------------

TICKING = frozenset({"uptime_s", "elapsed_ms"})  # change at every look: not a change
# a blue-green swap's phases in the order they run (hotswap.supervisor.swap.Phase)
SWAP_PHASES = ("unpack", "spawn", "boot", "health", "cutover", "commit", "drain")
# a hot upgrade's (hotswap.supervisor.hot): of several workers, and of one ("apply" is its
# prepare and commit, one request)
HOT_PHASES = ("resolve", "prepare", "commit", "current")
HOT_PHASES_ONE = ("resolve", "apply", "current")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen


def steady_status(value: Any) -> Any:
    """``value`` without its ever-ticking fields, at every depth: equal when nothing changed."""
    if isinstance(value, dict):
        return {k: steady_status(v) for k, v in value.items() if k not in TICKING}
    if isinstance(value, list):
        return [steady_status(v) for v in value]
    return value


def progress_line(status: dict[str, Any], width: int = 28) -> str | None:
    """A running swap as a bar: ``[==========>        ] boot (3 of 7), 1.4 s``."""
    upgrade = status.get("upgrade")
    if not upgrade:
        return "upgrade in progress" if status.get("upgrading") else None
    phase = upgrade["phase"]
    phases: tuple[str, ...] = SWAP_PHASES
    if upgrade.get("how") == "hot":
        several = (status.get("active") or {}).get("worker_count", 1) > 1
        phases = HOT_PHASES if several else HOT_PHASES_ONE
    step = phases.index(phase) if phase in phases else len(phases)
    done = round(width * step / len(phases))
    bar = "=" * done + (">" if done < width else "") + " " * max(0, width - done - 1)
    return (
        f"[{bar}] {phase} ({min(step + 1, len(phases))} of {len(phases)}),"
        f" {upgrade['elapsed_ms'] / 1000:.1f} s"
    )


def watch_screen(text: str, status: dict[str, Any]) -> str:
    """One redraw of ``status --watch`` on a terminal: the status, its progress line, and
    when it was taken."""
    lines = [text]
    progress = progress_line(status)
    if progress:
        lines.append(f"progress    {progress}")
    lines.append(f"\n{time.strftime('%H:%M:%S')}  watching (Ctrl-C to stop)")
    return CLEAR + "\n".join(lines) + "\n"
