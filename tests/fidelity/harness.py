"""The fidelity harness: is an accepted hot upgrade of a real release the same as a fresh import?

For one :class:`~pairs.Pair` it downloads the two wheels with pip (``--no-deps``, into a cache
directory), unpacks each into a release directory the way the engine expects (``lib/`` as
``pip install --target`` lays it out, a RECORD, a manifest naming the library as the app's own
distribution), then runs two interpreters (:mod:`child`): one imports the old release, holds its
objects and hot-upgrades to the new one with the real engine; the other imports the new release
the same way. The comparison ends in one of

- ``equivalent``: accepted, and module dicts, class dicts, function code, the state of held
  instances, held references and the probes are those of the fresh import;
- ``refused`` (with the reasons) or ``failed`` (rolled back), the process left as it was;
- ``different``: accepted, with what differs (the harness's failure: must never happen);
- ``error``: the harness could not run the pair (download, import).

``stale`` counts references taken before the upgrade that are whole old objects (a re-decorated
def keeps its old object, as the engine documents); references of mixed old and new parts are
differences.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

from tests.fidelity.pairs import Pair

CHILD = Path(__file__).resolve().parent / "child.py"
TIMEOUT = 300.0
OUTCOMES = ("equivalent", "refused", "failed", "different", "error")


@dataclass
class Result:
    pair: str
    outcome: str  # one of OUTCOMES
    reason: str = ""
    check: str = ""  # what `hotswap.hot.check` said: "possible" or the reason codes
    static: str = ""  # what the source-only analysis (`static_check`) said
    check_ms: list[float] = field(default_factory=list)  # check's samples
    static_ms: list[float] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    stale: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel(cache: Path, dist: str, version: str) -> Path:
    """The wheel of ``dist==version`` in ``cache``, downloaded with pip if missing."""
    cache.mkdir(parents=True, exist_ok=True)
    found = _find(cache, dist, version)
    if found is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--disable-pip-version-check", "-d", str(cache),
             f"{dist}=={version}"],
            check=True, capture_output=True, timeout=TIMEOUT,
        )  # fmt: skip
        found = _find(cache, dist, version)
    if found is None:
        raise FileNotFoundError(f"pip downloaded no wheel for {dist}=={version}")
    return found


def _find(cache: Path, dist: str, version: str) -> Path | None:
    for path in sorted(cache.glob("*.whl")):
        name, ver = path.name.split("-")[:2]
        if _norm(name) == _norm(dist) and ver == version:
            return path
    return None


def _unpack(whl: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(whl) as z:
        return {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}


def build_release(root: Path, cache: Path, pair: Pair, version: str) -> Path:
    """An unpacked release of ``pair.dist==version`` (and its unchanged ``needs``) at ``root``."""
    from hotswap.hot.testing import write_release

    files: dict[str, str | bytes] = {}
    dists = []
    for dist, ver in ((pair.dist, version), *pair.needs):
        content = _unpack(wheel(cache, dist, ver))
        files.update(content)
        native = any(p.endswith(tuple(EXTENSION_SUFFIXES)) for p in content)
        dists.append(
            {"name": dist, "version": ver, "purelib": not native, "has_extensions": native,
             "tags": ["py3-none-any"]}
        )  # fmt: skip
    app = {"distribution": pair.dist, "entry": f"{pair.packages[0]}:__name__", "server": "callable"}
    return write_release(
        root, files, name=_norm(pair.dist).replace("_", "-"), version=version,
        distributions=dists, app=app,
    )  # fmt: skip


def runtime_dir(work: Path) -> Path:
    """hotswap and packaging alone, as links (the supervisor's runtime copy is laid out so):
    the children see the release and these, not this interpreter's site-packages."""
    import packaging

    import hotswap

    runtime = work / "runtime"
    if not runtime.exists():
        runtime.mkdir(parents=True)
        for pkg in (hotswap, packaging):
            src = Path(pkg.__file__ or "").parent
            (runtime / src.name).symlink_to(src)
    return runtime


def _run_child(mode: str, spec: Path, out: Path, cwd: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-S", "-s", str(CHILD), mode, str(spec), str(out)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{mode} child exited {proc.returncode}: " + " | ".join(tail))
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def run_pair(pair: Pair, work: Path, cache: Path, samples: int = 1) -> Result:
    """The outcome of ``pair``; ``samples`` times each kind of check (the first is kept)."""
    t0 = time.perf_counter()
    try:
        result = _run_pair(pair, work, cache, samples)
    except Exception as exc:
        result = Result(pair.label, "error", reason=f"{type(exc).__name__}: {exc}"[:300])
    result.seconds = round(time.perf_counter() - t0, 2)
    return result


def _said(v: Any) -> str:
    return "possible" if v.ok else ",".join(sorted({r.code for r in v.reasons}))


def _timed(fn: Any, samples: int, *args: Any) -> tuple[str, list[float]]:
    said, times = "", []
    for _ in range(samples):
        t = time.perf_counter()
        try:
            got = _said(fn(*args))
        except Exception as exc:
            got = str(getattr(exc, "code", type(exc).__name__))
        said = said or got
        times.append(round((time.perf_counter() - t) * 1000, 1))
    return said, times


def _run_pair(pair: Pair, work: Path, cache: Path, samples: int) -> Result:
    checks = importlib.import_module("hotswap.hot.check")
    check = checks.check
    static_check = getattr(checks, "static_check", check)  # older engines: check was static

    base = work / f"{_norm(pair.dist)}-{pair.old}-{pair.new}"
    old = build_release(base / "old", cache, pair, pair.old)
    new = build_release(base / "new", cache, pair, pair.new)
    static, static_ms = _timed(static_check, samples, old, new)
    said, check_ms = _timed(check, samples, old, new)
    spec = {
        "old_root": str(old), "new_root": str(new),
        "old_lib": str(old.resolve() / "lib"), "new_lib": str(new.resolve() / "lib"),
        "packages": list(pair.packages), "setup": pair.setup, "probes": list(pair.probes),
        "runtime": str(runtime_dir(work)),
    }  # fmt: skip
    spec_path = base / "spec.json"
    spec_path.write_text(json.dumps(spec))
    live = _run_child("live", spec_path, base / "live.json", base)
    spec["imported"] = live["imported"]
    spec_path.write_text(json.dumps(spec))
    fresh = _run_child("fresh", spec_path, base / "fresh.json", base)
    again = _run_child("fresh", spec_path, base / "fresh2.json", base)
    noise = {_key(d) for d in compare(fresh["after"], again["after"], fresh["after"])[0]}
    result = classify(pair, live, fresh, said, noise)
    result.static, result.static_ms, result.check_ms = static, static_ms, check_ms
    return result


def _key(difference: str) -> str:
    return difference.split(": ", 1)[0]


def classify(
    pair: Pair, live: dict[str, Any], fresh: dict[str, Any], said: str, noise: set[str]
) -> Result:
    """The outcome of a pair; ``noise`` are the things two fresh imports of the new release
    do not agree on either (a ``hash()`` of ``None``, an address), left out."""
    outcome = live["outcome"]
    code = outcome["code"]
    if code != "accepted":
        kind = "refused" if code == "hot_upgrade_refused" else "failed"
        codes = sorted({r.get("code", "?") for r in outcome.get("reasons") or []})
        reason = ",".join(codes) if codes else outcome.get("message", code)
        if kind == "failed":
            reason = f"{outcome.get('step')}: {outcome.get('message', '')}"[:200]
        diffs = compare(live["before"], live["after_upgrade"], live["before"])[0]
        if diffs:  # promise 9: a refusal or a rollback leaves the process as it was
            return Result(pair.label, "different", f"{code}, not restored", said, differences=diffs)
        return Result(pair.label, kind, reason, said)
    diffs, stale = compare(live["after"], fresh["after"], live["before"])
    diffs = [d for d in diffs if _key(d) not in noise]
    diffs += _probe_diffs(pair, live["probes"], fresh["probes"])
    if diffs:
        return Result(pair.label, "different", "", said, differences=diffs, stale=stale)
    return Result(pair.label, "equivalent", "", said, stale=stale)


def _probe_diffs(pair: Pair, got: list[str], want: list[str]) -> list[str]:
    return [
        f"probe {expr}: {a[:120]!r}, fresh {b[:120]!r}"
        for expr, a, b in zip(pair.probes, got, want, strict=True)
        if a != b
    ]


def _dict_diff(where: str, a: dict[str, Any], b: dict[str, Any], out: list[str]) -> None:
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            out.append(f"{where}.{name}: only after the upgrade")
        elif name not in a:
            out.append(f"{where}.{name}: missing after the upgrade")
        elif a[name] != b[name]:
            x, y = a[name], b[name]
            if isinstance(x, dict) and isinstance(y, dict):
                parts = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
                out.append(f"{where}.{name}: {', '.join(parts)} differ")
            else:
                out.append(f"{where}.{name}: {str(x)[:60]} vs fresh {str(y)[:60]}")


def compare(
    got: dict[str, Any], want: dict[str, Any], before: dict[str, Any]
) -> tuple[list[str], int]:
    """Differences of ``got`` from ``want`` (two snapshots), and the stale references."""
    out: list[str] = []
    for kind in ("modules", "classes"):
        a, b = got[kind], want[kind]
        for name in sorted(a.keys() - b.keys()):
            out.append(f"{kind[:-1]} {name}: only after the upgrade")
        for name in sorted(b.keys() - a.keys()):
            out.append(f"{kind[:-1]} {name}: missing after the upgrade")
        for name in sorted(a.keys() & b.keys()):
            _dict_diff(name, a[name], b[name], out)
    stale = 0
    for path in sorted(got["refs"].keys() & want["refs"].keys()):
        a, b = got["refs"][path], want["refs"][path]
        if a["desc"] == b["desc"]:
            continue
        if not a["current"] and a["desc"] == before["refs"].get(path, {}).get("desc"):
            stale += 1  # the old object, whole
        else:
            out.append(f"held reference {path}: {_which(a['desc'], b['desc'])}")
    for path in sorted(got["instances"].keys() & want["instances"].keys()):
        a, b = got["instances"][path], want["instances"][path]
        if not a["is_current"]:
            stale += 1
        elif a["state"] != b["state"]:
            keys = sorted(
                k for k in (a["state"] or {}).keys() | (b["state"] or {}).keys()
                if (a["state"] or {}).get(k) != (b["state"] or {}).get(k)
            )  # fmt: skip
            out.append(f"live instance of {path}: state {', '.join(keys) or 'shape'} differs")
    return out, stale


def _which(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        return ", ".join(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))) + " differ"
    return f"{str(a)[:60]} vs fresh {str(b)[:60]}"


