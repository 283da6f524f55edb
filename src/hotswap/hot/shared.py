"""One analysis for every worker of a generation.

The static part of a prepare (the two release trees, their diff and the source analysis of
:func:`~hotswap.hot.check.analyze`) depends only on the two releases and on which of their
modules the process imported. Every worker of a generation imported the same ones unless a
request imported a module lazily in one of them. So in a two-phase hot upgrade the first
worker writes its analysis to a file the supervisor names, and the others read it instead of
making it again: on a machine with fewer cores than workers, that is most of their prepare.

A worker uses the file only where it is the analysis it would have made itself: the same two
release directories and release ids, and the same answer to every "is this module imported?"
question the analysis asked (``asked``). Anything else (no file, a torn or foreign one, a module
one worker imported and the other did not) and the worker makes its own; the file never
decides anything on its own.

The file is a pickle in the supervisor's ``run/`` directory (mode 0700), written by a worker of
the same app as the same user, next to the releases whose code every worker imports: whoever
could write it could already change that code, so reading it adds nothing an attacker could
use. It is read only if it is a regular file of this user that no other user can write, so a
``run/`` left open by mistake does not let another user hand a worker a pickle. It is written
whole to a temporary name and renamed, and removed by the supervisor when the upgrade ends.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hotswap.hot.check import Analysis

FORMAT = 1


@dataclass(frozen=True)
class Sharing:
    """How a worker takes part: the first one (``write``) writes its analysis to ``path`` and
    calls ``on_analyzed`` once it is there (or could not be written), the others read it
    (``on_analyzed`` is the writer's only). A reader given ``wait`` is asked to prepare while
    the writer still analyses: it takes what needs no analysis, then calls ``wait()``, which
    returns once the file is there (True) or the upgrade is withdrawn (False).

    Given ``turn`` too, the reader takes that part only once ``turn()`` returns True: a core is
    free for it (the readers take turns on the cores the writer leaves idle, rather than all
    competing with the writer for them); it then walks the heap as well, and calls
    ``turn_done()``. ``turn()`` returns False if ``wait()`` would return now: the file is there
    or the upgrade withdrawn, and the reader takes its part after."""

    path: Path
    write: bool
    on_analyzed: Callable[[], None] | None = None
    wait: Callable[[], bool] | None = None
    turn: Callable[[], bool] | None = None
    turn_done: Callable[[], None] | None = None


@dataclass(frozen=True)
class SharedAnalysis:
    format: int
    old_root: str
    new_root: str
    old_id: str
    new_id: str
    analysis: Analysis
    asked: dict[str, bool]  # module name -> was it imported, for every question analyze asked


class Recorder:
    """A ``loaded`` predicate for :func:`~hotswap.hot.check.analyze` that remembers its answers."""

    def __init__(self, loaded: Callable[[str], bool]) -> None:
        self.loaded = loaded
        self.asked: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        answer = self.asked[name] = self.loaded(name)
        return answer


def write(path: Path, analysis: Analysis, asked: dict[str, bool]) -> bool:
    """Write ``analysis`` for the other workers; False (and nothing left behind) if it cannot
    be (a plan holding something pickle cannot write, a full disk): they make their own."""
    blob = SharedAnalysis(
        FORMAT,
        str(analysis.old.root),
        str(analysis.new.root),
        analysis.old.release_id,
        analysis.new.release_id,
        analysis,
        dict(asked),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(blob, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def read(path: Path, old_root: Path, new_root: Path) -> SharedAnalysis | None:
    """The analysis another worker wrote for this pair of releases, or None. Only a regular
    file of this user that nobody else can write is read (no link followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        try:
            blob = pickle.load(f)
        except Exception:  # torn, or written by another version of hotswap
            return None
    if (
        not isinstance(blob, SharedAnalysis)
        or blob.format != FORMAT
        or not isinstance(blob.analysis, Analysis)
        or blob.old_root != str(old_root.resolve())
        or blob.new_root != str(new_root.resolve())
        or blob.analysis.old.release_id != blob.old_id
        or blob.analysis.new.release_id != blob.new_id
    ):
        return None
    return blob


def agrees(blob: SharedAnalysis, loaded: Callable[[str], bool]) -> bool:
    """Whether this process would answer every question the analysis asked the same way."""
    return all(loaded(name) is answer for name, answer in blob.asked.items())
