"""Hot upgrades: replace the code of a running process in place, all or nothing.

The invariants (each has a test named after it in ``tests/hot``):

1. **Refuse before touching.** What cannot be applied in place — another interpreter, a native
   extension, changed dependencies, a different entry point/server/listeners, a class whose
   layout changes (bases, metaclass, class decorators, ``__slots__``), a removed enum member —
   is refused by :func:`check` with reasons ("use a blue-green upgrade") before anything changes.
2. **Patch, don't replace.** Functions and classes are updated in place, so every reference
   (``from`` imports, routes, callbacks, decorator wrappers, instances) sees the new code.
   Statements whose text did not change are not re-run, so module state survives.
3. **Nothing heavy inside the window.** Diffing, compiling and the one heap walk happen while
   the process still serves; the window does only the writes, and its length grows with the
   amount of changed code, not with the size of the heap.
4. **All or nothing** (promise 9). Every write is journaled; any exception in the commit or in a
   ``__code_change__`` replays the journal and the process keeps serving the old code.
5. **Quiescent commit.** On an event loop the commit is one loop callback; with threads an
   :class:`UpgradeGate` drains in-flight requests first. No quiescence within ``suspend_timeout``
   → abort, nothing changed. Frames already running finish on the old code (as in Erlang).
"""

from hotswap.hot.check import check
from hotswap.hot.engine import (
    HotUpgrade,
    find_current_release,
    hot_upgrade,
    hot_upgrade_async,
)
from hotswap.hot.quiesce import QuiesceTimeout, UpgradeGate, set_quiescence
from hotswap.hot.stats import HotUpgradeStats
from hotswap.hot.verdict import Reason, Verdict

__all__ = [
    "HotUpgrade",
    "HotUpgradeStats",
    "QuiesceTimeout",
    "Reason",
    "UpgradeGate",
    "Verdict",
    "check",
    "find_current_release",
    "hot_upgrade",
    "hot_upgrade_async",
    "set_quiescence",
]
