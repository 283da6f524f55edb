"""``hotswap build``: deterministic tarballs, their ``.sha256``, the manifest, and clear
failures (bad ``[tool.hotswap]``, a build or install that fails)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import HotswapError, ResourceError, UsageError
from hotswap.release import interpreter, record
from hotswap.release.build import BuildResult, build, read_project
from hotswap.release.config import AppConfig
from hotswap.release.manifest import RELEASE_ID, Manifest
from hotswap.release.store import ReleaseStore
from tests.conftest import SOURCE_DATE_EPOCH, BuildRelease, stamp_project


def _rebuild(tmp_path: Path, installer: str, monkeypatch: pytest.MonkeyPatch) -> BuildResult:
    """A second, independent build of the fixture app at 1.0.0, in another directory."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    project = stamp_project(tmp_path / "elsewhere" / "project", "1.0.0")
    return build(project, tmp_path / "out", installer=installer)


@pytest.mark.parametrize("installer", ["uv", pytest.param("pip", marks=pytest.mark.slow)])
def test_same_inputs_and_source_date_epoch_give_byte_identical_tarballs(
    installer: str,
    build_release: BuildRelease,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = build_release("1.0.0", installer)
    second = _rebuild(tmp_path, installer, monkeypatch)
    assert first.tarball != second.tarball
    assert second.tarball.name == first.tarball.name
    assert second.tarball.read_bytes() == first.tarball.read_bytes()
    assert (
        second.tarball.with_name(second.tarball.name + ".sha256").read_text()
        == first.tarball.with_name(first.tarball.name + ".sha256").read_text()
    )
    assert first.installer == second.installer == installer


def test_release_id_depends_on_content_not_on_build_time(
    release_v1: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another SOURCE_DATE_EPOCH changes the mtimes and ``created``, so other bytes, but the
    release id names the content (RECORD), which is the same."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(SOURCE_DATE_EPOCH) + 86_400))
    project = stamp_project(tmp_path / "project", "1.0.0")
    later = build(project, tmp_path / "out", installer="uv")
    assert later.manifest.release_id == release_v1.manifest.release_id
    assert later.manifest.created == release_v1.manifest.created + 86_400
    assert later.sha256 != release_v1.sha256


def test_sha256sum_accepts_the_sidecar(release_v1: BuildResult) -> None:
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("no sha256sum on this machine")
    proc = subprocess.run(
        [sha256sum, "-c", release_v1.tarball.name + ".sha256"],
        cwd=release_v1.tarball.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{release_v1.tarball.name}: OK"
    digest = hashlib.sha256(release_v1.tarball.read_bytes()).hexdigest()
    assert release_v1.sha256 == digest


def test_tarball_is_normalised(release_v1: BuildResult) -> None:
    """Sorted members, regular files and dirs only, fixed mtime, uid/gid 0 without names,
    modes 0644/0755; a gzip header with mtime 0 and no file name."""
    raw = release_v1.tarball.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] & 0x08 == 0  # FNAME flag: no file name stored
    assert raw[4:8] == b"\0\0\0\0"  # MTIME
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=io.BytesIO(raw))) as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert names[:2] == [record.RECORD_NAME, record.MANIFEST_NAME]
    for info in infos:
        assert info.isfile() or info.isdir(), info.name
        assert info.mtime == int(SOURCE_DATE_EPOCH)
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")
        assert info.mode in ((0o755,) if info.isdir() else (0o644, 0o755)), info.name


def test_tarball_name_is_distribution_and_release_id(release_v1: BuildResult) -> None:
    m = release_v1.manifest
    assert release_v1.tarball.name == f"fixture_app-{m.release_id}.tar.gz"
    assert RELEASE_ID.match(m.release_id)
    assert m.release_id.startswith("1.0.0-")


