"""Running ``hotswap`` as a user does: a real process, a clean environment (no
``HOTSWAP_STATE_DIR`` unless given, ``XDG_STATE_HOME`` and ``HOME`` under the test's tmp dir so
no default ever reaches the real home)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def hotswap(
    *args: str | Path, home: Path, timeout: float = 120, stdout: Any = subprocess.PIPE, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("HOTSWAP_STATE_DIR", "HOTSWAP")}
    environ.update({"HOME": str(home), "XDG_STATE_HOME": str(home / "x")})
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "hotswap.cli", *map(str, args)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=timeout,
        env=environ,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)  # stdout is one JSON object, nothing else
    return data
