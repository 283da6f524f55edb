"""The inflated stream of a ``.tar.gz``, bounded, as a forward-reading file for ``tarfile``.

Python's own gzip readers inflate a whole compressed chunk at once (1 MB of gzip can be 1 GB
of zeros). :class:`Inflated` inflates at most ``OUT_CHUNK`` bytes per step and ``cap`` bytes
in all, puts every compressed byte through sha256 (the outer checksum), and can check that
nothing but zero padding follows the tar archive and nothing at all follows the gzip stream.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from hotswap.errors import ReleaseError

IN_CHUNK = 1 << 20  # compressed bytes read at a time
OUT_CHUNK = 4 << 20  # inflated bytes produced at a time: bounds a bomb's burst
TRAILER_SLACK = 1 << 20  # inflated bytes allowed after the tar end-of-archive blocks


class Inflated:
    """The inflated tar stream of a ``.tar.gz``, as a forward-reading file for ``tarfile``.

    Every compressed byte read goes through sha256 (the outer checksum). Inflating is bounded:
    at most ``OUT_CHUNK`` bytes per step and ``cap`` bytes in all. The inflated bytes are kept
    while they fit in ``keep`` bytes (``kept``); past that, or with ``keep=0``, only the bytes
    from the read position on are held, so memory stays small whatever the archive."""

    def __init__(
        self, raw: IO[bytes], *, keep: int, cap: int, tick: Callable[[], None] = lambda: None
    ) -> None:
        self._raw = raw
        self._tick = tick  # called at every step: raises to stop (a deadline)
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip: header, CRC and length
        self._sha = hashlib.sha256()
        self._keep = keep
        self._cap = cap
        self.kept = keep > 0
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._pos = 0
        self._produced = 0

    # -- the file interface tarfile uses ---------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self._cap
        self._ensure(self._pos + n)
        start = self._pos - self._base
        data = bytes(self._buf[start : start + n])
        self._pos += len(data)
        self._trim()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset + (self._pos if whence == os.SEEK_CUR else 0)
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self._base:
            raise OSError(f"cannot seek to {target} in a forward-only stream")
        self._pos = target
        self._trim()
        return target

    def tell(self) -> int:
        return self._pos

    # -- ours --------------------------------------------------------------------------------

    def chunks(self, offset: int, size: int) -> Iterator[memoryview]:
        """The ``size`` bytes at ``offset``, as views into the buffer (valid until the next
        step: do not keep them)."""
        self.seek(offset)
        remaining = size
        while remaining:
            self._ensure(self._pos + 1)
            start = self._pos - self._base
            n = min(remaining, len(self._buf) - start)
            if n <= 0:
                raise EOFError("unexpected end of data")
            with memoryview(self._buf) as whole, whole[start : start + n] as part:
                yield part
            self._pos += n
            remaining -= n
            self._trim()

    def finish(self) -> None:
        """Inflate to the end of the gzip stream (zlib checks its CRC and length there) and
        refuse anything after it. After the tar end-of-archive block, only zero padding may
        follow, and at most ``TRAILER_SLACK`` bytes of it."""
        limit = self._produced + TRAILER_SLACK
        while True:
            start = self._pos - self._base
            if start < len(self._buf):
                tail = self._buf[start:]
                if tail.count(0) != len(tail):
                    raise ReleaseError("corrupt_archive", "data follows the end of the tar archive")
            self._pos = self._base + len(self._buf)
            self._trim()
            if self._produced > limit:
                raise ReleaseError(
                    "corrupt_archive",
                    f"more than {TRAILER_SLACK} bytes follow the end of the tar archive",
                )
            if not self._feed():
                break
        if self._z.unused_data or self._read_raw(1):
            raise ReleaseError("corrupt_archive", "data follows the end of the gzip stream")

    def hexdigest(self) -> str:
        """The sha256 of the whole file: reads (without inflating) what is left of it."""
        while self._read_raw(IN_CHUNK):
            pass
        return self._sha.hexdigest()

    @property
    def produced(self) -> int:
        """Inflated bytes so far."""
        return self._produced

    @property
    def payload(self) -> bytearray | None:
        return self._buf if self.kept else None

    def _read_raw(self, n: int) -> bytes:
        data = self._raw.read(n)
        self._sha.update(data)
        return data

    def _feed(self) -> bool:
        """Inflate one more step; False once the gzip stream has ended."""
        z = self._z
        if z.eof:
            return False
        self._tick()
        data = z.unconsumed_tail or self._read_raw(IN_CHUNK)
        if not data:
            raise EOFError("the gzip stream ends before its end marker (truncated)")
        out = z.decompress(data, OUT_CHUNK)
        self._produced += len(out)
        if self._produced > self._cap:
            raise ReleaseError(
                "too_large",
                f"the archive inflates to more than {self._cap} bytes",
                limit=self._cap,
            )
        if self.kept and self._produced > self._keep:
            self.kept = False  # too big to keep: the second pass will read the file again
        self._buf += out
        return True

    def _ensure(self, end: int) -> None:
        """Inflate until the stream holds the bytes before ``end`` (or ends)."""
        while self._base + len(self._buf) < end and self._feed():
            self._trim()

    def _trim(self) -> None:
        """Unless keeping everything, drop the bytes before the read position."""
        if self.kept:
            return
        dead = min(self._pos - self._base, len(self._buf))
        if dead > 0 and (dead == len(self._buf) or dead >= OUT_CHUNK):
            del self._buf[:dead]
            self._base += dead
