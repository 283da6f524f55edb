"""The copy of hotswap that generations import (decided: the supervisor provides it).

A generation must import hotswap's child side (bootstrap, adapters, the client API, the hot
upgrader) without seeing the supervisor's own site-packages. So at start the supervisor copies
its ``hotswap`` package and hotswap's one runtime dependency, ``packaging`` (pure Python; the hot
upgrader checks wheel tags with it), into
``<state>/runtime/<version>-<content hash>/``, precompiles it with checked-hash pycs, and writes
``boot.py`` beside it. Children run ``python -I -S -u -B <that>/boot.py``; the release's
``lib/`` comes first on ``sys.path``, this copy after it. The content hash means a changed
hotswap gets a fresh directory and a running child's files never change under it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import hotswap

BOOT = '''\
"""Generation boot: release lib first on sys.path, then the supervisor's hotswap copy."""
import os
import site
import sys

_runtime = os.path.dirname(os.path.abspath(__file__))
site.addsitedir(os.path.join(os.environ["HOTSWAP_RELEASE_DIR"], "lib"))
sys.path.append(_runtime)

from hotswap.child.bootstrap import main  # noqa: E402

sys.exit(main())
'''


def _packages() -> list[Path]:
    import packaging

    return [Path(hotswap.__file__).parent, Path(packaging.__file__).parent]


def _content_hash(packages: list[Path]) -> str:
    h = hashlib.sha256()
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            h.update(f"{package.name}/{path.relative_to(package).as_posix()}".encode())
            h.update(b"\0")
            h.update(path.read_bytes())
    h.update(BOOT.encode())
    return h.hexdigest()[:12]


def prepare(state_dir: Path) -> Path:
    """Return the runtime dir for this hotswap, creating it if needed (atomically)."""
    packages = _packages()
    target = state_dir / "runtime" / f"{hotswap.__version__}-{_content_hash(packages)}"
    if (target / "boot.py").is_file():
        return target
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        for package in packages:
            shutil.copytree(
                package,
                staging / package.name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )

        (staging / "boot.py").write_text(BOOT, encoding="utf-8")
        # compiled in a child process: compiling ~100 modules here would leave the
        # long-lived supervisor's heap several MB larger for good
        subprocess.run(
            [sys.executable, "-I", "-m", "compileall", "-q", "--invalidation-mode",
             "checked-hash", str(staging)],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "boot.py").is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
