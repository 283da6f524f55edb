"""The environment file of a state dir: per-deploy settings and secrets that stay out of the
tarball, read at every spawn of a generation.

``<state dir>/env``, mode 0600, written by ``hotswap env set|unset`` (atomically: a crash
leaves the old file or the new one), one variable a line::

    # hotswap environment file: NAME=VALUE, one a line; the value is the rest of the line
    DATABASE_URL=postgres://app:secret@db/app
    SENTRY_DSN=https://key@sentry.example/1

The value is taken verbatim (no quotes, no escapes, no expansion); a value cannot hold a
newline or a NUL. A generation's environment is, lowest first: the release's
``[tool.hotswap.env]`` defaults, the supervisor's own environment, this file; so
``hotswap env set DATABASE_URL=...`` takes effect at the next swap, without restarting the
supervisor, and never in a generation that is already running.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from hotswap.errors import ResourceError, UsageError
from hotswap.fsutil import fsync_dir

FILENAME = "env"
MAX_BYTES = 1 << 20
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_PREFIXES = ("HOTSWAP", "LISTEN_", "NOTIFY_SOCKET")
HEADER = "# hotswap environment file: NAME=VALUE, one a line; the value is the rest of the line\n"


def path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / FILENAME


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.startswith(RESERVED_PREFIXES):
        raise UsageError(
            "bad_config",
            f"{name!r} is not a variable name hotswap can set (letters, digits and _; names "
            f"starting with {', '.join(RESERVED_PREFIXES)} are hotswap's own)",
            key=name,
        )
    return name


def check_value(name: str, value: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise UsageError("bad_config", f"the value of {name} holds a newline or a NUL", key=name)
    return value


def parse(text: str) -> dict[str, str]:
    """Parse the file's text; a malformed line is ``bad_config`` naming its number."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not _NAME.match(name) or name.startswith(RESERVED_PREFIXES):
            raise UsageError(
                "bad_config", f"environment file line {number} is not NAME=VALUE", line=number
            )
        out[name] = value
    return out


def read(state_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of the state dir's environment file ({} when there is none). A file
    another user owns, or that others can read or write, is refused: it may hold secrets and
    it decides what the app runs with."""
    file = path(state_dir)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ResourceError("io_error", f"cannot open {file}: {e}", path=str(file)) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UsageError("bad_config", f"{file} is not a regular file", path=str(file))
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise UsageError(
                "bad_config",
                f"{file} must belong to this user with mode 0600 (it has "
                f"{stat.filemode(info.st_mode)}, uid {info.st_uid})",
                path=str(file),
            )
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UsageError("bad_config", f"{file} is over {MAX_BYTES} bytes", path=str(file))
    try:
        return parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError("bad_config", f"{file} is not UTF-8", path=str(file)) from None


def write(state_dir: str | os.PathLike[str], variables: dict[str, str]) -> None:
    """Replace the file with ``variables`` (atomically, mode 0600 from its creation)."""
    file = path(state_dir)
    tmp = file.with_name(f".{FILENAME}.{os.getpid()}.tmp")
    text = HEADER + "".join(
        f"{check_name(k)}={check_value(k, v)}\n" for k, v in sorted(variables.items())
    )
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
        fsync_dir(file.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ResourceError("io_error", f"cannot write {file}: {e}", path=str(file)) from None


def set_variables(state_dir: str | os.PathLike[str], assignments: dict[str, str]) -> None:
    variables = read(state_dir)
    for name, value in assignments.items():
        variables[check_name(name)] = check_value(name, value)
    write(state_dir, variables)


def unset_variables(state_dir: str | os.PathLike[str], names: list[str]) -> list[str]:
    """Remove ``names``; returns those that were set."""
    variables = read(state_dir)
    removed = [n for n in names if variables.pop(n, None) is not None]
    if removed:
        write(state_dir, variables)
    return removed


def generation_environment(
    defaults: dict[str, str], inherited: dict[str, str], state_dir: str | os.PathLike[str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """A generation's environment before hotswap adds its own variables: the release's
    defaults, then the supervisor's environment, then the state dir's file. With it, what
    ``status`` shows of it: the release's defaults that were not overridden, with their values
    (they are in the tarball anyway), and the names only of the environment file's variables
    (secrets) and of the release defaults the supervisor's environment overrode."""
    secret = read(state_dir)
    env = {**defaults, **inherited, **secret}
    shown = {
        "release": {k: v for k, v in sorted(defaults.items()) if env.get(k) == v},
        "env_file": sorted(secret),
        "overridden": sorted(k for k in defaults if env.get(k) != defaults[k]),
    }
    return env, shown
