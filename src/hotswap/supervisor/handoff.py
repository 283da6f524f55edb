"""The handoff store: a key-value store held by the supervisor that survives cutovers.

Generations read and write it through the control socket; it stays writable during an upgrade
(the control server never waits behind one) and is persisted to ``handoff.json`` in the state
dir on every change (atomic write, before the change is made in memory: a put or delete that
cannot be persisted, e.g. on a full disk, fails with ``io_error`` and changes nothing), so a
supervisor restart keeps it. Values are
JSON-compatible or bytes, at most ``MAX_VALUE`` bytes each once encoded and ``MAX_TOTAL`` in
all. ``BEFORE_CUTOVER_KEY`` is reserved for the old generation's ``before_cutover`` result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hotswap.control.protocol import from_wire, to_wire
from hotswap.errors import ResourceError, UsageError
from hotswap.fsutil import write_json_atomic

BEFORE_CUTOVER_KEY = "__before_cutover_result__"
MAX_KEY = 256
MAX_VALUE = 1024 * 1024
MAX_TOTAL = 16 * 1024 * 1024
FILE_NAME = "handoff.json"


def _encoded_size(wire: Any) -> int:
    return len(json.dumps(wire, separators=(",", ":")).encode("utf-8"))


class HandoffStore:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._data: dict[str, Any] = {}  # wire form (bytes as {"$bytes": ...})
        self._sizes: dict[str, int] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    for wire in loaded.values():
                        from_wire(wire)  # every value must decode, or get() would fail later
            except (OSError, ValueError, RecursionError) as e:
                raise ResourceError("io_error", f"{path} is unreadable: {e!r}") from None
            if isinstance(loaded, dict):
                self._data = loaded
                self._sizes = {k: _encoded_size(v) for k, v in loaded.items()}

    @staticmethod
    def _check_key(key: Any) -> str:
        if not isinstance(key, str) or not key or len(key) > MAX_KEY:
            raise UsageError("handoff_invalid", f"a handoff key is a string of 1..{MAX_KEY} chars")
        return key

    def put(self, key: str, value: Any, *, reserved_ok: bool = False) -> None:
        self._check_key(key)
        if key == BEFORE_CUTOVER_KEY and not reserved_ok:
            raise UsageError("handoff_invalid", f"{key!r} is reserved for before_cutover")
        try:
            wire = to_wire(value)
            size = _encoded_size(wire)
        except TypeError as e:
            raise UsageError("handoff_invalid", f"handoff value for {key!r}: {e}") from None
        except RecursionError:
            raise UsageError(
                "handoff_invalid", f"handoff value for {key!r} nests too deeply"
            ) from None
        if size > MAX_VALUE:
            raise UsageError(
                "handoff_too_large",
                f"handoff value for {key!r} is {size} bytes encoded, the limit is {MAX_VALUE}",
            )
        total = sum(self._sizes.values()) - self._sizes.get(key, 0) + size
        if total > MAX_TOTAL:
            raise UsageError(
                "handoff_too_large", f"the handoff store would hold {total} bytes (> {MAX_TOTAL})"
            )
        self._save({**self._data, key: wire})
        self._data[key] = wire
        self._sizes[key] = size

    def get(self, key: str) -> Any:
        self._check_key(key)
        return from_wire(self._data.get(key))

    def get_all(self) -> dict[str, Any]:
        # value by value: the keys are the user's own (a key may start with "$")
        return {key: from_wire(wire) for key, wire in self._data.items()}

    def stats(self) -> tuple[int, int]:
        """The number of keys and the bytes their values take, JSON-encoded."""
        return len(self._data), sum(self._sizes.values())

    def delete(self, key: str) -> bool:
        self._check_key(key)
        if key not in self._data:
            return False
        self._save({k: v for k, v in self._data.items() if k != key})
        del self._data[key]
        self._sizes.pop(key, None)
        return True

    def _save(self, data: dict[str, Any]) -> None:
        """Persist ``data`` (what the store is about to hold); raises ``io_error``."""
        if self._path is None:
            return
        try:
            write_json_atomic(self._path, data)
        except OSError as e:
            raise ResourceError(
                "io_error", f"the handoff store cannot be saved to {self._path}: {e}"
            ) from None
