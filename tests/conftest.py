"""Shared fixtures: real releases of the fixture app, built once per test session.

``build_release(version, installer="uv")`` copies ``tests/fixtures/app`` to a temporary
project, stamps the version into its pyproject and package, and runs the real
``hotswap build``. Results are cached per (version, installer, extra) for the session.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotswap.release.build import BuildResult, build

# pytest keeps only a user's three newest numbered temp dirs, removing older ones, even those of
# a run still going: two checkouts testing at once on one machine delete each other's tmp_path.
# Each checkout gets its own temp root (set before pytest computes its base temp).
# Short: unix socket paths under tmp_path must stay within AF_UNIX's 108 bytes.
_TEMPROOT = Path("/tmp") / ("hs-" + hashlib.sha256(bytes(Path(__file__).parent)).hexdigest()[:6])
_TEMPROOT.mkdir(mode=0o700, exist_ok=True)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(_TEMPROOT))

FIXTURE_APP = Path(__file__).parent / "fixtures" / "app"
SOURCE_DATE_EPOCH = "1700000000"

BuildRelease = Callable[..., BuildResult]


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def stamp_project(
    dest: Path,
    version: str,
    extra_files: dict[str, str] | None = None,
    tool: dict[str, object] | None = None,
    source: Path = FIXTURE_APP,
) -> Path:
    """Copy a fixture project to ``dest`` with ``version`` stamped in and ``tool`` overriding
    keys of its ``[tool.hotswap]`` table; returns the project dir."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    pyproject = dest / "pyproject.toml"
    text = re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), flags=re.M)
    for key, value in (tool or {}).items():
        line = f"{key} = {_toml(value)}"
        if re.search(rf"^{key} = ", text, flags=re.M):
            text = re.sub(rf"^{key} = .*$", line, text, flags=re.M)
        else:
            text = text.replace("[tool.hotswap]\n", f"[tool.hotswap]\n{line}\n")
    pyproject.write_text(text)
    for init in dest.glob("src/*/__init__.py"):
        init.write_text(re.sub(r'VERSION = ".*"', f'VERSION = "{version}"', init.read_text()))
    for rel, text in (extra_files or {}).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return dest


@pytest.fixture(scope="session")
def build_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildRelease]:
    cache: dict[tuple[object, ...], BuildResult] = {}
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = SOURCE_DATE_EPOCH

    def _build(
        version: str,
        installer: str = "uv",
        extra_files: dict[str, str] | None = None,
        tool: dict[str, object] | None = None,
        source: Path = FIXTURE_APP,
    ) -> BuildResult:
        key = (
            version,
            installer,
            tuple(sorted((extra_files or {}).items())),
            repr(sorted((tool or {}).items())),
            str(source),
        )
        if key not in cache:
            base = tmp_path_factory.mktemp(f"app-{version}-{installer}")
            project = stamp_project(base / "project", version, extra_files, tool, source)
            cache[key] = build(project, base / "dist", installer=installer)
        return cache[key]

    yield _build
    if old is None:
        os.environ.pop("SOURCE_DATE_EPOCH", None)
    else:
        os.environ["SOURCE_DATE_EPOCH"] = old


@pytest.fixture(scope="session")
def release_v1(build_release: BuildRelease) -> BuildResult:
    return build_release("1.0.0")


@pytest.fixture(scope="session")
def release_v2(build_release: BuildRelease) -> BuildResult:
    return build_release("2.0.0")


@pytest.fixture(scope="session")
def release_v3(build_release: BuildRelease) -> BuildResult:
    return build_release("3.0.0")
