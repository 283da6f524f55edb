"""``hotswap build``: turn a project into a release tarball.

1. read ``pyproject.toml`` and validate ``[tool.hotswap]``;
2. build the project's wheel (``uv build`` or ``pip wheel``);
3. install it with all its dependencies into ``lib/`` of a staging tree (``uv pip install
   --target --link-mode copy`` or ``pip install --target``), for *this* interpreter, with the
   configured server when the project does not list it (said in the progress);
   then import the entry, the hooks, the services and the server from that tree in a fresh
   interpreter (:mod:`hotswap.child.adapters.preflight`): a typo fails here with
   ``import_failed``, not at boot; a WSGI entry on uvicorn gets the bridge (a2wsgi);
4. strip what ties the tree to the build machine (``lib/bin`` scripts with absolute shebangs,
   ``direct_url.json`` naming the temporary wheel path) and precompile every module with
   **checked-hash** pycs, so a stale ``.pyc`` can never be picked by timestamp;
5. write ``RECORD`` (every file, sha256 and size) and ``RELEASE.json`` (the manifest);
6. write a deterministic ``<name>-<release_id>.tar.gz`` and its ``.sha256``.

The same project, dependency versions and ``SOURCE_DATE_EPOCH`` give byte-identical output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import hotswap
from hotswap.child.adapters import preflight
from hotswap.child.adapters.interface import BRIDGE_MODULE, BRIDGE_REQUIREMENT
from hotswap.errors import ReleaseError, ResourceError, UsageError
from hotswap.release import interpreter, record
from hotswap.release.archive import write_tarball
from hotswap.release.config import AppConfig, parse_table
from hotswap.release.manifest import FORMAT, Manifest, make_release_id, release_id_for

INSTALLERS = ("auto", "uv", "pip")
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")


@dataclass(frozen=True)
class BuildResult:
    tarball: Path
    sha256: str
    manifest: Manifest
    installer: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "tarball": str(self.tarball),
            "sha256": self.sha256,
            "release_id": self.manifest.release_id,
            "name": self.manifest.name,
            "version": self.manifest.version,
            "installer": self.installer,
            "files": self.manifest.record["files"],
            "bytes": self.manifest.record["bytes"],
            "seconds": round(self.seconds, 3),
        }


def read_project(project_dir: Path) -> tuple[dict[str, Any], AppConfig]:
    """Parse ``pyproject.toml`` and its ``[tool.hotswap]`` table."""
    pyproject = project_dir / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            "not_a_project", f"{project_dir} has no pyproject.toml", path=str(project_dir)
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError("bad_config", f"{pyproject} is not valid TOML: {e}") from None
    project = data.get("project") or {}
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError("bad_config", f"{pyproject} has no [project] name", key="name")
    table = (data.get("tool") or {}).get("hotswap")
    if table is None:
        raise UsageError(
            "no_entry_point",
            f"{pyproject} has no [tool.hotswap] table; add at least "
            '`entry = "module:attr"` (and `server = "uvicorn"` or "callable")',
        )
    return data, parse_table(table, distribution=name, where="[tool.hotswap]")


def find_uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def choose_installer(installer: str) -> tuple[str, str | None]:
    if installer not in INSTALLERS:
        raise UsageError("bad_config", f"installer must be one of {INSTALLERS}, got {installer!r}")
    uv = find_uv()
    if installer == "uv" and uv is None:
        raise ResourceError(
            "tool_missing", "uv was asked for but is not installed (pip install uv)"
        )
    if installer in ("uv", "auto") and uv is not None:
        return "uv", uv
    return "pip", None


class _Runner:
    """Runs build steps, keeping their output for the error message."""

    def __init__(self, say: Callable[[str], None], env: dict[str, str]) -> None:
        self.say = say
        self.env = env

    def run(self, step: str, argv: list[str], cwd: Path | None = None) -> str:
        started = time.monotonic()
        self.say(f"{step} ...")
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            raise ResourceError(
                "build_failed",
                f"{step} failed (exit {proc.returncode}):\n{tail}",
                step=step,
                output=tail,
            )
        self.say(f"{step}: done in {time.monotonic() - started:.1f}s")
        return proc.stdout


class _Installer:
    """``uv pip install --target`` or ``pip install --target`` into the release's lib/."""

    def __init__(self, runner: _Runner, kind: str, uv: str | None, lib: Path) -> None:
        self.runner, self.kind, self.uv, self.lib = runner, kind, uv, lib

    def run(self, what: str, args: list[str]) -> None:
        if self.kind == "uv":
            assert self.uv is not None
            argv = [self.uv, "pip", "install", "--quiet", "--target", str(self.lib)]
            argv += ["--python", sys.executable, "--link-mode", "copy", *args]
        else:
            argv = [sys.executable, "-m", "pip", "install", "--quiet"]
            argv += ["--disable-pip-version-check", "--no-compile", "--no-warn-script-location"]
            argv += ["--target", str(self.lib), *args]
        self.runner.run(f"installing {what} ({self.kind} pip install)", argv)


