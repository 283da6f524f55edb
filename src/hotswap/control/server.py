"""The supervisor's control socket: a Unix socket in the state dir.

Promise 10, only the owner can steer: the socket is created under umask 0177 (mode 0600)
inside the 0700 state dir, and every connection's peer uid (``SO_PEERCRED``) must be the
supervisor's own, or it is answered ``permission_denied`` and closed. Nothing that crosses it
can execute code: the protocol is JSON (``control.protocol``), never pickle.

Each connection is served on its own task, so ``status`` and the handoff store answer at once
while an ``upgrade`` on another connection streams its phases (promise 4).

Every op's arguments are checked here, field by field (a missing or mistyped field, or one the
op does not take, is ``bad_request`` naming it), and the supervisor is called with those
validated values only: nothing a client sends reaches a generation unchecked. What the server
calls on the supervisor is :class:`Steerable`, so it depends on an interface, not on the
supervisor's module.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from hotswap import contract
from hotswap.control.connection import Connection, Fault
from hotswap.control.protocol import MAX_LINE, Request
from hotswap.errors import HotswapError, ResourceError, UsageError
from hotswap.fsutil import unix_address
from hotswap.supervisor.handoff import HandoffStore
from hotswap.supervisor.logsink import RING_LINES, LogSink

_UCRED = struct.Struct("3i")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
MAX_SUSPEND_TIMEOUT = 3600.0
MAX_LOGS_WAIT = 60.0  # a `logs` request waits at most this long for a new line

Progress = Callable[[dict[str, Any]], None]


class Steerable(Protocol):
    """What the control server calls on the supervisor."""

    @property
    def handoff(self) -> HandoffStore: ...

    @property
    def logs(self) -> LogSink: ...

    def log(self, message: str) -> None: ...

    def status(self) -> dict[str, Any]: ...

    async def upgrade(
        self,
        ref: str,
        *,
        how: str = ...,
        sha256: str | None = ...,
        progress: Progress | None = ...,
        allow_other_app: bool = ...,
    ) -> dict[str, Any]: ...

    async def rollback(self, *, progress: Progress | None = ...) -> dict[str, Any]: ...

    async def hot_upgrade(
        self, ref: str, *, sha256: str | None = ..., options: dict[str, Any] | None = ...
    ) -> dict[str, Any]: ...

    async def call_service(
        self, name: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Any: ...


def peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return int(uid)


class ControlServer:
    def __init__(self, supervisor: Steerable) -> None:
        self.supervisor = supervisor
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with unix_address(path) as address:  # a deep state dir's path is too long
                sock.bind(address)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        conn = Connection()
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            if uid != os.getuid():
                denied = ResourceError(
                    "permission_denied",
                    f"uid {uid} may not steer this supervisor (it runs as uid {os.getuid()})",
                )
                writer.write(conn.fail(0, denied))
                await writer.drain()
                return
            while not conn.closed:
                for message in conn.feed(await reader.read(65536)):
                    if isinstance(message, Fault):  # answered, with its request's id if known
                        writer.write(conn.answer(message))
                        if message.fatal:
                            conn.close()
                    elif isinstance(message, Request):
                        await self._handle(message, conn, writer)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _handle(
        self, request: Request, conn: Connection, writer: asyncio.StreamWriter
    ) -> None:
        def progress(data: dict[str, Any]) -> None:
            with contextlib.suppress(HotswapError, OSError):
                writer.write(conn.event(contract.EVENT_PHASE, data, ident=request.id))

        try:
            line = conn.respond(request.id, await self._dispatch(request, progress))
        except HotswapError as e:
            line = conn.fail(request.id, e)
        except Exception as e:  # a bug must not take the supervisor down
            self.supervisor.log(f"control request {request.op!r} failed: {e!r}")
            line = conn.fail(
                request.id, ResourceError("supervisor_failed", f"{type(e).__name__}: {e}")
            )
        writer.write(line)
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()

    async def _dispatch(self, request: Request, progress: Progress) -> Any:
        entry = _OPS.get(request.op)
        if entry is None:
            raise UsageError("bad_request", f"unknown control op {request.op!r}")
        fields, run = entry
        unknown = sorted(set(request.args) - fields)
        if unknown:
            raise UsageError(
                "bad_request", f"{request.op} does not take {', '.join(map(repr, unknown))}"
            )
        return await run(self.supervisor, Args(request.op, request.args), progress)


class Args:
    """One request's arguments, read field by field: each read checks the type (and range)
    and names the field when it is wrong."""

    def __init__(self, op: str, raw: dict[str, Any]) -> None:
        self.op = op
        self.raw = raw

    def _bad(self, key: str, want: str) -> UsageError:
        got = type(self.raw.get(key)).__name__ if key in self.raw else "nothing"
        return UsageError("bad_request", f"{self.op}: {key!r} must be {want}, not {got}")

    def string(self, key: str) -> str:
        value = self.raw.get(key)
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a non-empty string")
        return value

    def sha256(self, key: str = "sha256") -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise self._bad(key, "64 hex digits")
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.raw.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "a number")
        if not math.isfinite(value) or not low < value <= high:
            raise UsageError(
                "bad_request", f"{self.op}: {key!r} must be in ({low:g}, {high:g}], not {value}"
            )
        return float(value)

    def integer(self, key: str, default: int | None, *, low: int, high: int) -> int | None:
        value = self.raw.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        if not low <= value <= high:
            raise UsageError(
                "bad_request", f"{self.op}: {key!r} must be in [{low}, {high}], not {value}"
            )
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def array(self, key: str) -> list[Any]:
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key, {})
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return value

    def value(self, key: str) -> Any:
        return self.raw.get(key)


Op = Callable[[Steerable, Args, Progress], Awaitable[Any]]


async def _ping(_sup: Steerable, _args: Args, _progress: Progress) -> Any:
    import hotswap

    return {"pid": os.getpid(), "hotswap": hotswap.__version__}


async def _status(sup: Steerable, _args: Args, _progress: Progress) -> Any:
    return sup.status()


async def _upgrade(sup: Steerable, args: Args, progress: Progress) -> Any:
    ref, sha256 = args.string("release"), args.sha256()
    other = {"allow_other_app": True} if args.flag("allow_other_app") else {}
    return await sup.upgrade(ref, how="blue-green", sha256=sha256, progress=progress, **other)


async def _rollback(sup: Steerable, _args: Args, progress: Progress) -> Any:
    return await sup.rollback(progress=progress)


async def _hot_upgrade(sup: Steerable, args: Args, _progress: Progress) -> Any:
    ref, sha256 = args.string("release"), args.sha256()
    options = {
        "suspend_timeout": args.number("suspend_timeout", 3.0, low=0.0, high=MAX_SUSPEND_TIMEOUT),
        "allow_dependency_changes": args.flag("allow_dependency_changes"),
        "no_quiesce": args.flag("no_quiesce"),
    }
    return await sup.hot_upgrade(ref, sha256=sha256, options=options)


async def _service_call(sup: Steerable, args: Args, _progress: Progress) -> Any:
    name, method = args.string("name"), args.string("method")
    return await sup.call_service(name, method, args.array("args"), args.mapping("kwargs"))


async def _handoff_put(sup: Steerable, args: Args, _progress: Progress) -> Any:
    sup.handoff.put(args.string("key"), args.value("value"))
    return None


async def _handoff_get(sup: Steerable, args: Args, _progress: Progress) -> Any:
    return sup.handoff.get(args.string("key"))


async def _handoff_get_all(sup: Steerable, _args: Args, _progress: Progress) -> Any:
    return sup.handoff.get_all()


async def _handoff_delete(sup: Steerable, args: Args, _progress: Progress) -> Any:
    return sup.handoff.delete(args.string("key"))


async def _logs(sup: Steerable, args: Args, _progress: Progress) -> Any:
    """The ring's entries after the cursor ``after`` (the last ``limit``); with ``wait``, a
    long poll: when there is none yet, answer once one comes or ``wait`` seconds passed.
    Waiting is an await on the loop, so it holds up nothing else."""
    after = args.integer("after", 0, low=0, high=2**62) or 0
    limit = args.integer("limit", None, low=0, high=RING_LINES)
    if args.value("wait") is not None:
        await sup.logs.wait(after, args.number("wait", 0.0, low=0.0, high=MAX_LOGS_WAIT))
    return sup.logs.read(after, limit)


# op -> (the fields it takes, what it does)
_OPS: dict[str, tuple[frozenset[str], Op]] = {
    contract.OP_PING: (frozenset(), _ping),
    contract.OP_STATUS: (frozenset(), _status),
    contract.OP_UPGRADE: (frozenset({"release", "sha256", "allow_other_app"}), _upgrade),
    contract.OP_ROLLBACK: (frozenset(), _rollback),
    contract.OP_HOT_UPGRADE: (
        frozenset(
            {"release", "sha256", "suspend_timeout", "allow_dependency_changes", "no_quiesce"}
        ),
        _hot_upgrade,
    ),
    contract.OP_SERVICE_CALL: (frozenset({"name", "method", "args", "kwargs"}), _service_call),
    contract.OP_HANDOFF_PUT: (frozenset({"key", "value"}), _handoff_put),
    contract.OP_HANDOFF_GET: (frozenset({"key"}), _handoff_get),
    contract.OP_HANDOFF_GET_ALL: (frozenset(), _handoff_get_all),
    contract.OP_HANDOFF_DELETE: (frozenset({"key"}), _handoff_delete),
    contract.OP_LOGS: (frozenset({"after", "limit", "wait"}), _logs),
}
