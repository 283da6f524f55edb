"""Verify + unpack of a large release against a plain ``tar xzf`` of the same tarball.

Run it on demand (not a test)::

    .venv/bin/python bench/bench_unpack.py [--runs 7] [--files 5500] [--keep DIR]

It generates a synthetic release of at least 50 MB and 5,000 files (many Python-like text
files of mixed sizes, some larger binary files of moderate compressibility, dist-info dirs,
pycs), writes RECORD and RELEASE.json with the real record/manifest code and the tarball with
``archive.write_tarball``, then times, interleaved on the same machine:

- ``tar xzf`` into an empty dir (the baseline);
- ``ReleaseStore.unpack`` into an empty state dir (outer sha256, member scan, cross-checks,
  interpreter check, extract with every file re-hashed, read-only, rename);
- ``ReleaseStore.inspect`` (every check, nothing written).

and prints the median of each and the ratio unpack / tar (target: under 1.5x).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hotswap.release import interpreter, record
from hotswap.release.archive import write_tarball
from hotswap.release.config import AppConfig
from hotswap.release.manifest import FORMAT, Manifest, make_release_id, release_id_for
from hotswap.release.store import ReleaseStore, remove_tree
from hotswap.release.verify import Limits

TARGET_RATIO = 1.5
_VOCABULARY = """
def class return self import from if else elif for while in not and or None True False
try except finally with as yield lambda async await raise assert pass break continue
value result data config request response handler client server session token buffer
encode decode parse render validate connect close open read write flush timeout retry
logger debug info warning error items keys append extend update get set pop len range
isinstance dict list tuple str int bytes float bool Optional Any Callable Iterator
"""
_WORDS = _VOCABULARY.split()


def _corpus(rng: random.Random, size: int) -> bytes:
    """Python-looking text: indented lines of identifiers, calls and literals."""
    lines: list[str] = []
    total = 0
    while total < size:
        indent = "    " * rng.choice((0, 1, 1, 2, 2, 3))
        kind = rng.random()
        words = rng.choices(_WORDS, k=rng.randint(2, 9))
        if kind < 0.1:
            line = f"{indent}def {words[0]}_{rng.randrange(10_000)}({', '.join(words[1:])}):"
        elif kind < 0.2:
            line = f'{indent}"""{" ".join(words).capitalize()}."""'
        elif kind < 0.3:
            line = f"{indent}# {' '.join(words)} {rng.randrange(1 << 20):x}"
        else:
            line = f"{indent}{words[0]}_{rng.randrange(1000)} = {words[1]}({', '.join(words[2:])})"
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def _binary(rng: random.Random, size: int) -> bytes:
    """About 2:1 compressible: random 4 KiB blocks interleaved with repetitive ones."""
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.45:
            out += rng.randbytes(4096)
        else:
            out += bytes([rng.randrange(256)]) * 64 + rng.randbytes(64) * 31
    return bytes(out[:size])


def generate_tree(root: Path, *, files: int, seed: int = 1) -> tuple[int, int]:
    """Write a release-like tree under ``root``; returns (files, bytes)."""
    rng = random.Random(seed)
    corpus = _corpus(rng, 4 << 20)
    lib = root / "lib"
    n_bytes = n_files = 0
    n_binary = max(24, files // 200)
    n_text = files - n_binary
    for i in range(n_text):
        pkg = lib / f"pkg{i % 37:02d}" / f"sub{(i // 37) % 11:02d}"
        if i % 5 == 4:  # a pyc-like file beside every few modules
            path = pkg / "__pycache__" / f"mod{i:05d}.cpython-311.pyc"
            size = int(rng.lognormvariate(8.6, 1.0)) + 64
            data = b"\xa7\r\r\n\x03\x00\x00\x00" + _binary(rng, size)[: size // 2] + corpus[:size]
        else:
            path = pkg / f"mod{i:05d}.py"
            size = min(int(rng.lognormvariate(8.8, 1.1)) + 32, 400_000)
            start = rng.randrange(len(corpus) - size) if size < len(corpus) else 0
            data = f"# module {i}\n".encode() + corpus[start : start + size]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        n_files += 1
        n_bytes += len(data)
    for i in range(n_binary):
        path = lib / f"native{i % 6}" / f"blob{i:03d}.so"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _binary(rng, rng.randint(400_000, 2_400_000))
        path.write_bytes(data)
        n_files += 1
        n_bytes += len(data)
    for i in range(37):
        info = lib / f"pkg{i:02d}-1.{i}.0.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: pkg{i:02d}\nVersion: 1.{i}.0\n"
        )
        (info / "WHEEL").write_text(
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        n_files += 2
    return n_files, n_bytes


def make_release(work: Path, *, files: int) -> Path:
    """A real release tarball (RECORD, RELEASE.json, .sha256) of a generated tree."""
    root = work / "tree"
    generate_tree(root, files=files)
    entries = record.scan_tree(root)
    record_bytes = record.write(root, entries)
    record_sha = hashlib.sha256(record_bytes).hexdigest()
    manifest = Manifest(
        {
            "format": FORMAT,
            "name": "bench-app",
            "version": "1.0.0",
            "release_id": make_release_id("1.0.0", record_sha),
            "created": 1_700_000_000,
            "builder": {"hotswap": "bench", "installer": "none"},
            "python": interpreter.identity(),
            "distributions": [],
            "app": AppConfig(distribution="bench-app", entry="bench.main:app").to_json(),
            "record": {
                "sha256": record_sha,
                "files": len(entries),
                "bytes": record.total_bytes(entries.values()),
            },
        }
    )
    manifest.raw["release_id"] = release_id_for(manifest.raw)
    (root / record.MANIFEST_NAME).write_bytes(manifest.dumps())
    tarball = work / f"bench_app-{manifest.release_id}.tar.gz"
    write_tarball(root, tarball, mtime=1_700_000_000)
    shutil.rmtree(root)
    return tarball


def _time_tar(tarball: Path, dest: Path) -> float:
    dest.mkdir()
    os.sync()  # start each run with no dirty pages from the last one
    started = time.perf_counter()
    subprocess.run(["tar", "xzf", str(tarball), "-C", str(dest)], check=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(dest)
    return elapsed


def _time_unpack(tarball: Path, state: Path, limits: Limits) -> float:
    os.sync()
    started = time.perf_counter()
    release = ReleaseStore(state, limits=limits).unpack(tarball)
    elapsed = time.perf_counter() - started
    remove_tree(release.root)
    shutil.rmtree(state)
    return elapsed


def _time_inspect(tarball: Path, state: Path, limits: Limits) -> float:
    started = time.perf_counter()
    ReleaseStore(state, limits=limits).inspect(tarball)
    return time.perf_counter() - started


def run(runs: int, files: int, keep: Path | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="hotswap-bench-unpack-", dir=keep))
    try:
        print(f"generating a release of {files} files in {work} ...", file=sys.stderr)
        started = time.perf_counter()
        tarball = make_release(work, files=files)
        manifest_record = ReleaseStore(work / "probe").inspect(tarball)
        print(f"  generated in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        limits = Limits()
        times: dict[str, list[float]] = {"tar xzf": [], "hotswap unpack": [], "hotswap inspect": []}
        for i in range(runs):  # interleaved, so drift hits all three alike
            times["tar xzf"].append(_time_tar(tarball, work / f"tar{i}"))
            times["hotswap unpack"].append(_time_unpack(tarball, work / f"state{i}", limits))
            times["hotswap inspect"].append(_time_inspect(tarball, work / "probe", limits))
        return {
            "tarball_bytes": tarball.stat().st_size,
            "files": manifest_record.files,
            "bytes": manifest_record.bytes,
            "times": times,
        }
    finally:
        remove_tree(work)


def report(result: dict[str, Any], runs: int) -> int:
    times: dict[str, list[float]] = result["times"]
    mib = 1024 * 1024
    print(
        f"release: {result['files']} files, {result['bytes'] / mib:.1f} MiB unpacked, "
        f"{result['tarball_bytes'] / mib:.1f} MiB .tar.gz; {runs} interleaved runs, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    base = statistics.median(times["tar xzf"])
    print(f"{'':18} {'median':>9} {'min':>9} {'max':>9} {'vs tar':>8}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:18} {med:8.3f}s {min(values):8.3f}s {max(values):8.3f}s {med / base:7.2f}x")
    ratio = statistics.median(times["hotswap unpack"]) / base
    verdict = "met" if ratio < TARGET_RATIO else "MISSED"
    print(f"verify + unpack / tar xzf = {ratio:.2f}x (target < {TARGET_RATIO}x: {verdict})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="interleaved runs of each (default 7)")
    parser.add_argument("--files", type=int, default=5500, help="files in the release")
    parser.add_argument("--keep", type=Path, help="parent dir for the work files (default: tmp)")
    args = parser.parse_args()
    return report(run(args.runs, args.files, args.keep), args.runs)


if __name__ == "__main__":
    sys.exit(main())
