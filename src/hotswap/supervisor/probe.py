"""The readiness probe: one HTTP/1.1 GET on a generation's private unix socket (promise 2)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path


async def http_probe(path: Path, target: str, host: str = "localhost") -> int:
    """``GET target`` on the unix socket at ``path``; returns the status code. Raises
    OSError, asyncio.IncompleteReadError or ValueError when there is no HTTP answer."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hotswap\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await reader.readline()
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError(f"not an HTTP response: {line[:80]!r}")
        return int(parts[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
