"""Small file-system helpers shared by the release store, the handoff store and the client.

- :func:`resolve_state_dir`: where an app's state dir is.
- :func:`write_json_atomic`: replace a JSON file so a crash leaves the old or the new one.
- :func:`fsync_dir`: make a rename or unlink in a directory durable.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def resolve_state_dir(explicit: str | os.PathLike[str] | None = None, app: str = "default") -> Path:
    """An explicit path, else ``$HOTSWAP_STATE_DIR``, else
    ``$XDG_STATE_HOME/hotswap/<app>`` (``~/.local/state/hotswap/<app>``)."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get("HOTSWAP_STATE_DIR")
    if env:
        return Path(env).expanduser().absolute()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base, "hotswap", app).absolute()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves the old file or the new one, never a mix."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