def test_manifest_describes_the_release(release_v1: BuildResult) -> None:
    with tarfile.open(release_v1.tarball) as tar:
        manifest_file = tar.extractfile(record.MANIFEST_NAME)
        record_file = tar.extractfile(record.RECORD_NAME)
        assert manifest_file is not None and record_file is not None
        raw: dict[str, Any] = json.loads(manifest_file.read())
        rec = record_file.read()
        file_names = {i.name for i in tar.getmembers() if i.isfile()}
    manifest = Manifest(raw)
    assert raw == release_v1.manifest.raw
    assert (manifest.name, manifest.version, manifest.created) == (
        "fixture-app",
        "1.0.0",
        int(SOURCE_DATE_EPOCH),
    )
    here = interpreter.identity()
    for key in (*interpreter.MUST_EQUAL, "version", "ext_suffix"):
        assert manifest.python[key] == here[key], key
    assert manifest.python["magic"] == importlib.util.MAGIC_NUMBER.hex()
    dists = {d["name"].lower(): d for d in manifest.distributions}
    assert {"fixture-app", "uvicorn", "h11", "click"} <= set(dists)
    assert dists["fixture-app"] == {
        "name": "fixture-app",
        "version": "1.0.0",
        "purelib": True,
        "has_extensions": False,
        "tags": ["py3-none-any"],
    }
    assert manifest.app["entry"] == "fixture_app.main:app"
    assert manifest.app["server"] == "uvicorn"
    assert manifest.app["health_path"] == "/health"
    assert manifest.app["boot_timeout"] == 30.0
    assert manifest.app["shutdown_timeout"] == 10.0
    assert manifest.app["before_cutover"] == "fixture_app.hooks:before_cutover"
    entries = record.loads(rec)
    assert manifest.record == {
        "sha256": hashlib.sha256(rec).hexdigest(),
        "files": len(entries),
        "bytes": record.total_bytes(entries.values()),
    }
    assert set(entries) | {record.RECORD_NAME, record.MANIFEST_NAME} == file_names
    assert not any(n.startswith("lib/bin/") for n in file_names)
    assert not any(n.endswith(("direct_url.json", "uv_cache.json")) for n in file_names)


def test_source_date_epoch_that_is_not_an_integer_is_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    project = stamp_project(tmp_path / "project", "1.0.0")
    with pytest.raises(UsageError) as caught:
        build(project, tmp_path / "out")
    assert caught.value.code == "bad_config"
    assert "SOURCE_DATE_EPOCH" in caught.value.message


# -- [tool.hotswap] -------------------------------------------------------------------------

GOOD_TABLE = 'entry = "app.main:app"\nserver = "uvicorn"\n'


def _project(tmp_path: Path, table: str | None, project: str = 'name = "demo"') -> Path:
    text = f'[project]\n{project}\nversion = "1.0"\n'
    if table is not None:
        text += f"\n[tool.hotswap]\n{table}"
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


CONFIG_ERRORS = {
    "unknown-key": (GOOD_TABLE + "boot_timout = 10\n", "unknown_config_key", "boot_timout"),
    "no-entry": ('server = "uvicorn"\n', "no_entry_point", "entry"),
    "entry-not-module-attr": ('entry = "app.main"\n', "bad_config", "entry"),
    "entry-not-a-string": ("entry = 3\n", "bad_config", "entry"),
    "server-unknown": (GOOD_TABLE.replace("uvicorn", "gunicorn"), "bad_config", "server"),
    "boot-timeout-zero": (GOOD_TABLE + "boot_timeout = 0\n", "bad_config", "boot_timeout"),
    "boot-timeout-string": (GOOD_TABLE + 'boot_timeout = "60"\n', "bad_config", "boot_timeout"),
    "shutdown-timeout-bool": (
        GOOD_TABLE + "shutdown_timeout = true\n",
        "bad_config",
        "shutdown_timeout",
    ),
    "health-timeout-huge": (
        GOOD_TABLE + "health_timeout = 86400\n",
        "bad_config",
        "health_timeout",
    ),
    "health-path-relative": (GOOD_TABLE + 'health_path = "health"\n', "bad_config", "health_path"),
    "hook-not-module-function": (
        GOOD_TABLE + 'before_cutover = "hooks"\n',
        "bad_config",
        "before_cutover",
    ),
    "services-malformed": (
        GOOD_TABLE + 'services = [{ name = "x" }]\n',
        "bad_config",
        "services",
    ),
    "listeners-duplicate": (
        GOOD_TABLE + 'listeners = ["http", "http"]\n',
        "bad_config",
        "listeners",
    ),
    "interface-unknown": (GOOD_TABLE + 'interface = "rsgi"\n', "bad_config", "interface"),
    "threads-zero": (GOOD_TABLE + "threads = 0\n", "bad_config", "threads"),
    "health-host-with-space": (
        GOOD_TABLE + 'health_host = "my host"\n',
        "bad_config",
        "health_host",
    ),
    "ws-drain-grace-negative": (
        GOOD_TABLE + "ws_drain_grace = -1\n",
        "bad_config",
        "ws_drain_grace",
    ),
    "uvicorn-unknown-key": (
        GOOD_TABLE + "[tool.hotswap.uvicorn]\nacess_log = true\n",
        "unknown_config_key",
        "uvicorn.acess_log",
    ),
    "uvicorn-port-is-ours": (
        GOOD_TABLE + "[tool.hotswap.uvicorn]\nport = 8000\n",
        "unknown_config_key",
        "uvicorn.port",
    ),
    "uvicorn-wrong-type": (
        GOOD_TABLE + '[tool.hotswap.uvicorn]\nproxy_headers = "yes"\n',
        "bad_config",
        "uvicorn.proxy_headers",
    ),
    "hypercorn-unknown-key": (
        GOOD_TABLE + "[tool.hotswap.hypercorn]\nworkers = 4\n",
        "unknown_config_key",
        "hypercorn.workers",
    ),
    "env-reserved-name": (
        GOOD_TABLE + '[tool.hotswap.env]\nHOTSWAP_STATE_DIR = "/tmp"\n',
        "bad_config",
        "env",
    ),
    "env-not-a-string": (GOOD_TABLE + "[tool.hotswap.env]\nWORKERS = 4\n", "bad_config", "env"),
}


