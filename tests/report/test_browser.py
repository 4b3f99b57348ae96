"""The HTML report in a real browser: Debian's headless Chromium driven by Playwright.

Screenshots at desktop (1280) and phone (390) width are saved in the test's tmp dir; the
table has one row per host; filtering and sorting work; printing hides the controls and
opens the evidence; and no request other than the page itself is ever made.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.realserver import require_tool, tool_path

from relayguard.report import write_report

pytestmark = [pytest.mark.realserver, pytest.mark.timeout(300)]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=tool_path("chromium"), args=CHROMIUM_FLAGS, timeout=60_000
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Opened:
    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@pytest.fixture
def report_page(browser: Any, tmp_path: Path, fleet_doc: dict[str, Any]) -> Iterator[Opened]:
    url = (write_report(fleet_doc, tmp_path / "reports") / "report.html").as_uri()
    context = browser.new_context(viewport=DESKTOP, service_workers="block")
    context.set_default_timeout(30_000)
    page = context.new_page()
    opened = Opened(page, url)

    def route(r: Any) -> None:  # every request passes here: only the page itself may load
        opened.requests.append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            opened.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on("console", lambda m: m.type in ("error", "warning") and opened.problems.append(m.text))
    page.on("pageerror", lambda e: opened.problems.append(str(e)))
    page.goto(url, wait_until="load")
    try:
        yield opened
        assert opened.blocked == [], "the page tried to load something"
        assert opened.requests == [url]
        assert opened.problems == [], "console errors (a CSP violation shows here)"
    finally:
        context.close()


def _visible_rows(page: Any) -> list[dict[str, str]]:
    result: list[dict[str, str]] = page.eval_on_selector_all(
        "#fleet tbody tr",
        "rows => rows.filter(r => r.offsetParent !== null)"
        "            .map(r => ({host: r.dataset.host, status: r.dataset.status,"
        "                        platform: r.dataset.platform}))",
    )
    return result


def test_screenshots_at_desktop_and_phone_width(report_page: Opened, tmp_path: Path):
    page = report_page.page
    desktop, phone = tmp_path / "report-desktop.png", tmp_path / "report-phone.png"
    page.screenshot(path=str(desktop))
    page.screenshot(path=str(tmp_path / "report-desktop-full.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(phone))
    page.screenshot(path=str(tmp_path / "report-phone-full.png"), full_page=True)
    for shot in (desktop, phone):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # At phone width nothing makes the page scroll sideways, and the fleet is still one
    # card per host with its status readable.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert len(_visible_rows(page)) == 8
    assert page.locator("#fleet tbody tr").first.locator(".badge").first.is_visible()
    print(f"screenshots: {desktop} {phone}")


def test_one_row_per_host_and_counts(report_page: Opened, fleet_doc: dict[str, Any]):
    page = report_page.page
    rows = _visible_rows(page)
    assert [r["status"] for r in rows] == [h["status"] for h in fleet_doc["hosts"]]
    assert page.locator("#shown").inner_text() == "8 of 8 hosts shown"
    assert page.locator(".card.status-remediated .count").inner_text() == "3"
    assert page.title().startswith("relayguard enforce report 20250301T120000Z-3f9a0c")


def test_filtering_by_status_hides_the_others(report_page: Opened):
    page = report_page.page
    page.select_option("#filter-status", "remediated")
    rows = _visible_rows(page)
    assert [r["status"] for r in rows] == ["remediated"] * 3
    assert page.locator("#fleet tbody tr:not([hidden])").count() == 3
    assert page.locator("article.host:not([hidden])").count() == 3
    assert page.locator("#shown").inner_text() == "3 of 8 hosts shown"
    page.select_option("#filter-platform", "exchange55")
    assert [r["host"] for r in _visible_rows(page)] == [
        "ex55-sp2.corp.example",
        "ex55-dnr.corp.example",
    ]
    page.select_option("#filter-status", "")
    page.select_option("#filter-platform", "postfix")
    assert {r["platform"] for r in _visible_rows(page)} == {"postfix"}
    page.select_option("#filter-platform", "")
    page.click(".card.status-failed")  # the overview cards filter too
    assert [r["host"] for r in _visible_rows(page)] == ["exse-fail.corp.example"]
    assert page.get_attribute(".card.status-failed", "aria-pressed") == "true"
    page.fill("#filter-host", "legacy")
    assert _visible_rows(page) == []
    page.click(".card.status-failed")
    assert [r["host"] for r in _visible_rows(page)] == ["mx-legacy.branch.example"]


def test_sorting_by_column(report_page: Opened):
    page = report_page.page
    # Natural order: numbers inside names compare as numbers (ex55 before ex2016).
    names = [
        "ex55-dnr.corp.example",
        "ex55-sp2.corp.example",
        "ex2016-rb.corp.example",
        "ex2019.corp.example",
        "exse-fail.corp.example",
        "mx-legacy.branch.example",
        "pf-ok.corp.example",
        "pf-open.corp.example",
    ]
    page.click("#fleet thead th:nth-child(1) button")
    assert [r["host"] for r in _visible_rows(page)] == names
    assert page.get_attribute("#fleet thead th:nth-child(1)", "aria-sort") == "ascending"
    page.click("#fleet thead th:nth-child(1) button")
    assert [r["host"] for r in _visible_rows(page)] == names[::-1]
    page.click("#fleet thead th:nth-child(3) button")  # status: worst first
    assert [r["status"] for r in _visible_rows(page)][:3] == [
        "failed",
        "rolled_back",
        "unreachable",
    ]


def test_print_layout(report_page: Opened, tmp_path: Path):
    page = report_page.page
    page.emulate_media(media="print")
    assert not page.locator(".filters").is_visible()
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert page.locator("details:not([open])").count() == 0  # evidence printed open
    page.pdf(path=str(tmp_path / "report.pdf"), format="A4")
    assert (tmp_path / "report.pdf").read_bytes()[:5] == b"%PDF-"
    page.evaluate("window.dispatchEvent(new Event('afterprint'))")
    assert page.locator("details.transcript:not([open])").count() > 0


def test_hostile_banner_is_inert(report_page: Opened):
    page = report_page.page
    banner = page.locator("#host-6 code.banner").first.inner_text()
    assert "<script>alert('banner')</script>" in banner and "\\x1b[31mred" in banner
    assert page.evaluate("document.scripts.length") == 1
    assert page.locator("#host-6 img").count() == 0