def table(results: list[Result]) -> str:
    rows = [
        ("library", "versions", "outcome", "reason / what differs", "check said", "static said")
    ]
    for r in results:
        dist, _, versions = r.pair.partition(" ")
        what = r.reason or "; ".join(r.differences[:3])
        if r.differences and len(r.differences) > 3:
            what += f" (+{len(r.differences) - 3} more)"
        if r.stale:
            what = (what + "; " if what else "") + f"{r.stale} stale refs"
        rows.append((dist, versions, r.outcome, what[:110], r.check, r.static))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def summary(results: list[Result]) -> dict[str, Any]:
    n = len(results) or 1
    counts = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
    accepted = counts["equivalent"] + counts["different"]
    return {
        "pairs": len(results),
        **counts,
        "accepted_pct": round(100 * accepted / n, 1),
        "equivalent_pct": round(100 * counts["equivalent"] / n, 1),
        "check_agrees_pct": round(100 * sum(_agrees(r, r.check) for r in results) / n, 1),
        "static_agrees_pct": round(100 * sum(_agrees(r, r.static) for r in results) / n, 1),
    }


def _agrees(r: Result, said: str) -> bool:
    """Did a check say what the live engine did (possible: accepted; else the same codes)?"""
    if r.outcome in ("equivalent", "different"):
        return said == "possible"
    if r.outcome == "refused":
        return said == r.reason
    return False
