"""The supervisor's control socket: a Unix socket in the state dir.

Promise 10, only the owner can steer: the socket is created under umask 0177 (mode 0600)
inside the 0700 state dir, and every connection's peer uid (``SO_PEERCRED``) must be the
supervisor's own, or it is answered ``permission_denied`` and closed. Nothing that crosses it
can execute code: the protocol is JSON (``control.protocol``), never pickle.

Each connection is served on its own task, so ``status`` and the handoff store answer at once
while an ``upgrade`` on another connection streams its phases (promise 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotswap.control.connection import Connection, Fault
from hotswap.control.protocol import MAX_LINE, Request
from hotswap.errors import HotswapError, ResourceError, UsageError

if TYPE_CHECKING:
    from hotswap.supervisor.core import Supervisor

_UCRED = struct.Struct("3i")


def peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return int(uid)


class ControlServer:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(path), limit=MAX_LINE
            )
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
                writer.write(conn.event("phase", data, ident=request.id))

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

    async def _dispatch(self, request: Request, progress: Any) -> Any:
        sup = self.supervisor
        args = request.args
        op = request.op
        if op == "ping":
            import hotswap

            return {"pid": os.getpid(), "hotswap": hotswap.__version__}
        if op == "status":
            return sup.status()
        if op == "upgrade":
            ref = _string(args, "release")
            return await sup.upgrade(
                ref, how="blue-green", sha256=args.get("sha256"), progress=progress
            )
        if op == "rollback":
            previous = sup.store.read_state()["previous"]
            if not previous:
                raise UsageError(
                    "no_previous_release", "there is no previous release to roll back to"
                )
            return await sup.upgrade(str(previous), how="rollback", progress=progress)
        if op == "hot_upgrade":
            ref = _string(args, "release")
            return await sup.hot_upgrade(ref, sha256=args.get("sha256"), options=args)
        if op == "service.call":
            call_args = args.get("args", [])
            call_kwargs = args.get("kwargs", {})
            if not isinstance(call_args, list) or not isinstance(call_kwargs, dict):
                raise UsageError("bad_request", "service.call needs list args and object kwargs")
            return await sup.call_service(
                _string(args, "name"), _string(args, "method"), call_args, call_kwargs
            )
        if op == "handoff.put":
            sup.handoff.put(_string(args, "key"), args.get("value"))
            return None
        if op == "handoff.get":
            return sup.handoff.get(_string(args, "key"))
        if op == "handoff.get_all":
            return sup.handoff.get_all()
        if op == "handoff.delete":
            return sup.handoff.delete(_string(args, "key"))
        raise UsageError("bad_request", f"unknown control op {op!r}")


def _string(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError("bad_request", f"the request needs a string {key!r}")
    return value
