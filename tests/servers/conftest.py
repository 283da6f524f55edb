"""Releases of the stack fixture apps (tests/fixtures/*), built once per session."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures"
WSAPP = FIXTURES / "wsapp"
FLASKAPP = FIXTURES / "flaskapp"
DJANGOAPP = FIXTURES / "djangoapp"
FASTAPIAPP = FIXTURES / "fastapiapp"
