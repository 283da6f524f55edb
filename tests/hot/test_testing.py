"""hotswap.hot.testing: the release it writes is what a build would record."""

from __future__ import annotations

import json
from pathlib import Path

from hotswap.hot.testing import write_release


def test_write_release_counts_bytes_not_characters(tmp_path: Path) -> None:
    files = {"app/__init__.py": "NAME = 'café ☕'\n", "app/data.bin": b"\x00\xff"}
    root = write_release(tmp_path / "r", files)
    manifest = json.loads((root / "RELEASE.json").read_text(encoding="utf-8"))
    on_disk = sum(p.stat().st_size for p in (root / "lib").rglob("*") if p.is_file())
    assert manifest["record"]["bytes"] == on_disk == len("NAME = 'café ☕'\n".encode()) + 2
