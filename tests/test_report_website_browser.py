"""The report page's Website section in real headless Chromium (tests.browser_support), against
the running service and the fake Plausible: its figures, a long page path that wraps instead of
widening a phone's screen, the chart with its visitors panel, and the section when Plausible fails,
each kept as a screenshot under tests/artefacts/ and checked for what it shows."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from app.core.database import Database
from app.web import create_app
from tests.browser_support import launched_chromium
from tests.conftest import API_TOKEN
from tests.fake_plausible import API_KEY, FakePlausible
from tests.live_server import free_port, serve
from tests.report_seed import DAY, seed, seed_settings
from tests.schedule_support import phoenix

ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
LONG_PATH = "/blog/ceramic_planters_in_winter_" + "0123456789" * 15  # no break opportunity anywhere
ALERT_RED = (192, 57, 43)  # .bad { color: #c0392b }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


def open_report(browser: Browser, url: str, width: int) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": 900}, extra_http_headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    response = page.goto(f"{url}/reports/daily?date={DAY}")
    assert response is not None and response.status == 200
    return page


def reddish_pixels(png: bytes) -> int:
    raw = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    pixels = zip(raw[0::3], raw[1::3], raw[2::3], strict=True)
    return sum(1 for pixel in pixels if all(abs(got - want) < 40 for got, want in zip(pixel, ALERT_RED, strict=True)))


def test_the_website_section_in_chromium(
    browser: Browser, db: Database, sql: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    with FakePlausible(timezone="Europe/Berlin") as plausible:
        plausible.visit(phoenix(DAY, 9), "u1", "/", "/pricing", source="Google", duration=75)
        plausible.visit(phoenix(DAY, 10), "u2", LONG_PATH, source="Newsletter")
        plausible.visit(phoenix(DAY - timedelta(days=1), 10), "u3", "/")
        plausible.visit(phoenix(DAY - timedelta(days=7), 10), "u4", "/about", "/")
        port = free_port()
        settings = seed_settings(
            database_url,
            opsdesk_data_dir=tmp_path,
            public_base_url=f"http://127.0.0.1:{port}",
            plausible_api_key=API_KEY,
            plausible_site_id=plausible.site_id,
            plausible_base_url=plausible.url,
        )
        seed(db, sql, settings)
        ARTEFACTS.mkdir(exist_ok=True)
        with serve(create_app(settings, db), port=port) as url:
            page = open_report(browser, url, 1100)
            try:
                section = page.locator("#website")
                rows = section.locator("table").first.locator("tbody tr")
                assert rows.count() == 5
                assert rows.first.locator("td").all_inner_texts() == ["Visitors", "2", "1", "+100%", "1", "+100%"]
                assert rows.nth(4).locator("td").all_inner_texts()[:2] == ["Visit duration", "38s"]
                assert section.locator("h3").all_inner_texts() == ["Top pages", "Top sources"]
                assert LONG_PATH in section.locator("td.path").all_inner_texts()
                chart = page.locator("#chart img")
                size = chart.evaluate("image => [image.complete, image.naturalWidth, image.naturalHeight]")
                assert size == [True, 960, 820]  # decoded, with the visitors panel
                shot = section.screenshot(path=str(ARTEFACTS / "daily-report-website.png"))
                box = section.bounding_box()
                width, height = Image.open(io.BytesIO(shot)).size
                assert box is not None and abs(width - box["width"]) <= 2 and abs(height - box["height"]) <= 2
                assert reddish_pixels(shot) == 0  # nothing reads as an alarm
                page.screenshot(path=str(ARTEFACTS / "daily-report-with-website.png"), full_page=True)
            finally:
                page.context.close()

            phone = open_report(browser, url, 390)
            try:
                # the long path wraps inside its cell: the section never widens the page
                website = phone.locator("#website")
                assert website.evaluate("section => section.scrollWidth <= section.clientWidth")
                website.screenshot(path=str(ARTEFACTS / "daily-report-website-phone.png"))
            finally:
                phone.context.close()

            plausible.has_stats_api = False  # the plan lost the Stats API: the section says so, in red
            failed = open_report(browser, url, 1100)
            try:
                warning = failed.locator("#website p.bad")
                assert warning.inner_text().startswith("The website's numbers are missing from this report: ")
                assert "does not include the Stats API" in warning.inner_text()
                assert failed.locator("#actions").is_visible()  # the rest of the report is all there
                shot = failed.locator("#website").screenshot(path=str(ARTEFACTS / "daily-report-website-missing.png"))
                assert reddish_pixels(shot) > 50
                size = failed.locator("#chart img").evaluate("image => [image.naturalWidth, image.naturalHeight]")
                assert size == [960, 600]
            finally:
                failed.context.close()
