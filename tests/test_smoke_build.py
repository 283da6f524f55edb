from __future__ import annotations

from tests.conftest import BuildRelease


def test_fixture_release_builds(build_release: BuildRelease) -> None:
    result = build_release("1.0.0")
    assert result.tarball.is_file()
    assert result.manifest.version == "1.0.0"
