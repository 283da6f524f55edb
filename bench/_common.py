"""Shared helpers for the swap benchmarks (bench_swap.py, bench_throughput.py). Not a test.

- build the fixture app (tests/fixtures/app) into v1/v2 release tarballs with the real
  ``hotswap build``;
- run the hotswap supervisor (``hotswap run``), or a plain uvicorn serving the same release's
  ``lib/`` directly (optionally on an SO_REUSEPORT socket: the seed's method);
- run wrk (installing the Debian package if it is missing) and parse its summary;
- small statistics and table helpers.

Every process started here is tracked by :class:`Reaper` and killed (process group, then any
generation pid the supervisor reported) when the benchmark ends, on errors too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_APP = ROOT / "tests" / "fixtures" / "app"
PY = sys.executable
HOST = "127.0.0.1"
SOURCE_DATE_EPOCH = "1700000000"
BACKLOG = 4096  # hotswap's listeners use the same


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    wrk = shutil.which("wrk")
    wrk_version = "absent"
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        wrk_version = (out.stdout + out.stderr).splitlines()[0].split(" Copyright")[0]
    commit = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True, text=True, timeout=10,
        ).stdout.split("\n")  # fmt: skip
        changed = [line[3:] for line in dirty if line.strip()]
        commit = head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")
    return {
        "hotswap": commit,
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg (1/5/15 min)": load,
        "wrk": wrk_version,
    }


def print_machine(info: dict[str, str]) -> None:
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))


# -- releases --------------------------------------------------------------------------------


def stamp_project(dest: Path, version: str) -> Path:
    """Copy the fixture app to ``dest`` with ``version`` stamped in (as tests/conftest.py)."""
    shutil.copytree(FIXTURE_APP, dest, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    pyproject = dest / "pyproject.toml"
    pyproject.write_text(
        re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), flags=re.M)
    )
    for init in dest.glob("src/*/__init__.py"):
        init.write_text(re.sub(r'VERSION = ".*"', f'VERSION = "{version}"', init.read_text()))
    return dest


@dataclass
class Built:
    version: str
    tarball: Path
    release_id: str
    lib: Path  # the unpacked release's lib/ (for serving it without hotswap)


def build_releases(work: Path, versions: Sequence[str] = ("1.0.0", "2.0.0")) -> list[Built]:
    """Build the fixture app at each version and unpack each into ``work/plain-store``."""
    from hotswap.release.build import build
    from hotswap.release.store import ReleaseStore

    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = SOURCE_DATE_EPOCH
    store = ReleaseStore(work / "plain-store")
    out: list[Built] = []
    try:
        for version in versions:
            started = time.monotonic()
            project = stamp_project(work / f"project-{version}", version)
            result = build(project, work / "dist")
            release = store.unpack(result.tarball)
            out.append(Built(version, result.tarball, release.id, release.root / "lib"))
            log(f"built {result.tarball.name} in {time.monotonic() - started:.1f}s")
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old
    return out


@contextlib.contextmanager
def workdir(keep: str | None) -> Iterator[Path]:
    """A temporary work dir, or ``keep`` (kept afterwards; what a previous run of these
    benchmarks left in it is removed first: project-*, dist, plain-store, state*, *.log)."""
    if keep:
        from hotswap.release.store import remove_tree

        path = Path(keep).absolute()
        path.mkdir(parents=True, exist_ok=True)
        for pattern in ("project-*", "dist", "plain-store", "state*"):
            for old in path.glob(pattern):
                remove_tree(old)
        for old in path.glob("*.log"):
            old.unlink()
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-") as tmp:
        yield Path(tmp)


# -- processes -------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie of ours counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Reaper:
    """Every process a benchmark starts; :meth:`reap` ends those still running."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []
        self.extra: list[tuple[int, str]] = []  # (pid, text its cmdline must contain)

    def add(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        self.procs.append(proc)
        return proc

    def add_pid(self, pid: int, marker: str) -> None:
        """A process we did not spawn directly (a supervisor's generation)."""
        if (pid, marker) not in self.extra:
            self.extra.append((pid, marker))

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                log(f"pid {proc.pid} ignored SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for pid, marker in self.extra:
            if _alive(pid) and marker in _cmdline(pid):
                log(f"left-over pid {pid}: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.procs.clear()
        self.extra.clear()


def terminate(proc: subprocess.Popen[Any], timeout: float = 30.0) -> float:
    """SIGTERM ``proc`` and wait for it (SIGKILL after ``timeout``); seconds it took."""
    started = time.monotonic()
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} did not exit within {timeout}s of SIGTERM: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB (from /proc/<pid>/status)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            out[key] = int(value.split()[0])
    return out


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        return response.status, data if isinstance(data, dict) else {}
    finally:
        conn.close()


def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            http_get(port)
            return
        except (OSError, http.client.HTTPException) as e:
            last = e
            time.sleep(0.02)
    raise TimeoutError(f"nothing answered on port {port} within {timeout}s ({last})")


class SupervisorProc:
    """``hotswap run TARBALL --bind 127.0.0.1:PORT --state-dir DIR`` in its own session."""

    def __init__(
        self,
        reaper: Reaper,
        tarball: Path,
        port: int,
        state_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.reaper = reaper
        self.tarball = tarball
        self.port = port
        self.state_dir = state_dir
        self.log_path = log_path
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        import hotswap

        argv = [
            PY,
            "-c",
            "import sys; from hotswap.cli import main; sys.exit(main())",
            "run",
            str(self.tarball),
            "--bind",
            f"{HOST}:{self.port}",
            "--state-dir",
            str(self.state_dir),
        ]
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as out:
            self.proc = self.reaper.add(
                subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisor exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(Exception):
                status = hotswap.status(state_dir=self.state_dir)
                if status.get("active"):
                    self.note_generations(status)
                    wait_http(self.port, max(1.0, deadline - time.monotonic()))
                    return
            time.sleep(0.05)
        raise TimeoutError(f"supervisor not serving within {timeout}s: {self.tail()}")

    def note_generations(self, status: dict[str, Any]) -> None:
        for gen in status.get("generations", []):
            self.reaper.add_pid(int(gen["pid"]), str(self.state_dir))

    def upgrade(self, tarball: Path) -> dict[str, Any]:
        import hotswap

        result: dict[str, Any] = hotswap.upgrade(tarball, state_dir=self.state_dir)
        if result.get("pid"):
            self.reaper.add_pid(int(result["pid"]), str(self.state_dir))
        return result

    def status(self) -> dict[str, Any]:
        import hotswap

        status: dict[str, Any] = hotswap.status(state_dir=self.state_dir)
        return status

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.note_generations(self.status())
            terminate(self.proc, timeout=20.0)

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# The same app served by uvicorn alone: the release's lib/ first on sys.path (as hotswap's
# boot.py does: python -I -S, site.addsitedir), the same uvicorn.Config as hotswap's adapter,
# a listening socket we build ourselves (SO_REUSEADDR, plus SO_REUSEPORT for the seed's
# method), handed to ``Server.serve(sockets=[sock])``. One line "ready" is written on fd
# READY_FD once uvicorn has started (lifespan done, socket served).
# The socket is made with proto=IPPROTO_TCP on purpose: asyncio sets TCP_NODELAY on accepted
# connections only when the listener's ``sock.proto`` is IPPROTO_TCP, and a plain
# ``socket.socket(AF_INET, SOCK_STREAM)`` has proto 0, which costs every response a 40 ms
# Nagle/delayed-ACK stall (about 700 req/s instead of 7,000 here). hotswap's children get
# proto 6 because ``socket.socket(fileno=fd)`` reads it from the kernel.
UVICORN_SCRIPT = r"""
import asyncio, json, os, site, socket, sys
lib, host, port, reuseport, ready_fd, backlog, extra = sys.argv[1:8]
site.addsitedir(lib)
import uvicorn
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if reuseport == "1":
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind((host, int(port)))
sock.listen(int(backlog))
config = uvicorn.Config("fixture_app.main:app", lifespan="auto", access_log=False,
                        timeout_graceful_shutdown=None, log_level="info", **json.loads(extra))
server = uvicorn.Server(config)

async def main():
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.002)
    if server.started:
        os.write(int(ready_fd), b"ready\n")
    os.close(int(ready_fd))
    await task

factory = config.get_loop_factory() if hasattr(config, "get_loop_factory") else None
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
"""


class UvicornProc:
    """A plain uvicorn serving a release's lib/ on 127.0.0.1:PORT (no hotswap involved)."""

    def __init__(
        self,
        reaper: Reaper,
        lib: Path,
        port: int,
        log_path: Path,
        *,
        reuseport: bool,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or {}  # extra uvicorn.Config arguments
        self.reaper = reaper
        self.lib = lib
        self.port = port
        self.log_path = log_path
        self.reuseport = reuseport
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> float:
        """Start it and wait for its ready line; seconds from spawn to ready."""
        started = time.monotonic()
        r, w = os.pipe()
        argv = [
            PY, "-I", "-S", "-u", "-B", "-c", UVICORN_SCRIPT, str(self.lib), HOST,
            str(self.port), "1" if self.reuseport else "0", str(w), str(BACKLOG),
            json.dumps(self.config),
        ]  # fmt: skip
        try:
            with open(self.log_path, "ab") as out:
                self.proc = self.reaper.add(
                    subprocess.Popen(
                        argv,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        pass_fds=(w,),
                        start_new_session=True,
                    )
                )
            os.close(w)
            w = -1
            ready, _, _ = select.select([r], [], [], timeout)
            line = os.read(r, 64) if ready else b""
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        if line != b"ready\n":
            raise RuntimeError(f"uvicorn (pid {self.pid}) not ready in {timeout}s: {line!r}")
        return time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> float:
        return terminate(self.proc, timeout) if self.proc is not None else 0.0


# -- wrk -------------------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    """The path of wrk; installs the Debian package when missing (and says so)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        log("wrk is not installed and cannot be installed here (no apt-get, or not root)")
        return None
    for argv in ([apt, "install", "-y", "wrk"], [apt, "update"], [apt, "install", "-y", "wrk"]):
        log(f"wrk is missing: running {' '.join(argv)}")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"  failed: {e}")
            continue
        log(f"  exit status {done.returncode}")
        found = shutil.which("wrk")
        if found:
            log(f"installed wrk at {found}")
            return found
    log("could not install wrk: continuing without it")
    return None


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


@dataclass
class WrkResult:
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0
    raw: str = ""

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx


def parse_wrk(text: str) -> WrkResult:
    result = WrkResult(raw=text)
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if match:
        result.requests = int(match.group(1))
        result.seconds = _ms(match.group(2) + match.group(3)) / 1000
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        result.rps = float(match.group(1))
    for pct, value in re.findall(r"^\s+(\d+)%\s+([\d.]+(?:us|ms|s|m))\s*$", text, flags=re.M):
        result.latency_ms[f"p{pct}"] = _ms(value)
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if match:
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, match.groups()), strict=True)
        )
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if match:
        result.non_2xx = int(match.group(1))
    return result


class Wrk:
    """One wrk run in its own process group; :meth:`stop` ends it early (SIGINT: it still
    prints its summary)."""

    def __init__(
        self,
        reaper: Reaper,
        wrk: str,
        port: int,
        *,
        connections: int,
        seconds: float,
        threads: int = 1,
        path: str = "/",
    ) -> None:
        self.argv = [
            wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "5s", "--latency", f"http://{HOST}:{port}{path}",
        ]  # fmt: skip
        self.seconds = seconds
        self.reaper = reaper
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Wrk:
        self.proc = self.reaper.add(
            subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
        return self

    def wait(self) -> WrkResult:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        return parse_wrk(out or "")

    def stop(self) -> WrkResult:
        assert self.proc is not None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def run(self) -> WrkResult:
        return self.start().wait()


# -- statistics and tables ---------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile by nearest rank (values need not be sorted); nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v == v]
    return statistics.median(data) if data else float("nan")


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 1) -> str:
    """A GitHub-flavoured Markdown table (readable as plain text too)."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]  # fmt: skip

    def line(parts: Sequence[str]) -> str:
        return "| " + " | ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def free_port() -> int:
    from hotswap.testing.load import free_port as _free_port

    return _free_port()
