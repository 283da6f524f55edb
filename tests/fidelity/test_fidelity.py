"""Real patch releases from PyPI, hot-upgraded in a process holding their objects, compared with a
fresh import of the new release: an accepted upgrade must never differ (promise 12), and a
refused or failed one must leave the process as it was (promise 9). The broad run over every
pair is ``bench/bench_fidelity.py``; these are the pairs with small wheels."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from tests.fidelity import fingerprint, harness
from tests.fidelity.pairs import PAIRS, Pair

FAST = [p for p in PAIRS if p.fast]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheels")


@pytest.mark.slow
@pytest.mark.parametrize("pair", FAST, ids=lambda p: f"{p.dist}-{p.old}-{p.new}")
def test_accepted_upgrade_equals_a_fresh_import(pair: Pair, wheels: Path, tmp_path: Path) -> None:
    result = harness.run_pair(pair, tmp_path, wheels)
    print(harness.table([result]))
    assert result.outcome in ("equivalent", "refused", "failed"), (
        f"{pair.label}: {result.outcome} {result.reason}\n" + "\n".join(result.differences)
    )


def test_fast_pairs_cover_five_libraries() -> None:
    assert len({p.dist for p in FAST}) >= 5
    assert len({p.dist for p in PAIRS}) >= 15


def _module(name: str, source: str, path: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__file__ = path
    exec(compile(source, path, "exec"), mod.__dict__)
    return mod


def _describe(source: str, lib: str) -> dict[str, object]:
    d = fingerprint.Describer(["/r1/lib", "/r2/lib"])
    mod = _module("m", source, f"{lib}/m.py")
    return {"modules": {"m": d.module(mod)}, "classes": d.classes, "refs": {}, "instances": {}}


SOURCE = """
LIMIT = 3
def f(x, y=LIMIT):
    return x + y
class C:
    n = 1
    def g(self):
        return self.n
"""


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (("return x + y", "return x - y"), "m.f: code differ"),
        (("y=LIMIT", "y=4"), "m.f: defaults differ"),
        (("return self.n", "return -self.n"), "m.C.g: code differ"),
        (("    n = 1", "    n = 2"), "m.C.n: 1 vs fresh 2"),
        (("LIMIT = 3", "LIMIT = 3\nEXTRA = 1"), "m.EXTRA: missing after the upgrade"),
    ],
)
def test_the_comparison_sees_each_kind_of_difference(change: tuple[str, str], expect: str) -> None:
    old = _describe(SOURCE, "/r1/lib")
    new = _describe(SOURCE.replace(*change), "/r2/lib")
    assert expect in harness.compare(old, new, old)[0]


def test_the_same_code_from_two_releases_compares_equal() -> None:
    old, new = _describe(SOURCE, "/r1/lib"), _describe(SOURCE, "/r2/lib")
    assert harness.compare(old, new, old) == ([], 0)