@pytest.mark.parametrize("name", list(CONFIG_ERRORS))
def test_bad_tool_hotswap_is_refused_naming_the_key(name: str, tmp_path: Path) -> None:
    table, code, key = CONFIG_ERRORS[name]
    with pytest.raises(UsageError) as caught:
        read_project(_project(tmp_path, table))
    assert caught.value.code == code
    assert key in caught.value.message
    assert caught.value.details.get("key") == key


def test_good_tool_hotswap_is_accepted(tmp_path: Path) -> None:
    _data, app = read_project(_project(tmp_path, GOOD_TABLE + "services = []\n"))
    assert (app.entry, app.server, app.distribution) == ("app.main:app", "uvicorn", "demo")
    assert (app.interface, app.health_host, app.ws_drain_grace) == ("auto", "localhost", 1.0)


def test_server_settings_and_env_round_trip_through_the_manifest(tmp_path: Path) -> None:
    table = (
        GOOD_TABLE
        + 'interface = "wsgi"\nthreads = 4\nhealth_host = "example.com"\n'
        + '[tool.hotswap.uvicorn]\nproxy_headers = true\nforwarded_allow_ips = ["10.0.0.1"]\n'
        + 'headers = [["X-Frame-Options", "DENY"]]\n'
        + '[tool.hotswap.env]\nLOG_FORMAT = "json"\n'
    )
    _data, app = read_project(_project(tmp_path, table))
    assert app.server_settings() == {
        "proxy_headers": True,
        "forwarded_allow_ips": ["10.0.0.1"],
        "headers": [["X-Frame-Options", "DENY"]],
    }
    assert app.env == {"LOG_FORMAT": "json"}
    assert AppConfig.from_json(json.loads(json.dumps(app.to_json()))) == app


