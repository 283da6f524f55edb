"""Django, built for real: a hot upgrade that changes what Django copied when it first read it
(a setting, ``urlpatterns``) is refused with ``derived_state`` and the old release keeps
serving; Django holds every setting in ``django.conf.settings`` and the URL patterns in its
resolver, so rebinding the module's names would not change what it serves."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BuildRelease
from tests.e2e.harness import supervisor
from tests.servers.conftest import DJANGOAPP

SETTINGS, URLS = "src/mysite/settings.py", "src/mysite/urls.py"
CHANGES: dict[str, tuple[str, str, Callable[[str], str], str]] = {
    "a list setting": (
        "2.1.0",
        SETTINGS,
        lambda t: t.replace('"127.0.0.1"]', '"127.0.0.1", "localhost"]'),
        "mysite.settings.ALLOWED_HOSTS",
    ),
    "a string setting": (
        "2.2.0",
        SETTINGS,
        lambda t: t.replace("fixture-only-not-secret", "fixture-only-rotated"),
        "mysite.settings.SECRET_KEY",
    ),
    "a URL pattern": (
        "2.3.0",
        URLS,
        lambda t: t.replace('path("slow", slow)]', 'path("slow", slow), path("extra/", health)]'),
        "mysite.urls.urlpatterns",
    ),
}


def _version(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": "127.0.0.1"})
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body
        return str(body["version"])
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_django_copied_at_first_read_is_refused_and_the_old_code_serves(
    tmp_path: Path, build_release: BuildRelease, change: str
) -> None:
    version, rel, edit, subject = CHANGES[change]
    v1 = build_release("1.0.0", source=DJANGOAPP)
    v2 = build_release(
        version, source=DJANGOAPP, extra_files={rel: edit((DJANGOAPP / rel).read_text())}
    )
    with supervisor(v1.tarball, tmp_path) as sup:
        assert _version(sup.port) == "1.0.0"  # settings read, URL patterns resolved
        done = sup.cli("hot-upgrade", str(v2.tarball), "--json")
        assert done.returncode == 4, done.stdout + done.stderr
        error = json.loads(done.stdout)["error"]
        assert error["code"] == "hot_upgrade_refused"
        reasons = {(r["code"], r.get("subject")) for r in error["details"]["reasons"]}
        assert ("derived_state", subject) in reasons, reasons
        assert _version(sup.port) == "1.0.0"
        assert sup.status()["current"] == v1.manifest.release_id
