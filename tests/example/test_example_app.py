"""The self-deploying example in a real browser: headless Chromium (Debian's), Playwright, the
example under a real supervisor, real builds with ``hotswap build``.

- clicking a card rebuilds the app with that label and swaps to it blue-green: the page shows the
  new label, its live connection reconnects to the new generation, and the page's own counter of
  failed requests (a ``fetch`` every 100 ms) stays at zero;
- the hot-upgrade control changes the label inside the same process: the live connection (same
  id, no reconnect) and the in-memory visit counter survive, and the build's stylesheet, which
  changed with the label, is swapped into the open page without a reload;
- a second deploy while one runs is refused, on the page and with ``upgrade_in_progress``;
- a build that fails, and one that crashes at boot, show their log and leave the old release
  serving.

Screenshots go to ``artifacts/example/``. Every wait has a deadline (Playwright's ``expect``
timeouts, or ``wait_for``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hotswap
from tests.example.conftest import FIRST_LABEL, ExampleApp

pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed (pip install playwright)",
)
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEPLOY_MS = 150_000  # a build plus a swap, on two busy cores
SHORT_MS = 15_000


class DemoPage:
    """The example's page, read the way a user reads it (and through its own counters)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def text(self, element_id: str) -> str:
        return self.page.locator(f"#{element_id}").inner_text().strip()

    def number(self, element_id: str) -> int:
        return int(self.text(element_id))

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.page.evaluate("() => ({...window.hotswapDemo.stats})")
        return stats

    def card(self, label: str) -> Any:
        return self.page.locator(f'.card[data-label="{label}"]')

    def wait_connected(self) -> str:
        expect(self.page.locator("#live-text")).to_contain_text("live", timeout=SHORT_MS)
        return self.text("conn-id")

    def wait_requests(self, more_than: int) -> None:
        self.page.wait_for_function(
            f"() => window.hotswapDemo.stats.sent > {more_than}", timeout=SHORT_MS
        )

    def deploy_id(self) -> int:
        ident: int | None = self.page.evaluate(
            "() => window.hotswapDemo.deploy && window.hotswapDemo.deploy.id"
        )
        return ident or 0

    def start_deploy(self, control: Any) -> int:
        """Click a card or a drill; return the id of the deploy it started."""
        before = self.deploy_id()
        control.click()
        self.page.wait_for_function(
            f"() => (window.hotswapDemo.deploy || {{id: 0}}).id > {before}", timeout=SHORT_MS
        )
        return self.deploy_id()

    def wait_deploy(self, ident: int, state: str) -> None:
        """Wait until deploy ``ident`` is in ``state`` (as the page shows it)."""
        self.page.wait_for_function(
            f"() => {{ const d = window.hotswapDemo.deploy;"
            f" return !!d && d.id === {ident} && d.state === {json.dumps(state)}; }}",
            timeout=DEPLOY_MS,
        )
        expect(self.page.locator("#deploy-state")).to_have_text(state)

    def assert_no_failed_requests(self) -> None:
        stats = self.stats()
        assert stats["failed"] == 0, stats
        assert self.text("req-failed") == "0"


@pytest.fixture
def demo(browser: Any, example_app: ExampleApp) -> Iterator[DemoPage]:
    page = browser.new_page()
    page.set_default_timeout(SHORT_MS)
    demo = DemoPage(page)
    page.goto(example_app.url)
    demo.wait_connected()
    try:
        yield demo
        assert demo.errors == [], demo.errors
    finally:
        page.close()


def screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True, animations="disabled")


def accent(page: Page) -> str:
    """The page's ``--accent`` as the stylesheets in force set it."""
    value: str = page.evaluate(
        "() => getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()"
    )
    return value


def api_info(app: ExampleApp) -> dict[str, Any]:
    status, body = app.get("/api/info")
    assert status == 200, body
    info: dict[str, Any] = json.loads(body)
    return info


