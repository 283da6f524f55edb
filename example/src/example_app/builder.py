"""Make a release of the example with a label baked in.

1. copy the example project into a scratch directory;
2. write ``src/example_app/_build.py`` (``LABEL``, ``BUILD``, ``VERSION``) and the stylesheet
   ``src/example_app/theme.css`` (an accent colour drawn from the label), and stamp the version
   into ``pyproject.toml``: build *n* is version ``1.0.n``, so every build is a new release;
3. run the real ``hotswap build`` in a subprocess, handing each line of its output to a
   callback as it comes.

The deployer service uses it for every deploy; ``start.sh`` uses it for the first release::

    python -m example_app.builder --label "Deploy the blue release" --out DIR

``fault`` makes a deliberately bad build, for the page's failure drills: ``"build"`` writes a
module that does not compile (``hotswap build`` fails while compiling bytecode), ``"boot"`` one
that raises when imported inside a generation (the build and its import check succeed, the new
generation dies at boot and the swap is refused).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

FAULTS = ("build", "boot")
MAX_LABEL = 80
BUILD_TIMEOUT = 600.0
# What is never copied into a build: local state, virtual environments, old outputs.
_IGNORE = shutil.ignore_patterns(
    ".state", ".venv", "dist", "build", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache"
)
# Variables that describe the running supervisor or generation; a build must not see them.
_PRIVATE_ENV = ("HOTSWAP", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")


class BuildFailed(Exception):
    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


def version_of(build: int) -> str:
    return f"1.0.{build}"


def check_label(label: object) -> str:
    """A label is any non-empty text of at most MAX_LABEL characters, on one line."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError("the label must be a non-empty string")
    label = label.strip()
    if len(label) > MAX_LABEL or "\n" in label or "\r" in label:
        raise ValueError(f"the label must be one line of at most {MAX_LABEL} characters")
    return label


def render_constants(label: str, build: int, fault: str | None = None) -> str:
    """The text of ``example_app/_build.py`` for one build."""
    lines = [
        '"""Build-time constants, written by example_app.builder for this build."""',
        "",
        f"LABEL = {label!r}",
        f"BUILD = {build}",
        f"VERSION = {version_of(build)!r}",
    ]
    if fault == "build":
        lines += [
            "",
            "# The 'Break the build' drill: this line is not Python, so compiling fails.",
            f'LABEL = "{label}',
        ]
    elif fault == "boot":
        lines += [
            "",
            "# The 'Crash on boot' drill: importing the app fails only where it runs (as an",
            "# app missing a production setting would), so the build and its import check pass",
            "# and the new generation dies at boot.",
            "import os",
            'if os.environ.get("HOTSWAP_CHILD"):',
            '    raise RuntimeError("this build crashes on boot, as asked")',
        ]
    elif fault is not None:
        raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
    return "\n".join(lines) + "\n"


def render_theme(label: str) -> str:
    """The text of ``example_app/theme.css`` for one build: an accent colour drawn from the
    label, so a hot upgrade to another label changes the stylesheet (which open pages swap in
    without reloading: see ``example_app.__data_change__``)."""
    hue = int(hashlib.sha256(label.encode("utf-8")).hexdigest()[:4], 16) % 360
    return (
        f"/* theme.css for {label!r}: written by example_app.builder */\n"
        f":root {{ --accent: hsl({hue}, 65%, 45%); }}\n"
        ".logo { background: var(--accent); }\n"
    )


def stamp_project(
    source: Path, dest: Path, *, label: str, build: int, fault: str | None = None
) -> Path:
    """Copy the project at ``source`` to ``dest`` with the label and build number baked in."""
    if not (source / "pyproject.toml").is_file():
        raise BuildFailed(f"{source} is not the example project (no pyproject.toml)")
    shutil.copytree(source, dest, ignore=_IGNORE)
    pyproject = dest / "pyproject.toml"
    text, count = re.subn(
        r'^version = ".*"$',
        f'version = "{version_of(build)}"',
        pyproject.read_text(encoding="utf-8"),
        count=1,
        flags=re.M,
    )
    if count != 1:
        raise BuildFailed(f"{pyproject} has no version line to stamp")
    pyproject.write_text(text, encoding="utf-8")
    constants = dest / "src" / "example_app" / "_build.py"
    constants.write_text(render_constants(label, build, fault), encoding="utf-8")
    theme = dest / "src" / "example_app" / "theme.css"
    theme.write_text(render_theme(label), encoding="utf-8")
    return dest


def hotswap_command() -> list[str]:
    """How to run the ``hotswap`` CLI: ``$DEMO_HOTSWAP`` if set, else this interpreter's."""
    override = os.environ.get("DEMO_HOTSWAP")
    if override:
        return [override]
    return [sys.executable, "-m", "hotswap.cli"]


def build_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV)}


def run_build(
    project: Path,
    out: Path,
    on_line: Callable[[str], None],
    *,
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
    timeout: float = BUILD_TIMEOUT,
) -> Path:
    """Run ``hotswap build PROJECT -o OUT``, streaming its output; return the tarball."""
    argv = [*hotswap_command(), "build", str(project), "-o", str(out)]
    proc = subprocess.Popen(
        argv,
        cwd=project,
        env=build_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    if on_start is not None:
        on_start(proc)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    last = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            on_line(line)
            if line.strip():
                last = line.strip()
        code = proc.wait()
    finally:
        watchdog.cancel()
    if code != 0:
        raise BuildFailed(f"hotswap build failed (exit {code}): {last}", code)
    tarballs = sorted(out.glob("*.tar.gz"))
    if len(tarballs) != 1:
        raise BuildFailed(f"expected one tarball in {out}, found {len(tarballs)}")
    return tarballs[0]


def default_source() -> Path:
    """The example project: ``$DEMO_SOURCE_DIR``, else the checkout this module sits in."""
    env = os.environ.get("DEMO_SOURCE_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_app.builder",
        description="Build a release of the example with a label baked in.",
    )
    parser.add_argument("--label", default=os.environ.get("DEMO_BUTTON_LABEL", "Hello"))
    parser.add_argument("--build", type=int, default=0, help="build number (version 1.0.N)")
    parser.add_argument("--out", required=True, type=Path, help="directory for the tarball")
    parser.add_argument("--source", type=Path, default=None, help="the example project")
    parser.add_argument("--fault", choices=FAULTS, default=None)
    args = parser.parse_args(argv)
    source = (args.source or default_source()).resolve()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="example-build-") as scratch:
        try:
            project = stamp_project(
                source,
                Path(scratch) / "project",
                label=check_label(args.label),
                build=args.build,
                fault=args.fault,
            )
            built = run_build(
                project, Path(scratch) / "out", lambda line: print(line, file=sys.stderr)
            )
        except (BuildFailed, ValueError) as e:
            print(f"example_app.builder: {e}", file=sys.stderr)
            return 1
        tarball = out / built.name
        for suffix in ("", ".sha256"):
            shutil.move(str(built) + suffix, str(tarball) + suffix)
    print(tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main())
