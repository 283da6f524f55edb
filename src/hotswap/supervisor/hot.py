"""A hot upgrade through the supervisor: the active generation patches itself in place.

The supervisor verifies and unpacks the release, asks the active generation to hot-upgrade to
it (``hot_upgrade`` on its channel; the patching is :mod:`hotswap.hot`, inside the child), and
on success records it as current, so a restarted generation boots the new code. Every attempt,
failed or not, goes into ``recent``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from hotswap import contract
from hotswap.errors import HotswapError, UsageError
from hotswap.supervisor.driver import resolve

if TYPE_CHECKING:
    from hotswap.supervisor.core import Supervisor

RESERVED = ("release", "sha256", "release_root", "release_id")  # the supervisor sets these


async def hot_upgrade(
    sup: Supervisor, ref: str, sha256: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    gen = sup.active
    assert gen is not None
    loop = asyncio.get_running_loop()
    started = sup.clock.now()
    record: dict[str, Any] = {
        "how": "hot",
        "release": None,
        "ref": ref,
        "ok": False,
        "generation": gen.number,
        "pid": gen.pid,
        "at": time.time(),
    }
    try:
        release = await loop.run_in_executor(None, resolve, sup, ref, sha256)
        record["release"] = release.id
        opts = {k: v for k, v in options.items() if k not in RESERVED}
        suspend = float(opts.get("suspend_timeout", contract.SUSPEND_TIMEOUT))
        if gen.size > 1:
            raise UsageError(
                "hot_upgrade_refused",
                f"generation {gen.number} runs {gen.size} workers: hot upgrades of several "
                "workers are not supported yet; use a blue-green upgrade",
            )
        child = gen.alive()[0]
        result = await child.request(
            contract.OP_HOT_UPGRADE,
            timeout=suspend + contract.HOT_UPGRADE_GRACE,
            release_root=str(release.root),
            release_id=release.id,
            **opts,
        )
        gen.set_release(release)
        protect = sup.releases_in_use()
        await loop.run_in_executor(
            None, lambda: sup.store.set_current(release.id, how="hot", protect=protect)
        )
        record.update(ok=True, stats=result)
        return record
    except HotswapError as e:
        record["error"] = {"code": e.code, "message": e.message}
        raise
    finally:
        record["total_ms"] = round((sup.clock.now() - started) * 1000, 3)
        sup.recent.appendleft(record)
