"""``state.json``: which release is current, which one was before, and the history.

It is what survives a crash or reboot (promise 7): the supervisor boots ``current`` on start. It
is replaced with write, fsync, rename, fsync of the directory (:func:`hotswap.fsutil.
write_json_atomic`), so a crash leaves the old or the new version, never half of one. A file
that is not JSON, or not of the shape below, is moved aside and read as empty::

    {"current": "<id>" | null, "previous": "<id>" | null,
     "history": [{"release": "<id>", "how": "blue-green", "at": <unix time>, ...}, ...]}
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError, ResourceError
from hotswap.fsutil import check_private, write_json_atomic
from hotswap.release.manifest import RELEASE_ID, parse_json

STATE_NAME = "state.json"
HISTORY_MAX = 50
STATE_MAX_BYTES = 16 * 1024**2


def read_private(path: Path, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of ``path``, a file hotswap trusts: opened without following
    a symlink, then checked on the opened fd to be this user's own and private."""
    with open(path, "rb", opener=_no_follow) as f:
        check_private(path, is_dir=False, st=os.fstat(f.fileno()))
        return f.read(limit + 1)


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


class StateFile:
    """One state dir's ``state.json``."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path = path
        self.warn = warn

    def read(self) -> dict[str, Any]:
        """``current``, ``previous`` (ids or None) and ``history`` (a list of objects). A file
        that is not JSON or not of that shape is moved aside (``state.json.corrupt-<time>``)
        with a warning and read as empty, so that an explicit release can still start; history
        entries that are not objects are dropped."""
        empty: dict[str, Any] = {"current": None, "previous": None, "history": []}
        try:
            data = read_private(self.path, STATE_MAX_BYTES)
        except FileNotFoundError:
            return empty
        except OSError as e:
            raise ResourceError("io_error", f"{self.path} is unreadable: {e}") from None
        try:
            if len(data) > STATE_MAX_BYTES:
                raise ReleaseError("manifest_invalid", f"it is over {STATE_MAX_BYTES} bytes")
            state = parse_json(data, STATE_NAME, "manifest_invalid")
            if not isinstance(state, dict):
                raise ReleaseError("manifest_invalid", "it is not a JSON object")
            for key in ("current", "previous"):
                value = state.setdefault(key, None)
                if value is not None and not (isinstance(value, str) and RELEASE_ID.match(value)):
                    raise ReleaseError("manifest_invalid", f"its '{key}' is {value!r:.80}")
        except ReleaseError as e:
            self._move_aside(e.message)
            return empty
        history = state.setdefault("history", [])
        if not isinstance(history, list):
            self.warn(f"{self.path}: 'history' is not a list; ignored")
            history = []
        state["history"] = [entry for entry in history if isinstance(entry, dict)]
        return dict(state)

    def record(self, release_id: str, how: str, info: dict[str, Any]) -> dict[str, Any]:
        """Make ``release_id`` current (the old current becomes previous), add a history entry,
        write the file; returns the new state."""
        state = self.read()
        if state["current"] != release_id:
            state["previous"] = state["current"]
            state["current"] = release_id
        entry = {"release": release_id, "how": how, "at": time.time(), **info}
        state["history"] = [entry, *state["history"]][:HISTORY_MAX]
        write_json_atomic(self.path, state)
        return state

    def _move_aside(self, why: str) -> None:
        aside = self.path.with_name(
            f"{STATE_NAME}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        )
        try:
            os.replace(self.path, aside)
        except OSError as e:
            self.warn(f"{self.path} is corrupt ({why}) and could not be moved aside: {e}")
            return
        self.warn(
            f"{self.path} is corrupt ({why}): moved aside to {aside.name}; no release is current"
        )
