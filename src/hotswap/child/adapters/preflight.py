"""What a generation will import, tried at build, so a mistake fails the build, not the boot.

``hotswap build`` calls :func:`server_requirements` before it installs the app (the server of
``[tool.hotswap] server`` goes into the same install, so a Flask or Django project that does
not list uvicorn still gets it), and :func:`check` once the tree is installed: a fresh
interpreter (``python -I -S -B``) with the built ``lib/`` first on ``sys.path`` and only
hotswap's own package after it, as a generation boots, imports the entry, the cutover hooks,
the services and the server, and says whether the entry is ASGI or WSGI. A typo in any target,
or an exception at import, is ``import_failed`` naming the key, with the traceback's tail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from hotswap.child.adapters.interface import BRIDGE_MODULE
from hotswap.errors import UsageError
from hotswap.release.config import AppConfig

SERVER_REQUIREMENTS = {
    "uvicorn": "uvicorn>=0.30",
    "hypercorn": "hypercorn>=0.17",
    "waitress": "waitress>=3",
}
CHECK_TIMEOUT = 120.0
_MARK = "hotswap-preflight: "

_PROGRAM = r"""
import json, os, site, sys, traceback
lib, runtime, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
site.addsitedir(lib)
sys.path.append(runtime)
from hotswap.child.runtime import import_target
from hotswap.child.adapters.interface import resolve

def report(out):
    sys.stdout.flush()
    print("hotswap-preflight: " + json.dumps(out), flush=True)

result = {"missing": []}
for key, target in spec["targets"]:
    try:
        obj = import_target(target)
    except BaseException:
        report({"failed": key, "target": target, "error": traceback.format_exc()})
        sys.exit(1)
    if key == "entry" and spec["server"] != "callable":
        result["interface"] = resolve(spec["interface"], obj)
modules = list(spec["modules"])
if result.get("interface") == "wsgi" and spec["server"] == "uvicorn":
    modules.append(spec["bridge"])
for module in modules:
    try:
        __import__(module)
    except ImportError:
        result["missing"].append(module)
report(result)
"""


def _names(requires: list[str]) -> set[str]:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names: set[str] = set()
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.add(canonicalize_name(req.name))
    return names


def wheel_requires(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
                meta = HeaderParser().parsestr(zf.read(name).decode("utf-8"))
                return list(meta.get_all("Requires-Dist") or [])
    return []


def server_requirements(config: AppConfig, requires: list[str]) -> list[tuple[str, str]]:
    """``(requirement, why)`` to install beside the app: the configured server and, for an
    entry declared WSGI on uvicorn, the bridge, each one the project does not list itself."""
    listed = _names(requires)
    out = []
    server = SERVER_REQUIREMENTS.get(config.server)
    if server is not None and config.server not in listed:
        out.append((server, f'the configured server (server = "{config.server}")'))
    if config.interface == "wsgi" and config.server == "uvicorn" and BRIDGE_MODULE not in listed:
        from hotswap.child.adapters.interface import BRIDGE_REQUIREMENT

        out.append((BRIDGE_REQUIREMENT, 'the WSGI bridge (interface = "wsgi")'))
    return out


def _targets(config: AppConfig) -> list[tuple[str, str]]:
    targets = [("entry", config.entry)]
    for key in ("before_cutover", "after_cutover"):
        value = getattr(config, key)
        if value:
            targets.append((key, value))
    targets += [(f"services.{s.name}", s.entry) for s in config.services]
    return targets


def check(lib: Path, config: AppConfig, env: dict[str, str]) -> dict[str, Any]:
    """Import everything a generation of this tree imports; ``{"interface", "missing"}``."""
    import packaging

    import hotswap

    spec = {
        "targets": _targets(config),
        "server": config.server,
        "interface": config.interface,
        "modules": [config.server] if config.server in SERVER_REQUIREMENTS else [],
        "bridge": BRIDGE_MODULE,
    }
    with tempfile.TemporaryDirectory(prefix="hotswap-preflight-") as runtime:
        for package in (Path(hotswap.__file__).parent, Path(packaging.__file__).parent):
            os.symlink(package, Path(runtime, package.name))
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-B",
                    "-c",
                    _PROGRAM,
                    str(lib),
                    runtime,
                    json.dumps(spec),
                ],
                cwd=runtime,
                env={**config.env, **env, "HOTSWAP_PREFLIGHT": "1"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UsageError(
                "import_failed",
                f"importing {config.entry} took more than {CHECK_TIMEOUT:.0f}s at build "
                "(does the module do work at import that waits for something?)",
                key="entry",
            ) from None
    lines = [ln[len(_MARK) :] for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    if not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise UsageError(
            "import_failed",
            f"importing {config.entry} in the built tree ended the interpreter "
            f"(exit {proc.returncode}):\n{tail}",
            key="entry",
            output=tail,
        )
    result: dict[str, Any] = json.loads(lines[-1])
    if "failed" in result:
        key, target = result["failed"], result["target"]
        tail = "\n".join(str(result["error"]).splitlines()[-12:])
        raise UsageError(
            "import_failed",
            f"[tool.hotswap] {key} = {target!r} cannot be imported from the built release:\n{tail}",
            key=key,
            target=target,
            output=tail,
        )
    return result
