"""Which state dir a command works on, when none is given.

In order: ``--state-dir``; ``$HOTSWAP_STATE_DIR``; the app's own dir,
``$XDG_STATE_HOME/hotswap/<app>`` (else ``~/.local/state/hotswap/<app>``), when the command
knows the app (``hotswap run TARBALL`` reads it from the tarball's manifest); else the one
state dir under ``…/hotswap/``, if there is exactly one. None or several is
``state_dir_unknown``, naming what was found: the command never guesses between two apps.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hotswap.errors import UsageError
from hotswap.release.store import resolve_state_dir

if TYPE_CHECKING:
    from hotswap.release.verify import Limits

ENV = "HOTSWAP_STATE_DIR"
HELP = (
    "the app's state dir (default: $HOTSWAP_STATE_DIR, else the only state dir under"
    " $XDG_STATE_HOME/hotswap/ or ~/.local/state/hotswap/)"
)
APP_HELP = (
    "the app's state dir (default: $HOTSWAP_STATE_DIR, else ~/.local/state/hotswap/APP"
    " with APP the tarball's app name)"
)
_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def base_dir() -> Path:
    """Where per-app state dirs live by default: ``$XDG_STATE_HOME/hotswap``, else
    ``~/.local/state/hotswap``."""
    root = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(root, "hotswap").absolute()


def given(explicit: str | os.PathLike[str] | None) -> bool:
    """True when the state dir is named (``--state-dir`` or ``$HOTSWAP_STATE_DIR``)."""
    return bool(explicit or os.environ.get(ENV))


def app_of(
    tarball: str | os.PathLike[str], sha256: str | None = None, limits: Limits | None = None
) -> str:
    """The app a release tarball belongs to (its manifest's ``name``), read by verifying it."""
    from hotswap.release import verify

    scan = verify.scan(Path(tarball), expected_sha256=sha256, limits=limits or verify.Limits())
    return scan.manifest.name


def resolve(
    explicit: str | os.PathLike[str] | None,
    *,
    app: str | None = None,
    tarball: str | None = None,
) -> Path:
    """The state dir of ``--state-dir`` (``explicit``), ``$HOTSWAP_STATE_DIR``, the app's own,
    or the only one there is; raises ``state_dir_unknown`` otherwise. With several, a
    ``tarball`` (a command's release argument) picks its app's dir if that is one of them."""
    if given(explicit):
        return resolve_state_dir(explicit)
    base = base_dir()
    if app is not None and _APP_NAME.fullmatch(app):
        return base / app
    try:
        found = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        found = []
    except OSError as e:
        raise UsageError("state_dir_invalid", f"cannot list {base}: {e.strerror}") from e
    if len(found) == 1:
        return found[0]
    if len(found) > 1 and tarball is not None and Path(tarball).is_file():
        name = app_of(tarball)
        if base / name in found:
            return base / name
    what = "no state dir" if not found else f"{len(found)} state dirs"
    names = "" if not found else " (" + ", ".join(p.name for p in found) + ")"
    raise UsageError(
        "state_dir_unknown",
        f"which app? {what} in {base}{names}: give --state-dir or set {ENV}",
        base=str(base),
        found=[str(p) for p in found],
    )
