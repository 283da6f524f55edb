"""The public API, in Python's idiom (BeamDeploy's functions, exceptions instead of tuples).

Every function that talks to the supervisor works from the supervisor's own process (another
thread), from a generation, and from any process of the same user given the state dir.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from hotswap import contract
from hotswap.control import client
from hotswap.release.store import absolute_ref

StateDir = str | os.PathLike[str] | None
_TRUE = ("1", "true", "yes", "on")


def enabled() -> bool:
    """True when supervisor mode is on (``HOTSWAP=1/true/yes/on``)."""
    return os.environ.get("HOTSWAP", "").strip().lower() in _TRUE


def in_generation() -> bool:
    """True inside a generation started by a hotswap supervisor."""
    return os.environ.get("HOTSWAP_CHILD") == "1"


def start(
    start_callable: Callable[[], Any],
    *,
    app: str | None = None,
    bind: Sequence[str] | None = None,
    release: str | None = None,
    services: Sequence[tuple[str, str]] = (),
    state_dir: StateDir = None,
) -> Any:
    """BeamDeploy's ``start_link``: with ``HOTSWAP`` enabled (and not already inside a
    generation) become the supervisor and serve the current release (or ``release``) until
    stopped, returning its exit status; otherwise just call ``start_callable()``.

    ``services`` are ``(name, "module:attr")`` pairs started under the supervisor besides
    those the release declares (see :mod:`hotswap.child.service`).

    ``bind`` defaults to ``$HOTSWAP_BIND`` (comma-separated) or ``127.0.0.1:8000``; the state
    dir to ``$HOTSWAP_STATE_DIR`` or ``~/.local/state/hotswap/<app>``.
    """
    if not enabled() or in_generation():
        return start_callable()
    from hotswap.release.config import ServiceSpec
    from hotswap.release.store import resolve_state_dir
    from hotswap.supervisor.core import Supervisor
    from hotswap.supervisor.listeners import parse_bind

    binds = list(bind or os.environ.get("HOTSWAP_BIND", "127.0.0.1:8000").split(","))
    supervisor = Supervisor(
        resolve_state_dir(state_dir, app or "default"),
        [parse_bind(b.strip()) for b in binds if b.strip()],
        release=release or os.environ.get("HOTSWAP_RELEASE") or None,
        services=[ServiceSpec(name, entry) for name, entry in services],
    )
    return asyncio.run(supervisor.run())


def upgrade(
    release: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    state_dir: StateDir = None,
    on_phase: Callable[[dict[str, Any]], None] | None = None,
    timeout: float | None = None,
    allow_other_app: bool = False,
) -> dict[str, Any]:
    """Blue-green swap to ``release`` (a tarball path, a release id already in the store, or
    an ``s3://`` URL, see :func:`local_release`). Blocks until done; returns the swap record
    (timings per phase) or raises the error with its code (``upgrade_in_progress``,
    ``boot_failed``, ``health_failed``, ...). A release of another app than the one that
    serves is refused (``different_app``) unless ``allow_other_app``."""
    ref, sha256 = local_release(release, sha256, state_dir=state_dir)
    extra = {"allow_other_app": True} if allow_other_app else {}
    result: dict[str, Any] = client.call(
        contract.OP_UPGRADE,
        state_dir=state_dir,
        timeout=timeout,
        on_event=on_phase,
        release=ref,
        sha256=sha256,
        **extra,
    )
    return result


def local_release(
    release: str | os.PathLike[str], sha256: str | None, *, state_dir: StateDir = None
) -> tuple[str, str | None]:
    """What the supervisor is handed for ``release``: a tarball path made absolute, an id as
    it is, and an ``s3://`` URL (a tarball, a prefix or its ``current.json``) downloaded into
    the state dir and verified first (:func:`hotswap.fleet.fetch.fetch`), with its sha256."""
    text = os.fspath(release)
    if text.startswith("s3://"):
        from hotswap.fleet.fetch import fetch
        from hotswap.release.store import resolve_state_dir

        fetched = fetch(text, resolve_state_dir(state_dir), sha256=sha256)
        return str(fetched.path), fetched.sha256
    return absolute_ref(text), sha256


def rollback(
    *, state_dir: StateDir = None, on_phase: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Blue-green swap back to the previous release."""
    result: dict[str, Any] = client.call(
        contract.OP_ROLLBACK, state_dir=state_dir, timeout=None, on_event=on_phase
    )
    return result


def hot_upgrade_generation(
    release: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    state_dir: StateDir = None,
    suspend_timeout: float = 3.0,
    allow_dependency_changes: bool = False,
    no_quiesce: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Hot-upgrade the supervisor's active generation in place to ``release`` (a tarball path
    or a release id in the store), all or nothing; on success the release becomes current.
    Returns the record (``generation``, ``pid``, ``total_ms``, ``stats``) or raises the error
    with its code (``hot_upgrade_refused``, ``hot_upgrade_failed``, ``not_running``, ...).
    A generation that registered no quiescence (a ``callable`` server without an
    ``UpgradeGate``) is refused (``no_quiescence``) unless ``no_quiesce``.
    In-process, without a supervisor, use :func:`hotswap.hot_upgrade`."""
    ref, sha256 = local_release(release, sha256, state_dir=state_dir)
    result: dict[str, Any] = client.call(
        contract.OP_HOT_UPGRADE,
        state_dir=state_dir,
        timeout=timeout,
        release=ref,
        sha256=sha256,
        suspend_timeout=suspend_timeout,
        allow_dependency_changes=allow_dependency_changes,
        no_quiesce=no_quiesce,
    )
    return result


def status(*, state_dir: StateDir = None) -> dict[str, Any]:
    result: dict[str, Any] = client.call(contract.OP_STATUS, state_dir=state_dir, timeout=10.0)
    return result


def upgrading(*, state_dir: StateDir = None) -> bool:
    return bool(status(state_dir=state_dir)["upgrading"])


def active_generation(*, state_dir: StateDir = None) -> dict[str, Any] | None:
    active: dict[str, Any] | None = status(state_dir=state_dir)["active"]
    return active


def put_handoff(key: str, value: Any, *, state_dir: StateDir = None) -> None:
    """Store ``value`` (JSON-compatible or bytes) under ``key``; it survives cutovers."""
    client.call(contract.OP_HANDOFF_PUT, state_dir=state_dir, key=key, value=value)


def get_handoff(key: str, *, state_dir: StateDir = None) -> Any:
    return client.call(contract.OP_HANDOFF_GET, state_dir=state_dir, key=key)


def get_all_handoff(*, state_dir: StateDir = None) -> dict[str, Any]:
    result: dict[str, Any] = client.call(contract.OP_HANDOFF_GET_ALL, state_dir=state_dir)
    return result


def delete_handoff(key: str, *, state_dir: StateDir = None) -> bool:
    return bool(client.call(contract.OP_HANDOFF_DELETE, state_dir=state_dir, key=key))


def call_service(
    name: str, method: str, *args: Any, state_dir: StateDir = None, **kwargs: Any
) -> Any:
    """Call ``method(*args, **kwargs)`` on the service ``name`` running under the supervisor
    (arguments and result JSON-compatible or bytes). Raises the service's own
    :class:`hotswap.HotswapError` (with its code), ``service_failed`` for any other failure,
    ``service_not_found`` for an unknown name."""
    return client.call(
        contract.OP_SERVICE_CALL,
        state_dir=state_dir,
        timeout=None,
        name=name,
        method=method,
        args=list(args),
        kwargs=kwargs,
    )


def incoming_peer() -> dict[str, Any] | None:
    """In the old generation, once a successor is named: its info, else None."""
    from hotswap.child.runtime import current

    runtime = current()
    return runtime.incoming if runtime is not None else None


def outgoing_peer() -> dict[str, Any] | None:
    """In a new generation that replaces another: the outgoing one's info, else None."""
    from hotswap.child.runtime import current

    runtime = current()
    return runtime.outgoing if runtime is not None else None


def draining() -> bool:
    """Inside a generation: True once it has been told to drain (a successor is serving, or
    the supervisor stops). Long-lived responses (streams, long polls) should end soon after;
    the uvicorn adapter ends ``text/event-stream`` responses by itself."""
    from hotswap.child.runtime import current

    runtime = current()
    return runtime.draining if runtime is not None else False


_NEVER = threading.Event()  # outside a generation nothing ever drains


def draining_event() -> threading.Event:
    """Inside a generation: a thread-safe event set when it drains (WSGI views, threads,
    ``callable`` servers: ``hotswap.draining_event().wait()``). Outside one: an event that
    is never set."""
    from hotswap.child.runtime import current

    runtime = current()
    return runtime.drain if runtime is not None else _NEVER


async def wait_draining() -> None:
    """Return once this generation drains, without polling: a WebSocket or stream handler
    awaits it to say its own goodbye before the adapter closes what is left (uvicorn: close
    code 1012 after ``ws_drain_grace``). Outside a generation it never returns."""
    from hotswap.child.runtime import current

    runtime = current()
    if runtime is None:
        await asyncio.Event().wait()
        return
    await runtime.wait_draining()


def release_id() -> str | None:
    """Inside a generation: the release it runs (it changes on a hot upgrade)."""
    from hotswap.child.runtime import current

    runtime = current()
    return runtime.release_id if runtime is not None else None


def generation() -> int | None:
    """This generation's number, inside a generation."""
    from hotswap.child.runtime import current

    runtime = current()
    return runtime.generation if runtime is not None else None


def worker_index() -> int | None:
    """Inside a generation: this worker's index, 0 to ``workers - 1`` (the same for a worker
    restarted in its place); outside a generation (a service, a script, a test): None. E.g.
    to run a periodic job in one worker only: ``if hotswap.worker_index() == 0: ...``."""
    from hotswap.child.runtime import current

    runtime = current()
    return runtime.worker if runtime is not None else None