def test_no_tool_hotswap_is_no_entry_point(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        build(_project(tmp_path, None), tmp_path / "out")
    assert caught.value.code == "no_entry_point"
    assert "[tool.hotswap]" in caught.value.message
    assert not (tmp_path / "out").exists()


def test_no_pyproject_is_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        build(tmp_path, tmp_path / "out")
    assert caught.value.code == "not_a_project"


def test_pyproject_that_is_not_toml_is_bad_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\nname = 'demo'\n")
    with pytest.raises(UsageError) as caught:
        build(tmp_path, tmp_path / "out")
    assert caught.value.code == "bad_config"
    assert "pyproject.toml is not valid TOML" in caught.value.message


def test_project_without_name_is_bad_config(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        read_project(_project(tmp_path, GOOD_TABLE, project='description = "x"'))
    assert caught.value.code == "bad_config"
    assert caught.value.details["key"] == "name"


# -- real builds that fail ------------------------------------------------------------------


def _failing_build(tmp_path: Path, **extra: str) -> HotswapError:
    project = stamp_project(tmp_path / "project", "1.0.0", extra_files=extra)
    with pytest.raises(HotswapError) as caught:
        build(project, tmp_path / "out", installer="uv")
    assert not list(tmp_path.glob("out/*.tar.gz"))  # a failed build leaves no tarball
    return caught.value


def test_syntax_error_in_the_app_is_build_failed_with_the_tail(tmp_path: Path) -> None:
    error = _failing_build(tmp_path, **{"src/fixture_app/broken.py": "def broken(:\n"})
    assert isinstance(error, ResourceError)
    assert error.code == "build_failed"
    assert "compiling bytecode" in error.message
    assert "broken.py" in error.details["output"]
    assert "SyntaxError" in error.details["output"]


def test_dependency_that_cannot_be_found_is_build_failed_with_the_tail(tmp_path: Path) -> None:
    pyproject = '"uvicorn>=0.30"'
    project = stamp_project(tmp_path / "project", "1.0.0")
    path = project / "pyproject.toml"
    path.write_text(path.read_text().replace(pyproject, '"uvicorn>=999"'))
    with pytest.raises(ResourceError) as caught:
        build(project, tmp_path / "out", installer="uv")
    assert caught.value.code == "build_failed"
    assert "installing the app and its dependencies" in caught.value.message
    assert "uvicorn" in caught.value.details["output"]
    assert not list(tmp_path.glob("out/*.tar.gz"))


def test_invalid_project_metadata_is_build_failed(tmp_path: Path) -> None:
    project = stamp_project(tmp_path / "project", "1.0.0")
    path = project / "pyproject.toml"
    path.write_text(path.read_text().replace('version = "1.0.0"', 'version = "one point oh"'))
    with pytest.raises(ResourceError) as caught:
        build(project, tmp_path / "out", installer="uv")
    assert caught.value.code == "build_failed"
    assert "building the wheel" in caught.value.message
    assert "one point oh" in caught.value.details["output"]


# -- what a generation imports is tried at build ---------------------------------------------

TCPAPP = Path(__file__).parent.parent / "fixtures" / "tcpapp"


@pytest.mark.parametrize(
    ("tool", "key"),
    [
        ({"entry": "tcp_app.sever:serve"}, "entry"),
        ({"entry": "tcp_app.server:sreve"}, "entry"),
        ({"after_cutover": "tcp_app.server:after"}, "after_cutover"),
        ({"services": [{"name": "jobs", "entry": "tcp_app.jobs:Jobs"}]}, "services.jobs"),
    ],
    ids=["entry-module", "entry-attr", "hook", "service"],
)
def test_a_typo_in_what_a_generation_imports_fails_the_build(
    tmp_path: Path, tool: dict[str, object], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    project = stamp_project(tmp_path / "project", "1.0.0", tool=tool, source=TCPAPP)
    with pytest.raises(UsageError) as caught:
        build(project, tmp_path / "out", installer="uv")
    assert caught.value.code == "import_failed"
    assert caught.value.details["key"] == key
    assert f"{key} = " in caught.value.message
    assert "Error" in caught.value.details["output"]  # the traceback's last line
    assert not list(tmp_path.glob("out/*.tar.gz"))


WSGI_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""


@pytest.mark.slow
def test_a_wsgi_project_that_lists_no_server_gets_uvicorn_and_the_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Flask or Django project does not list uvicorn: build adds it and says so, and the
    WSGI entry gets the bridge, so the release boots instead of failing at import."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    project = stamp_project(
        tmp_path / "project",
        "1.0.0",
        tool={"entry": "tcp_app.wsgi:app", "server": "uvicorn"},
        extra_files={"src/tcp_app/wsgi.py": WSGI_APP},
        source=TCPAPP,
    )
    said: list[str] = []
    result = build(project, tmp_path / "out", installer="uv", progress=said.append)
    names = {d["name"].lower() for d in result.manifest.distributions}
    assert {"uvicorn", "a2wsgi"} <= names
    assert any(m.startswith("adding uvicorn>=") and "server" in m for m in said), said
    assert any(m.startswith("adding a2wsgi>=") and "WSGI" in m for m in said), said
    assert "tcp_app.wsgi:app is a WSGI app" in said


@pytest.mark.slow
def test_release_id_names_the_config_too(
    release_v1: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild that only changes ``[tool.hotswap]`` (health_path) gets another id, so the
    store unpacks it rather than answering "already unpacked" with the old config."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    project = stamp_project(tmp_path / "project", "1.0.0", tool={"health_path": "/ready"})
    changed = build(project, tmp_path / "out", installer="uv")
    assert changed.manifest.raw["record"] == release_v1.manifest.raw["record"]  # same files
    assert changed.manifest.release_id != release_v1.manifest.release_id
    store = ReleaseStore(tmp_path / "state")
    first = store.unpack(release_v1.tarball)
    second = store.unpack(changed.tarball)
    assert second.id == changed.manifest.release_id != first.id
    assert store.get(first.id).manifest.app["health_path"] == "/health"
    assert store.get(second.id).manifest.app["health_path"] == "/ready"
