"""The release store: the state dir, unpacked releases, and ``state.json``.

Layout of a state dir (mode 0700)::

    <state>/
      releases/<release_id>/    verified, read-only releases (RELEASE.json, RECORD, lib/)
      releases/.staging-*       an unpack in progress; removed on failure, renamed on success
      state.json                current, previous and history; written atomically
      control.sock              the supervisor's control socket (later)

``state.json`` is what survives a crash or reboot (promise 7): the supervisor boots
``current`` on start. It is replaced with write, fsync, rename, fsync of the directory, so a
crash leaves the old or the new version, never half of one.

State dir resolution: :func:`hotswap.fsutil.resolve_state_dir`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotswap.errors import HotswapError, ReleaseError, ResourceError, UsageError
from hotswap.fsutil import check_private, fsync_dir, make_read_only, write_json_atomic
from hotswap.fsutil import remove_tree as remove_tree  # re-exported
from hotswap.fsutil import resolve_state_dir as resolve_state_dir  # re-exported
from hotswap.release import extract, interpreter, verify
from hotswap.release.archive import sha256_file
from hotswap.release.manifest import RELEASE_ID, Manifest, parse_json, release_id_for
from hotswap.release.record import MANIFEST_NAME, RECORD_NAME

STATE_NAME = "state.json"
RELEASES = "releases"
STAGING_PREFIX = ".staging-"
DEFAULT_KEEP = 5
HISTORY_MAX = 50
STATE_MAX_BYTES = 16 * 1024**2
TRUSTED_DIRS = (RELEASES, "runtime", "run")  # below the state dir, checked by ensure()


def is_tarball_ref(ref: str) -> bool:
    """A release is named by a tarball path or by its id in the store; ids have no ``/``."""
    return "/" in ref or ref.endswith(".tar.gz")


def absolute_ref(ref: str | os.PathLike[str]) -> str:
    """A tarball path made absolute (the supervisor's working dir is not the caller's); an id
    as it is."""
    text = os.fspath(ref)
    return str(Path(text).absolute()) if is_tarball_ref(text) else text


@dataclass(frozen=True)
class Release:
    """An unpacked, verified release in the store."""

    id: str
    root: Path
    manifest: Manifest

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.manifest.name,
            "version": self.manifest.version,
            "created": self.manifest.created,
            "path": str(self.root),
        }


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def _self_consistent(release: Release) -> bool:
    """A release found through the index is used only if its RECORD has the sha256 its
    manifest pins and the manifest's id (recomputed from RECORD, app and python) is its
    directory's name: a planted or edited copy under another id is not taken for it."""
    try:
        digest = sha256_file(release.root / RECORD_NAME)
    except OSError:
        return False
    manifest = release.manifest
    return digest == manifest.record["sha256"] and release_id_for(manifest.raw) == release.id


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
        self._remember(result.sha256, release_id)
        return Release(release_id, final, result.manifest)

    # A tarball already unpacked is recognised by its sha256 (``releases/.tarballs.json``),
    # so a swap back to it (a rollback by path, a retry) costs one hash of the file rather
    # than a full scan. The hash is still compared with the expected one first.

    @property
    def _index_path(self) -> Path:
        return self.releases_dir / ".tarballs.json"

    def _read_index(self) -> dict[str, str]:
        """The index, with anything malformed in it ignored (it is only a shortcut), and all
        of it when it is not this user's own, private file."""
        try:
            with open(self._index_path, "rb", opener=_no_follow) as f:
                check_private(self._index_path, is_dir=False, st=os.fstat(f.fileno()))
                data = f.read(STATE_MAX_BYTES)
            index = parse_json(data, ".tarballs.json", "manifest_invalid")
        except FileNotFoundError:
            return {}
        except (OSError, HotswapError) as e:
            self.warn(f"ignoring {self._index_path}: {e}")
            return {}
        if not isinstance(index, dict):
            return {}
        return {k: v for k, v in index.items() if isinstance(v, str) and RELEASE_ID.match(v)}

    def _known(self, tarball: Path, expected_sha256: str | None) -> Release | None:
        index = self._read_index()
        if not index or not tarball.is_file():
            return None
        expected = verify.expected_digest(tarball, expected_sha256)
        if expected not in index:
            return None
        actual = sha256_file(tarball)
        if actual != expected:
            raise verify.checksum_mismatch(tarball, actual, expected)
        release = self.find(index[actual])
        if release is not None and not _self_consistent(release):
            self.warn(f"release {release.id} does not match its RECORD: unpacking again")
            return None
        if release is not None:
            interpreter.check(release.manifest.python, release.manifest.distributions)
        return release

    def _remember(self, sha256: str, release_id: str) -> None:
        index = self._read_index()
        live = {r.id for r in self.releases()}
        index = {k: v for k, v in index.items() if v in live}
        index[sha256] = release_id
        write_json_atomic(self._index_path, index)

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
        if not RELEASE_ID.match(release_id):
            return None
        root = self.releases_dir / release_id
        try:
            check_private(root, is_dir=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not (root / MANIFEST_NAME).is_file():
            return None
        return Release(release_id, root, Manifest.load(root))

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
        out: list[Release] = []
        if self.releases_dir.is_dir():
            for entry in self.releases_dir.iterdir():
                if entry.name.startswith(".") or not RELEASE_ID.match(entry.name):
                    continue
                try:
                    out.append(Release(entry.name, entry, Manifest.load(entry)))
                except ReleaseError as e:
                    self.warn(f"skipping release {entry.name}: {e}")
        out.sort(key=lambda r: (r.manifest.created, r.id), reverse=True)
        return out

    # -- state.json -----------------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        """``current``, ``previous`` (ids or None) and ``history`` (a list of objects). A file
        that is not JSON or not of that shape is moved aside (``state.json.corrupt-<time>``)
        with a warning and read as empty, so that an explicit release can still start; history
        entries that are not objects are dropped."""
        empty: dict[str, Any] = {"current": None, "previous": None, "history": []}
        try:
            with open(self.state_file, "rb", opener=_no_follow) as f:
                check_private(self.state_file, is_dir=False, st=os.fstat(f.fileno()))
                data = f.read(STATE_MAX_BYTES + 1)
        except FileNotFoundError:
            return empty
        except OSError as e:
            raise ResourceError("io_error", f"{self.state_file} is unreadable: {e}") from None
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
            self.warn(f"{self.state_file}: 'history' is not a list; ignored")
            history = []
        state["history"] = [entry for entry in history if isinstance(entry, dict)]
        return dict(state)

    def _move_aside(self, why: str) -> None:
        aside = self.state_file.with_name(
            f"{STATE_NAME}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        )
        try:
            os.replace(self.state_file, aside)
        except OSError as e:
            self.warn(f"{self.state_file} is corrupt ({why}) and could not be moved aside: {e}")
            return
        self.warn(
            f"{self.state_file} is corrupt ({why}): moved aside to {aside.name}; "
            "no release is current"
        )

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
        state = self.read_state()
        if state["current"] != release_id:
            state["previous"] = state["current"]
            state["current"] = release_id
        entry = {"release": release_id, "how": how, "at": time.time(), **info}
        state["history"] = [entry, *state["history"]][:HISTORY_MAX]
        write_json_atomic(self.state_file, state)
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
