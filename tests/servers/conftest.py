"""Releases of the stack fixture apps (tests/fixtures/*), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.release.build import BuildResult
from tests.conftest import BuildRelease

FIXTURES = Path(__file__).parent.parent / "fixtures"
WSAPP = FIXTURES / "wsapp"
FLASKAPP = FIXTURES / "flaskapp"
DJANGOAPP = FIXTURES / "djangoapp"
FASTAPIAPP = FIXTURES / "fastapiapp"


@pytest.fixture(scope="session")
def flask_releases(build_release: BuildRelease) -> list[BuildResult]:
    return [build_release(v, source=FLASKAPP) for v in ("1.0.0", "2.0.0")]