def _distributions(lib: Path) -> list[dict[str, Any]]:
    dists = []
    for info in sorted(lib.glob("*.dist-info")):
        meta = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        wheel = HeaderParser().parsestr(
            (info / "WHEEL").read_text(encoding="utf-8") if (info / "WHEEL").exists() else ""
        )
        has_ext = False
        rec = info / "RECORD"
        if rec.exists():
            for row in csv.reader(io.StringIO(rec.read_text(encoding="utf-8"))):
                if row and row[0].endswith(_NATIVE_SUFFIXES):
                    has_ext = True
                    break
        purelib = (wheel.get("Root-Is-Purelib", "true").strip().lower() == "true") and not has_ext
        dists.append(
            {
                "name": meta["Name"],
                "version": meta["Version"],
                "purelib": purelib,
                "has_extensions": has_ext,
                "tags": sorted(wheel.get_all("Tag") or []),
            }
        )
    return dists


# Files an installer writes that name the build machine: the temporary wheel path, uv's cache
# key with timestamps. Dropped (with their dist-info RECORD rows) so builds are reproducible.
_MACHINE_FILES = ("direct_url.json", "uv_cache.json")


def _strip_machine_specific(lib: Path) -> None:
    """Remove scripts (absolute shebangs), installer files naming this machine, the empty
    lock file ``uv pip install --target`` leaves in the target, old pycs."""
    shutil.rmtree(lib / "bin", ignore_errors=True)
    lock = lib / ".lock"
    if lock.is_file() and not lock.is_symlink() and lock.stat().st_size == 0:
        lock.unlink()
    for info in lib.glob("*.dist-info"):
        found = [info / name for name in _MACHINE_FILES if (info / name).exists()]
        for path in found:
            path.unlink()
        rec = info / "RECORD"
        if found and rec.exists():
            rows = [
                row
                for row in csv.reader(io.StringIO(rec.read_text(encoding="utf-8")))
                if row and not row[0].endswith(_MACHINE_FILES)
            ]
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(rows)
            rec.write_text(out.getvalue(), encoding="utf-8")
    for cache in list(lib.rglob("__pycache__")):
        shutil.rmtree(cache)


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.isdigit():
        raise UsageError("bad_config", f"SOURCE_DATE_EPOCH must be an integer, got {value!r}")
    return int(value)


