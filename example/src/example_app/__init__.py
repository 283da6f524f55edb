"""hotswap's self-deploying example app.

- :mod:`example_app.main`: the Starlette app (the page, its API, the live event stream);
- :mod:`example_app.deployer`: the ``deployer`` service, which lives under the supervisor,
  rebuilds the app with a new label and swaps to it (blue-green or hot);
- :mod:`example_app.builder`: stamps a copy of the project and runs ``hotswap build``;
- :mod:`example_app._build`: the build-time constants, written anew for every build;
- ``theme.css``: the stylesheet, written anew for every build (an accent colour drawn from the
  label). A hot upgrade that changes it runs :func:`__data_change__`, which points
  ``STYLE_PATH`` at the new file and ``STYLE_VERSION`` at its hash; the page's live event
  stream carries the version, and open pages swap their ``<link>`` to
  ``/static/theme.css?v=<version>`` without reloading (as fly_deploy's ``hot_reload_css``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


STYLE_PATH = Path(__file__).with_name("theme.css")
STYLE_VERSION = _version(STYLE_PATH)


def __data_change__(files: list[str], extra: object) -> None:
    """hotswap calls this in the window of a hot upgrade that changed data files of this
    package (paths in the new release); the package namespace is journaled, so a failed
    upgrade puts the old stylesheet back."""
    global STYLE_PATH, STYLE_VERSION
    for name in files:
        if Path(name).name == "theme.css":
            STYLE_PATH = Path(name)
            STYLE_VERSION = _version(STYLE_PATH)
