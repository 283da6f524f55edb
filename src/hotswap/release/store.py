"""The release store: one app's state dir, the releases unpacked into it, which one is current.

Layout of a state dir (mode 0700)::

    <state>/
      releases/<release_id>/    verified, read-only releases (RELEASE.json, RECORD, lib/)
      releases/.staging-*       an unpack in progress; removed on failure, renamed on success
      releases/.tarballs.json   sha256 of a tarball unpacked before -> its id (release.tarballs)
      state.json                current, previous and history (release.statefile)
      lock                      held by the supervisor of this state dir (fsutil.lock_state_dir)
      control.sock, handoff.json, run/, runtime/   the supervisor's (docs/supervisor.md)

This module keeps the store's rules: the state dir and what below it is trusted, unpack and
its staging, lookup, the current release (falling back to the previous one) and retention. An
unpacked release is :class:`~hotswap.release.unpacked.Release`; the verification itself is
:mod:`hotswap.release.verify` and :mod:`hotswap.release.extract`.

State dir resolution: :func:`hotswap.fsutil.resolve_state_dir`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hotswap.errors import ReleaseError, ResourceError, UsageError
from hotswap.fsutil import check_private, fsync_dir, make_read_only
from hotswap.fsutil import remove_tree as remove_tree  # re-exported
from hotswap.fsutil import resolve_state_dir as resolve_state_dir  # re-exported
from hotswap.fsutil import write_json_atomic as write_json_atomic  # re-exported
from hotswap.release import extract, interpreter, unpacked, verify
from hotswap.release.archive import sha256_file
from hotswap.release.record import MANIFEST_NAME
from hotswap.release.statefile import STATE_NAME, StateFile
from hotswap.release.tarballs import INDEX_NAME, TarballIndex
from hotswap.release.unpacked import Release as Release  # re-exported
from hotswap.release.unpacked import absolute_ref as absolute_ref  # re-exported
from hotswap.release.unpacked import is_tarball_ref as is_tarball_ref  # re-exported

RELEASES = "releases"
STAGING_PREFIX = ".staging-"
DEFAULT_KEEP = 5
TRUSTED_DIRS = (RELEASES, "runtime", "run")  # below the state dir, checked by ensure()


def _warn(message: str) -> None:
    print(f"hotswap: warning: {message}", file=sys.stderr, flush=True)


class ReleaseStore:
    """Unpacked releases and the current/previous pointers of one app's state dir."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        limits: verify.Limits = verify.DEFAULT_LIMITS,
        keep: int = DEFAULT_KEEP,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.limits = limits
        self.keep = keep
        self.warn = warn or _warn
        # through _say, so that a warn replaced later (a test's) is the one they call
        self._state = StateFile(self.state_file, self._say)
        self._index = TarballIndex(self.releases_dir / INDEX_NAME, self._say)

    def _say(self, message: str) -> None:
        self.warn(message)

    @property
    def releases_dir(self) -> Path:
        return self.state_dir / RELEASES

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_NAME

    def ensure(self) -> None:
        """Create the state dir (0700) and releases/ if missing; refuse an unusable one (not
        a directory, another user's, or writable by others) before creating anything in it,
        and the same of releases/, runtime/ and run/ (a symlink among them too)."""
        old = os.umask(0o077)
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(self.state_dir, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise UsageError(
                    "state_dir_invalid", f"{self.state_dir} exists and is not a directory"
                )
            if st.st_uid != os.getuid():
                raise UsageError(
                    "state_dir_invalid",
                    f"{self.state_dir} belongs to uid {st.st_uid}, not to you",
                )
            if st.st_mode & 0o022:
                raise UsageError(
                    "state_dir_invalid",
                    f"{self.state_dir} is writable by other users "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); use 0700",
                )
            self.releases_dir.mkdir(mode=0o700, exist_ok=True)
            for name in TRUSTED_DIRS:
                with contextlib.suppress(FileNotFoundError):
                    check_private(self.state_dir / name, is_dir=True)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(
                "state_dir_invalid", f"{self.state_dir} exists and is not a directory"
            ) from None
        except OSError as e:
            raise ResourceError("io_error", f"cannot create {self.state_dir}: {e}") from None
        finally:
            os.umask(old)

    # -- unpack ---------------------------------------------------------------------------

    def inspect(
        self, tarball: str | os.PathLike[str], *, expected_sha256: str | None = None
    ) -> verify.Scan:
        """Every check of :meth:`unpack`, hashing every file, writing nothing."""
        path = Path(tarball)
        result = verify.scan(path, expected_sha256=expected_sha256, limits=self.limits)
        result.checks.append("checksum, members, record, manifest")
        verify.check_interpreter(result)
        result.checks.append("interpreter")
        extract.extract(path, result, None)
        result.checks.append("file hashes")
        result.payload = None  # the inflated stream is not needed any more
        return result

    def unpack(
        self,
        tarball: str | os.PathLike[str],
        *,
        expected_sha256: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Release:
        """Verify ``tarball`` and unpack it into ``releases/<id>/``. Idempotent: a release
        already in the store is returned as it is. On any refusal nothing is left behind."""
        path = Path(tarball)
        say = progress or (lambda _msg: None)
        known = self._known(path, expected_sha256)
        if known is not None:
            say(f"release {known.id} is already unpacked (same tarball sha256)")
            return known
        result = verify.scan(path, expected_sha256=expected_sha256, limits=self.limits)
        say(f"verified checksum and {len(result.members)} members")
        verify.check_interpreter(result)
        release_id = result.manifest.release_id
        existing = self.find(release_id)
        if existing is not None:
            say(f"release {release_id} is already unpacked")
            return existing
        self.ensure()
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.releases_dir))
        try:
            extract.extract(path, result, staging)
            say(f"unpacked and re-hashed {len(result.record)} files ({result.bytes} bytes)")
            make_read_only(staging)
            final = self.releases_dir / release_id
            try:
                os.rename(staging, final)
            except OSError:
                if (final / MANIFEST_NAME).exists():  # a concurrent unpack of the same id won
                    remove_tree(staging)
                    return self.get(release_id)
                raise
        except OSError as e:
            remove_tree(staging)
            raise ResourceError("io_error", f"unpacking into {staging} failed: {e}") from None
        except BaseException:
            remove_tree(staging)
            raise
        fsync_dir(self.releases_dir)
        self._index.remember(result.sha256, release_id, {r.id for r in self.releases()})
        return Release(release_id, final, result.manifest)

    def _known(self, tarball: Path, expected_sha256: str | None) -> Release | None:
        index = self._index.read()
        if not index or not tarball.is_file():
            return None
        expected = verify.expected_digest(tarball, expected_sha256)
        if expected not in index:
            return None
        actual = sha256_file(tarball)
        if actual != expected:
            raise verify.checksum_mismatch(tarball, actual, expected)
        release = self.find(index[actual])
        if release is not None and not release.self_consistent():
            self.warn(f"release {release.id} does not match its RECORD: unpacking again")
            return None
        if release is not None:
            interpreter.check(release.manifest.python, release.manifest.distributions)
        return release

    def clean_staging(self) -> int:
        """Remove staging dirs left by a crash mid-unpack; returns how many. Never raises for
        one it cannot remove (whatever tree is in it): it warns and goes on, so a start is
        never stopped by a leftover."""
        count = 0
        try:
            entries = [
                e for e in os.scandir(self.releases_dir) if e.name.startswith(STAGING_PREFIX)
            ]
        except OSError:
            return 0
        for entry in entries:
            try:
                remove_tree(entry.path)
                count += 1
            except OSError as e:
                self.warn(f"could not remove the leftover {entry.path}: {e}")
        return count

    # -- lookup ---------------------------------------------------------------------------

    def find(self, release_id: str) -> Release | None:
        """The release of that id in the store, or None. Its directory must be a real one of
        this user's (never a symlink: it would run code from outside the state dir)."""
        return unpacked.find(self.releases_dir, release_id)

    def get(self, release_id: str) -> Release:
        release = self.find(release_id)
        if release is None:
            raise UsageError(
                "release_not_found",
                f"release {release_id!r} is not in {self.releases_dir}",
                release=release_id,
            )
        return release

    def releases(self) -> list[Release]:
        """Every unpacked release, newest first (by build time, then id)."""
        return unpacked.listing(self.releases_dir, self._say)

    # -- state.json -----------------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        """``state.json``: :meth:`~hotswap.release.statefile.StateFile.read`."""
        return self._state.read()

    def current(self) -> Release | None:
        """The current release (None when nothing is deployed). When it is missing from the
        store or unreadable, the previous one, with a warning; ``release_not_found`` when
        neither is there."""
        state = self.read_state()
        current, previous = state["current"], state["previous"]
        if not current:
            return None
        for release_id in (current, previous):
            if not release_id:
                continue
            try:
                release = self.find(release_id)
            except ReleaseError as e:
                self.warn(f"release {release_id} is unusable: {e}")
                continue
            if release is None:
                self.warn(f"release {release_id} is not in {self.releases_dir}")
                continue
            if release_id != current:
                self.warn(
                    f"the current release is gone; falling back to the previous one, {previous}"
                )
            return release
        raise UsageError(
            "release_not_found",
            f"the current release {current!r} is not in {self.releases_dir}"
            + (f", nor the previous one {previous!r}" if previous else ""),
            release=current,
        )

    def set_current(
        self,
        release_id: str,
        *,
        how: str,
        protect: frozenset[str] = frozenset(),
        **info: Any,
    ) -> dict[str, Any]:
        """Record ``release_id`` as current (after a successful deploy); the old current
        becomes previous. ``how`` is ``blue-green``, ``hot``, ``rollback`` or ``initial``."""
        self.get(release_id)
        self.ensure()
        state = self._state.record(release_id, how, info)
        self.prune(protect=protect)
        return state

    def prune(self, *, protect: frozenset[str] = frozenset()) -> list[str]:
        """Keep the newest ``keep`` releases; never remove the current or previous one."""
        state = self.read_state()
        protected = {state["current"], state["previous"], *protect}
        removed = []
        for release in self.releases()[self.keep :]:
            if release.id in protected:
                continue
            remove_tree(release.root)
            removed.append(release.id)
        return removed

    @contextlib.contextmanager
    def open_staging(self) -> Iterator[Path]:
        """A scratch dir inside the state dir, removed on exit."""
        self.ensure()
        path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.releases_dir))
        try:
            yield path
        finally:
            remove_tree(path)
