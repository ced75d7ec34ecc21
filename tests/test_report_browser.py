"""The daily report's HTML page in real headless Chromium (Debian's `chromium`, driven by Playwright)
against the running service, on the seeded day: it renders, its chart decodes, it runs no script,
and a screenshot is kept under tests/artefacts/.

Without Chromium these tests skip, or fail where CI is set (tests.browser_support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser

from app.core.database import Database
from app.web import create_app
from tests.browser_support import launched_chromium, require_chromium
from tests.conftest import API_TOKEN
from tests.live_server import free_port, serve
from tests.report_seed import DAY, EXPECTED_TOTALS, seed, seed_settings

ARTEFACTS = Path(__file__).resolve().parent / "artefacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


def test_the_report_page_renders_with_its_chart(
    browser: Browser, db: Database, sql: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = seed_settings(database_url, opsdesk_data_dir=tmp_path, public_base_url=f"http://127.0.0.1:{port}")
    seed(db, sql, settings)
    with serve(create_app(settings, db), port=port) as url:
        context = browser.new_context(
            viewport={"width": 1100, "height": 900}, extra_http_headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda message: messages.append(message.text))
        try:
            response = page.goto(f"{url}/reports/daily?date={DAY}")
            assert response is not None and response.status == 200
            assert page.locator("h1").inner_text() == "Daily report for Wednesday 20 January 2027"
            for key in ("drafted", "auto_run", "succeeded", "failed", "unknown"):
                tile = page.locator(f'[data-count="{key}"] b').inner_text()
                assert tile == str(EXPECTED_TOTALS[key])
            chart = page.locator("#chart img")
            chart.wait_for()
            size = chart.evaluate("image => [image.complete, image.naturalWidth, image.naturalHeight]")
            assert size == [True, 960, 600]  # the browser decoded the PNG
            waiting = page.locator("#waiting tbody tr")
            assert waiting.count() == 3
            assert waiting.first.locator("a").get_attribute("href").startswith(f"{url}/approvals/")
            assert page.locator("#failures tbody tr").count() == 5
            assert page.evaluate("document.scripts.length") == 0
            ARTEFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTEFACTS / "daily-report.png"), full_page=True)
        finally:
            context.close()
    assert not [text for text in messages if "Content Security Policy" in text]


def test_without_chromium_a_browser_test_skips_or_fails_where_ci_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-chromium"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_chromium(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"needs Debian's chromium.*CI is set"):
        require_chromium(missing)
    assert require_chromium(tmp_path) == tmp_path  # there: used
