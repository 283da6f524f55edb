"""Fixtures for the example's browser test: Debian's Chromium, the first release of the example,
the example running under a real supervisor, and a headless browser pointed at it.

Chromium comes from Debian (``/usr/bin/chromium``), installed here with apt-get when it is
missing and we run as root; Playwright drives it through ``executable_path`` (its own browser
download does not work on machines without general internet access, and is never attempted).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hotswap
from hotswap.testing.load import free_port, wait_http
from tests.conftest import SOURCE_DATE_EPOCH
from tests.e2e.harness import Running, start_supervisor, stop_and_check, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "example"
ARTIFACTS = REPO / "artifacts" / "example"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FIRST_LABEL = "Hello from the test"


def _install_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0:
        pytest.skip(
            "/usr/bin/chromium is missing and only root can install it "
            "(apt-get install -y chromium)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    assert CHROMIUM.exists(), "apt-get installed chromium but /usr/bin/chromium is missing"


@pytest.fixture(scope="session")
def chromium() -> Path:
    _install_chromium()
    return CHROMIUM


@pytest.fixture(scope="module")
def first_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's first release, built like start.sh builds it (the real hotswap build)."""
    out = tmp_path_factory.mktemp("example-first")
    env = {
        **os.environ,
        "PYTHONPATH": str(EXAMPLE / "src"),
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "example_app.builder",
            "--label",
            FIRST_LABEL,
            "--build",
            "0",
            "--source",
            str(EXAMPLE),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tarball = Path(done.stdout.strip().splitlines()[-1])
    assert tarball.is_file(), done.stdout
    return tarball


@dataclass
class ExampleApp:
    running: Running
    url: str
    pids: set[int] = field(default_factory=set)

    @property
    def state_dir(self) -> Path:
        return self.running.state_dir

    def status(self) -> dict[str, Any]:
        status = hotswap.status(state_dir=self.state_dir)
        for proc in [*status["generations"], *status.get("services", [])]:
            if proc.get("pid"):
                self.pids.add(int(proc["pid"]))
        return status

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.running.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def example_app(
    first_release: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleApp]:
    """The example under a real supervisor on a free loopback port, as start.sh runs it; on
    exit: stopped with SIGTERM, and no generation, service or listener left behind."""
    state = tmp_path_factory.mktemp("example-run") / "state"
    port = free_port()
    running = start_supervisor(
        first_release,
        state,
        port=port,
        wait=False,
        env={"DEMO_SOURCE_DIR": str(EXAMPLE), "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
    )
    app = ExampleApp(running, f"http://127.0.0.1:{port}/")
    try:
        try:
            wait_http("127.0.0.1", port, timeout=90)
        except TimeoutError:
            raise AssertionError(f"the example never served:\n{running.log()[-3000:]}") from None
        wait_for(lambda: not app.status()["upgrading"], what="the first boot to finish")
        yield app
    finally:
        with contextlib.suppress(Exception):
            app.status()  # records the pids of every generation and service still known
        stop_and_check(running, app.pids)
        with pytest.raises(ConnectionRefusedError):
            app.get("/health")


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    """A headless Chromium context (an empty profile), driven by Playwright."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the playwright package is not installed (pip install playwright)",
    )
    profile = tempfile.mkdtemp(prefix="example-chromium-")
    try:
        with sync_api.sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(chromium),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