def build(
    project_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    installer: str = "auto",
    progress: Callable[[str], None] | None = None,
    check_imports: bool = True,
) -> BuildResult:
    """Build a release tarball of the project. See the module docstring for the steps.
    ``check_imports=False`` skips importing the entry at build (for an app whose import
    needs what only the deploy host has)."""
    started = time.monotonic()
    say = progress or (lambda _msg: None)
    project = Path(project_dir).absolute()
    _pyproject, app = read_project(project)
    out = Path(out_dir).absolute() if out_dir else project / "dist"
    kind, uv = choose_installer(installer)
    sde = _source_date_epoch()
    created = sde if sde is not None else int(time.time())
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = str(created)
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    runner = _Runner(say, env)
    with tempfile.TemporaryDirectory(prefix="hotswap-build-") as tmp:
        wheels = Path(tmp, "wheel")
        stage = Path(tmp, "release")
        lib = stage / "lib"
        lib.mkdir(parents=True)
        if kind == "uv":
            assert uv is not None
            runner.run(
                "building the wheel (uv build)",
                [uv, "build", "--wheel", "--out-dir", str(wheels), str(project)],
            )
        else:
            runner.run(
                "building the wheel (pip wheel)",
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-q",
                    "-w",
                    str(wheels),
                    str(project),
                ],
            )
        built = sorted(wheels.glob("*.whl"))
        if len(built) != 1:
            raise ResourceError("build_failed", f"expected one wheel, the build made {len(built)}")
        added = preflight.server_requirements(app, preflight.wheel_requires(built[0]))
        for requirement, why in added:
            say(
                f"adding {requirement} to the release: {why}, which {app.distribution} does "
                "not list"
            )
        install = _Installer(runner, kind, uv, lib)
        install.run("the app and its dependencies", [str(built[0]), *(r for r, _ in added)])
        if check_imports:
            say(f"importing {app.entry} from the built tree ...")
            found = preflight.check(lib, app, env)
            missing = list(found.get("missing", []))
            if missing == [BRIDGE_MODULE]:
                say(
                    f"adding {BRIDGE_REQUIREMENT} to the release: {app.entry} is a WSGI app "
                    "and uvicorn serves it through this bridge"
                )
                install.run("the WSGI bridge", ["--no-deps", BRIDGE_REQUIREMENT])
            elif missing:
                raise UsageError(
                    "import_failed",
                    f"the release cannot import {', '.join(missing)} (server = "
                    f'"{app.server}"): add it to the project\'s dependencies',
                    key="server",
                )
            if app.server == "waitress" and found.get("interface") == "asgi":
                raise UsageError(
                    "bad_config",
                    f'server = "waitress" serves WSGI apps; {app.entry} is an ASGI app '
                    '(use server = "uvicorn" or "hypercorn")',
                    key="server",
                )
            if "interface" in found:
                say(
                    f"{app.entry} is a{'' if found['interface'] == 'wsgi' else 'n'} "
                    f"{found['interface'].upper()} app"
                )
        _strip_machine_specific(lib)
        runner.run(
            "compiling bytecode (checked-hash pycs)",
            # -d: record "lib/..." rather than the temporary build path as co_filename;
            # importlib rewrites it to the real path when it loads the module.
            [
                sys.executable,
                "-I",
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "-d",
                "lib",
                "--invalidation-mode",
                "checked-hash",
                str(lib),
            ],
        )
        say("writing RECORD and RELEASE.json ...")
        dists = _distributions(lib)
        app_dist = _find_app_distribution(dists, app.distribution)
        entries = record.scan_tree(stage)
        record_bytes = record.write(stage, entries)
        record_sha = hashlib.sha256(record_bytes).hexdigest()
        manifest = Manifest(
            {
                "format": FORMAT,
                "name": app_dist["name"],
                "version": app_dist["version"],
                "release_id": make_release_id(app_dist["version"], record_sha),
                "created": created,
                "builder": {"hotswap": hotswap.__version__, "installer": _tool_version(kind, uv)},
                "python": interpreter.identity(),
                "distributions": dists,
                "app": app.to_json(),
                "record": {
                    "sha256": record_sha,
                    "files": len(entries),
                    "bytes": record.total_bytes(entries.values()),
                },
            }
        )
        manifest.raw["release_id"] = release_id_for(manifest.raw)  # RECORD + app + python
        (stage / record.MANIFEST_NAME).write_bytes(manifest.dumps())
        out.mkdir(parents=True, exist_ok=True)
        safe_name = re.sub(r"[-_.]+", "_", manifest.name).lower()
        tarball = out / f"{safe_name}-{manifest.release_id}.tar.gz"
        say(f"writing {tarball.name} ...")
        digest = write_tarball(stage, tarball, mtime=created)
    result = BuildResult(tarball, digest, manifest, kind, time.monotonic() - started)
    say(f"built {tarball} ({manifest.record['files']} files) in {result.seconds:.1f}s")
    return result


def _find_app_distribution(dists: list[dict[str, Any]], name: str) -> dict[str, Any]:
    from packaging.utils import canonicalize_name  # PEP 503: runs of -_. are one -

    for dist in dists:
        if canonicalize_name(dist["name"]) == canonicalize_name(name):
            return dist
    raise ReleaseError("manifest_invalid", f"the build did not install the app's own {name!r}")


def _tool_version(kind: str, uv: str | None) -> str:
    argv = [uv, "--version"] if kind == "uv" and uv else [sys.executable, "-m", "pip", "--version"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return kind
    parts = out.split()
    return f"{kind} {parts[1]}" if len(parts) > 1 else kind
