"""Small file-system helpers shared by the release store, the handoff store and the client.

- :func:`resolve_state_dir`: where an app's state dir is.
- :func:`write_json_atomic`: replace a JSON file so a crash leaves the old or the new one.
- :func:`fsync_dir`: make a rename or unlink in a directory durable.
- :func:`lock_state_dir`: one supervisor per state dir.
- :func:`check_private`: a directory or file hotswap trusts is the user's own and only the
  user's to write.
- :func:`remove_tree`, :func:`make_read_only`: walk a tree without recursion and without
  building long paths, so a tree of any depth (one a hostile archive or a crash left) is
  handled: ``shutil.rmtree`` and ``os.walk`` recurse (``RecursionError`` at about 1,000
  levels on 3.11) and paths past ``PATH_MAX`` fail with ``ENAMETOOLONG``.
- :func:`unix_address`: a Unix socket path AF_UNIX can take, however deep the state dir is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hotswap.errors import ResourceError, UsageError

LOCK_NAME = "lock"
UNIX_PATH_MAX = 108  # AF_UNIX's sun_path, with its NUL


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


@contextlib.contextmanager
def unix_address(path: str | os.PathLike[str]) -> Iterator[str]:
    """``path`` as AF_UNIX takes it, for the ``bind`` or ``connect`` made inside the block:
    the path itself when it fits in ``sun_path``, else the same socket reached through an
    ``O_PATH`` descriptor of its directory (``/proc/self/fd/N/<name>``), closed on exit. A
    state dir deep in the file system would otherwise make its ``control.sock`` unusable."""
    text = os.fspath(path)
    if len(os.fsencode(text)) < UNIX_PATH_MAX:
        yield text
        return
    head, name = os.path.split(text)
    fd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and everything below it (read-only directories included; a symlink is
    removed, never followed). Iterative, one level at a time relative to a directory fd, so
    it holds two descriptors whatever the depth. A missing ``path`` is not an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    fd = os.open(path, _DIR_FLAGS)
    names: list[str] = []  # the path from ``path`` down to ``fd``
    try:
        while True:
            os.fchmod(fd, 0o700)
            child = _first_subdir_unlinking_the_rest(fd)
            if child is not None:
                sub = os.open(child, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = sub
                names.append(child)
                continue
            if not names:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def _first_subdir_unlinking_the_rest(fd: int) -> str | None:
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=fd)
    return None


def make_read_only(path: str | os.PathLike[str]) -> None:
    """Files below ``path`` lose their write bits (0444, or 0555 when executable), directories
    become 0555, deepest first. Iterative and fd-relative, like :func:`remove_tree`, holding
    one descriptor per level (the trees unpack makes are at most 64 deep); symlinks are left
    alone (an unpacked release has none)."""
    fd = os.open(path, _DIR_FLAGS)
    # a stack of (directory fd, its subdirectories still to visit); a directory is made
    # read-only once all of its subdirectories are
    stack: list[tuple[int, list[str]]] = []
    try:
        while True:
            subdirs: list[str] = []
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        mode = entry.stat(follow_symlinks=False).st_mode
                        os.chmod(entry.name, stat.S_IMODE(mode) & 0o555, dir_fd=fd)
            stack.append((fd, subdirs))
            fd = -1
            while stack and not stack[-1][1]:
                done, _ = stack.pop()
                os.fchmod(done, 0o555)
                os.close(done)
            if not stack:
                return
            top_fd, pending = stack[-1]
            fd = os.open(pending.pop(), _DIR_FLAGS, dir_fd=top_fd)
    finally:
        if fd >= 0:
            os.close(fd)
        for open_fd, _ in stack:
            os.close(open_fd)


class StateDirLock:
    """An exclusive ``flock`` on ``<state>/lock``, which holds the holder's pid. Held for the
    life of the supervisor (close-on-exec: a generation never inherits it, so an orphan cannot
    keep a new supervisor out); released by :meth:`release` or when the process ends."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.release()


def lock_state_dir(state_dir: str | os.PathLike[str]) -> StateDirLock:
    """Take the state dir's lock, or raise ``state_dir_locked`` naming the holder's pid."""
    path = Path(state_dir) / LOCK_NAME
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise ResourceError("io_error", f"cannot open {path}: {e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise ResourceError(
            "state_dir_locked",
            f"{state_dir} is in use by another supervisor (pid {holder or 'unknown'})",
            pid=int(holder) if holder.isascii() and holder.isdigit() else None,
            path=str(path),
        ) from None
    except OSError as e:
        os.close(fd)
        raise ResourceError("io_error", f"cannot lock {path}: {e}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return StateDirLock(fd, path)


def check_private(
    path: str | os.PathLike[str], *, is_dir: bool, st: os.stat_result | None = None
) -> os.stat_result:
    """Refuse (``state_dir_invalid``) a path hotswap trusts that is a symlink, of the wrong
    kind, another user's, or writable by group or others: anyone who can write it can plant
    code that the owner then runs. Checks ``st`` (an ``fstat``) when given, else ``lstat``."""
    st = st if st is not None else os.lstat(path)
    kind = "directory" if is_dir else "regular file"
    if (stat.S_ISDIR(st.st_mode) if is_dir else stat.S_ISREG(st.st_mode)) is False:
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else f"not a {kind}"
        raise UsageError("state_dir_invalid", f"{path} is {what}", path=str(path))
    if st.st_uid != os.getuid():
        raise UsageError(
            "state_dir_invalid",
            f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()})",
            path=str(path),
        )
    if st.st_mode & 0o022:
        raise UsageError(
            "state_dir_invalid",
            f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})",
            path=str(path),
        )
    return st
