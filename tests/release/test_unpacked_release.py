"""A verified, unpacked release runs in a fresh interpreter from its own ``lib/`` alone, from
its checked-hash pycs, without writing a byte into the release."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hotswap.release import record
from hotswap.release.build import BuildResult
from hotswap.release.store import Release, ReleaseStore

CHECKED_HASH = 0b11  # pyc flags: hash-based (bit 0), check_source (bit 1); PEP 552

PROGRAM = textwrap.dedent(
    """
    import asyncio, json, sys
    lib = sys.argv[1]
    sys.path[:0] = [lib]
    import fixture_app, fixture_app.main, uvicorn

    async def call(scope, messages):
        sent = []
        async def receive():
            return messages.pop(0)
        async def send(message):
            sent.append(message)
        await fixture_app.main.app(scope, receive, send)
        return sent

    async def main():
        life = await call(
            {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        )
        http = await call(
            {"type": "http", "path": "/", "query_string": b""},
            [{"type": "http.request", "body": b""}],
        )
        return life, http

    life, http = asyncio.run(main())
    print(json.dumps({
        "version": fixture_app.VERSION,
        "app_file": fixture_app.main.__file__,
        "uvicorn_file": uvicorn.__file__,
        "lifespan": [m["type"] for m in life],
        "status": http[0]["status"],
        "body": json.loads(http[1]["body"]),
        "no_site": "site" not in sys.modules,
    }))
    """
)


@pytest.fixture(scope="module")
def unpacked(release_v1: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Release:
    return ReleaseStore(tmp_path_factory.mktemp("state")).unpack(release_v1.tarball)


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (mode, size, mtime_ns) for everything below ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.stat(path, follow_symlinks=False)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def test_unpacked_app_imports_and_serves_in_a_fresh_interpreter(unpacked: Release) -> None:
    before = _tree(unpacked.root)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-v", "-c", PROGRAM, str(unpacked.lib)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    lib = str(unpacked.lib)
    assert out["version"] == "1.0.0"
    assert out["app_file"] == f"{lib}/fixture_app/main.py"
    assert out["uvicorn_file"].startswith(lib + "/")  # dependencies come from the release
    assert out["no_site"]
    assert out["lifespan"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert out["status"] == 200
    assert out["body"]["version"] == "1.0.0"
    # -v logs each pyc that is checked against its source by hash, and each one written
    pyc = f"{lib}/fixture_app/__pycache__/main.{sys.implementation.cache_tag}.pyc"
    assert f"{pyc} matches {lib}/fixture_app/main.py" in proc.stderr
    assert f"code object from '{pyc}'" in proc.stderr
    assert f"created '{lib}" not in proc.stderr
    assert _tree(unpacked.root) == before  # nothing written into the release


def test_every_module_has_a_checked_hash_pyc(unpacked: Release) -> None:
    magic = importlib.util.MAGIC_NUMBER
    sources = list(unpacked.lib.rglob("*.py"))
    assert len(sources) > 50
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        data = pyc.read_bytes()
        assert data[:4] == magic, pyc
        assert int.from_bytes(data[4:8], "little") == CHECKED_HASH, pyc
        assert data[8:16] == importlib.util.source_hash(source.read_bytes()), pyc


def test_unpacked_release_is_read_only_and_matches_its_record(unpacked: Release) -> None:
    entries = record.loads((unpacked.root / record.RECORD_NAME).read_bytes())
    assert len(entries) == unpacked.manifest.record["files"]
    for name, entry in entries.items():
        assert record.hash_file(unpacked.root / name) == entry, name
    for path, (mode, _size, _mtime) in _tree(unpacked.root).items():
        assert not stat.S_ISLNK(mode), path
        assert mode & 0o222 == 0, path  # no write bit anywhere
    assert unpacked.root.stat().st_mode & 0o222 == 0
    assert os.stat(unpacked.root / "lib" / "fixture_app" / "main.py").st_mode & 0o777 == 0o444