def test_card_swaps_blue_green_with_zero_failed_requests_then_hot_upgrade_keeps_the_connection(
    demo: DemoPage, example_app: ExampleApp, artifacts: Path
) -> None:
    page = demo.page
    before = example_app.status()["active"]
    expect(page.locator("#label")).to_have_text(FIRST_LABEL)
    assert demo.text("generation") == str(before["generation"])
    first_conn = demo.text("conn-id")
    demo.wait_requests(5)

    # -- blue-green: a new process; the live connection reconnects to it ---------------------
    green = demo.start_deploy(demo.card("Ship the green build"))
    expect(page.locator("#flash")).to_contain_text("Deploying", timeout=SHORT_MS)
    sent_at_click = demo.stats()["sent"]
    expect(page.locator("#label")).to_have_text("Ship the green build", timeout=DEPLOY_MS)
    expect(page.locator("#label")).to_be_visible()
    demo.wait_deploy(green, "done")
    after = example_app.status()["active"]
    assert after["generation"] == before["generation"] + 1
    assert after["pid"] != before["pid"]
    expect(page.locator("#generation")).to_have_text(str(after["generation"]))
    expect(page.locator("#conn-gen")).to_have_text(str(after["generation"]), timeout=SHORT_MS)
    assert demo.text("conn-id") != first_conn
    assert demo.number("reconnects") >= 1
    expect(page.locator("#flash")).to_contain_text("Now serving “Ship the green build”")
    expect(page.locator(".step.done")).to_have_count(7)  # build + the six swap phases
    expect(page.locator("#log")).to_contain_text("drain: done")
    stats = demo.stats()
    assert stats["sent"] > sent_at_click + 10, stats  # the page kept firing during the deploy
    assert stats["duringSwap"] > 0, stats  # from unpack to drain, the page kept going
    demo.assert_no_failed_requests()
    screenshot(page, artifacts / "example-blue-green.png")

    # -- hot upgrade: the same process; the connection and the memory stay -------------------
    for _ in range(3):  # other visitors: the in-memory counter of this process moves
        assert example_app.get("/")[0] == 200
    expect(page.locator("#visits")).to_have_text("3", timeout=SHORT_MS)
    conn, reconnects, pid = demo.text("conn-id"), demo.text("reconnects"), demo.text("pid")
    accent_before = accent(page)
    page.evaluate("() => { window.notReloaded = true; }")
    page.locator("#mode-hot").click()
    expect(page.locator("#mode-hot")).to_have_attribute("aria-pressed", "true")
    purple = demo.start_deploy(demo.card("Promote the purple zip"))
    expect(page.locator("#label")).to_have_text("Promote the purple zip", timeout=DEPLOY_MS)
    expect(page.locator("#label")).to_be_visible()
    demo.wait_deploy(purple, "done")
    expect(page.locator("#flash")).to_contain_text("hot upgrade")
    assert demo.text("conn-id") == conn
    assert demo.text("reconnects") == reconnects
    assert demo.text("pid") == pid
    assert demo.text("visits") == "3"
    info = api_info(example_app)
    assert info["label"] == "Promote the purple zip" and info["visits"] == 3
    assert info["pid"] == after["pid"] and info["live"] >= 1
    status = example_app.status()
    assert status["recent"][0]["how"] == "hot"
    assert status["active"]["generation"] == after["generation"]
    assert status["active"]["release"] == info["release"] == status["current"]
    # the build's stylesheet changed with the label: the open page swapped its <link> to the
    # new sheet (a cache-busting ?v=) through the same live connection, without reloading
    page.wait_for_function(
        f"() => window.hotswapDemo.styleSwaps.includes({json.dumps(info['style'])})",
        timeout=SHORT_MS,
    )
    assert page.evaluate("() => window.notReloaded") is True
    hrefs = page.evaluate("() => [...document.querySelectorAll('link#theme')].map(l => l.href)")
    assert len(hrefs) == 1 and hrefs[0].endswith(f"/static/theme.css?v={info['style']}"), hrefs
    served = example_app.get("/static/theme.css")[1].decode()
    assert accent(page) in served and accent(page) != accent_before, (accent_before, served)
    demo.assert_no_failed_requests()
    screenshot(page, artifacts / "example-hot-upgrade.png")


def test_a_broken_build_is_reported_the_old_release_serves_and_a_second_deploy_is_refused(
    demo: DemoPage, example_app: ExampleApp, artifacts: Path
) -> None:
    page = demo.page
    before = example_app.status()
    label = demo.text("label")
    broken = demo.start_deploy(page.locator("#drill-build"))
    demo.wait_deploy(broken, "building")

    # one deploy at a time: refused at once, on the page and through the service API
    demo.card("Deploy the blue release").click()
    expect(page.locator("#flash")).to_contain_text("Refused [upgrade_in_progress]")
    expect(page.locator("#flash")).to_be_visible()
    with pytest.raises(hotswap.UsageError) as refused:
        hotswap.call_service(
            "deployer", "deploy", "Deploy the blue release", state_dir=example_app.state_dir
        )
    assert refused.value.code == "upgrade_in_progress"

    demo.wait_deploy(broken, "failed")
    expect(page.locator("#flash")).to_contain_text("[build_failed]")
    expect(page.locator("#flash")).to_contain_text("keeps serving")
    expect(page.locator("#log")).to_contain_text("SyntaxError")
    expect(page.locator('.step[data-phase="build"]')).to_have_class("step failed")
    assert demo.text("label") == label
    after = example_app.status()
    assert after["active"]["pid"] == before["active"]["pid"]
    assert after["current"] == before["current"]
    assert api_info(example_app)["label"] == label
    demo.assert_no_failed_requests()
    screenshot(page, artifacts / "example-build-failed.png")


def test_a_build_that_crashes_at_boot_is_refused_and_the_old_release_serves(
    demo: DemoPage, example_app: ExampleApp
) -> None:
    page = demo.page
    before = example_app.status()
    label = demo.text("label")
    crashing = demo.start_deploy(page.locator("#drill-boot"))
    demo.wait_deploy(crashing, "failed")
    expect(page.locator("#flash")).to_contain_text("[boot_failed]")
    expect(page.locator("#log")).to_contain_text("RuntimeError: this build crashes on boot")
    expect(page.locator('.step[data-phase="boot"]')).to_have_class("step failed")
    assert demo.text("label") == label
    after = example_app.status()
    assert after["active"]["pid"] == before["active"]["pid"]
    assert after["current"] == before["current"]
    assert api_info(example_app)["label"] == label
    demo.assert_no_failed_requests()
