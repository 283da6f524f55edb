"""``check(old, new)``: the verdict ``hotswap check OLD NEW`` prints, offline (nothing imported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import ReleaseError, UsageError
from hotswap.hot import check
from hotswap.hot.testing import write_release
from hotswap.release import interpreter

APP = {"distribution": "demo", "entry": "demo.main:app", "server": "uvicorn"}
PURE = {"purelib": True, "has_extensions": False, "tags": ["py3-none-any"]}


def _dists(**versions: str) -> list[dict[str, Any]]:
    out = [{"name": "demo", "version": versions.pop("demo", "1"), **PURE}]
    for name, version in versions.items():
        native = name.startswith("native")
        out.append(
            {
                "name": name,
                "version": version,
                "purelib": not native,
                "has_extensions": native,
                "tags": ["py3-none-any"],
            }
        )
    return out


def _rel(
    tmp: Path,
    tag: str,
    files: dict[str, str] | None = None,
    *,
    version: str = "1",
    dists: list[dict[str, Any]] | None = None,
    app: dict[str, Any] | None = None,
    python: dict[str, Any] | None = None,
) -> Path:
    return write_release(
        tmp / tag,
        files if files is not None else {"demo/__init__.py": "", "demo/main.py": "X = 1\n"},
        name="demo",
        version=version,
        distributions=dists if dists is not None else _dists(demo=version, attrs="23.1"),
        app=app or APP,
        python=python,
    )


def _codes(tmp: Path, **kw: Any) -> set[str]:
    old = _rel(tmp, "old")
    new = _rel(tmp, "new", **kw)
    return {r.code for r in check(old, new).reasons}


def test_new_version_of_the_app_itself_is_fine(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = _rel(
        tmp_path,
        "new",
        {"demo/__init__.py": "", "demo/main.py": "X = 2\n"},
        version="2",
        dists=_dists(demo="2", attrs="23.1"),
    )
    verdict = check(old, new)
    assert verdict.ok and verdict.modules_changed == ("demo.main",)
    assert "hot upgrade possible" in str(verdict)


def test_interpreter_mismatch_refused(tmp_path: Path) -> None:
    other = {**interpreter.identity(), "cache_tag": "cpython-399", "magic": "00000000"}
    assert _codes(tmp_path, python=other) == {"interpreter"}


def test_interpreter_minor_version_change_refused(tmp_path: Path) -> None:
    here = interpreter.identity()
    other = {**here, "version": "3.99.0"}
    assert _codes(tmp_path, python=other) == {"interpreter"}


@pytest.mark.parametrize("how", ["added", "changed", "removed"])
def test_native_extension_added_changed_or_removed_refused(tmp_path: Path, how: str) -> None:
    base = {"demo/__init__.py": "", "demo/main.py": "X = 1\n"}
    so = "demo/_fast.cpython-311-x86_64-linux-gnu.so"
    old_files = base if how == "added" else {**base, so: "ELF-1"}
    new_files = {"added": {**base, so: "ELF-1"}, "changed": {**base, so: "ELF-2"}}.get(how, base)
    old = _rel(tmp_path, "old", old_files)
    new = _rel(tmp_path, "new", new_files)
    reasons = check(old, new).reasons
    assert [r.code for r in reasons] == ["native_extension"] and how in reasons[0].message


def test_dependency_version_change_refused(tmp_path: Path) -> None:
    assert _codes(tmp_path, dists=_dists(attrs="24.1")) == {"dependencies"}


def test_dependency_added_or_removed_refused(tmp_path: Path) -> None:
    assert _codes(tmp_path, dists=_dists(attrs="23.1", idna="3.7")) == {"dependencies"}
    assert _codes(tmp_path / "b", dists=_dists()) == {"dependencies"}


def test_pure_dependency_change_allowed_with_the_option(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = _rel(tmp_path, "new", dists=_dists(attrs="24.1"))
    verdict = check(old, new, allow_dependency_changes=True)
    assert verdict.ok and any("attrs" in w for w in verdict.warnings)


def test_dependency_with_extensions_refused_even_with_the_option(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old", dists=_dists(attrs="23.1", native_lib="1"))
    new = _rel(tmp_path, "new", dists=_dists(attrs="23.1", native_lib="2"))
    reasons = check(old, new, allow_dependency_changes=True).reasons
    assert [r.code for r in reasons] == ["dependencies"] and "compiled" in reasons[0].message


@pytest.mark.parametrize(
    "change",
    [
        {"entry": "demo.other:app"},
        {"server": "callable"},
        {"listeners": ["http", "admin"]},
    ],
)
def test_entry_point_server_or_listeners_change_refused(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    assert _codes(tmp_path, app={**APP, **change}) == {"wiring"}


def test_class_layout_changes_refused_offline(tmp_path: Path) -> None:
    old = _rel(
        tmp_path,
        "old",
        {
            "demo/__init__.py": "",
            "demo/main.py": "class A: pass\nclass S:\n    __slots__ = ('a',)\nclass C(A): pass\n",
        },
    )
    new = _rel(
        tmp_path,
        "new",
        {
            "demo/__init__.py": "",
            "demo/main.py": "class A: pass\nclass S:\n    __slots__ = ('b',)\nclass C: pass\n",
        },
    )
    reasons = check(old, new).reasons
    assert [r.code for r in reasons] == ["class_layout", "class_layout"]
    assert {r.subject for r in reasons} == {"demo.main.S", "demo.main.C"}


def test_different_app_refused(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = write_release(tmp_path / "other", {"x/__init__.py": ""}, name="other")
    assert "different_app" in {r.code for r in check(old, new).reasons}


def test_verdict_is_json_and_says_use_blue_green(tmp_path: Path) -> None:
    verdict = check(_rel(tmp_path, "old"), _rel(tmp_path, "new", dists=_dists(attrs="9")))
    data = json.loads(json.dumps(verdict.to_json()))
    assert data["ok"] is False and data["verdict"] == "use a blue-green upgrade"
    assert data["reasons"][0]["code"] == "dependencies"
    assert "use a blue-green upgrade, because" in str(verdict)


def test_missing_release_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        check(tmp_path / "nope", _rel(tmp_path, "new"))
    assert err.value.code == "release_not_found"


def test_tampered_file_is_a_release_error(tmp_path: Path) -> None:
    old = _rel(tmp_path, "old")
    new = _rel(tmp_path, "new", {"demo/__init__.py": "", "demo/main.py": "X = 2\n"})
    (new / "lib" / "demo" / "main.py").write_text("X = 'tampered'\n")
    with pytest.raises(ReleaseError) as err:
        check(old, new)
    assert err.value.code == "hash_mismatch"
