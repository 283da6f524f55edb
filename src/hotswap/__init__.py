"""hotswap: ship new Python code to a running service without dropping a request.

Two ways to deploy, on one host:

- **blue-green swap**: a long-lived supervisor owns the listening sockets and serves the app
  from a child process; handed a release tarball it verifies and unpacks it, boots a new
  child, gates it on readiness, cuts over, drains and stops the old one;
- **hot upgrade**: the running process loads changed code in place, migrates state with
  ``__code_change__`` hooks, and rolls everything back if any step fails.

The promises (each has a test named after it):

1. One listening socket for life: a swap never closes, re-binds or shuts down a listener.
2. No exposure before readiness: a generation is probed on a private socket first.
3. A failed upgrade changes nothing: the old generation keeps serving; the error has a code.
4. One upgrade at a time: a second request is refused at once, never queued.
5. Bounded drain: the old generation gets ``shutdown_timeout``, then it is killed.
6. No orphans: a child stops accepting as soon as its supervisor dies.
7. What is current survives restarts: the last deployed release boots after a crash.
8. Nothing escapes the state dir: unsafe archives are refused before anything is written.
9. Hot upgrade is all-or-nothing: any failure restores every patched object exactly.
10. Only the owner can steer: the control socket checks the peer's uid; no pickle.
"""

from __future__ import annotations

from typing import Any

from hotswap.errors import (
    ChildError,
    HotswapError,
    ReleaseError,
    ResourceError,
    UsageError,
)

__version__ = "0.1.0"

# The API is imported on first use, so a generation's `import hotswap` stays cheap.
_API = (
    "active_generation",
    "call_service",
    "delete_handoff",
    "draining",
    "draining_event",
    "enabled",
    "generation",
    "get_all_handoff",
    "get_handoff",
    "hot_upgrade_generation",
    "in_generation",
    "incoming_peer",
    "outgoing_peer",
    "put_handoff",
    "release_id",
    "rollback",
    "start",
    "status",
    "upgrade",
    "upgrading",
    "wait_draining",
    "worker_index",
)

__all__ = [
    "ChildError",
    "HotswapError",
    "ReleaseError",
    "ResourceError",
    "Serve",
    "UsageError",
    "__version__",
    "HotUpgradeStats",
    "UpgradeGate",
    "check",
    "hot_upgrade",
    "set_quiescence",
    *_API,
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from hotswap import api

        return getattr(api, name)
    if name in ("hot_upgrade", "check", "UpgradeGate", "set_quiescence", "HotUpgradeStats"):
        from hotswap import hot

        return getattr(hot, name)
    if name == "Serve":
        from hotswap.child.adapters.callable import Serve

        return Serve
    raise AttributeError(f"module 'hotswap' has no attribute {name!r}")
