"""The review page in real headless Chromium (Debian's `chromium`, driven by Playwright) against the
running service: edit then approve from the page; a hostile draft runs no script; a screenshot.

CI installs the browser with `apt-get install -y chromium`; never `playwright install`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app.database import Database
from tests.link_support import Site, running_site

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
HOSTILE = ('<script>window.pwned = 1; document.title = "pwned"; console.log("PWNED script")</script>'
           '<img src=x onerror="window.pwned = 2; document.title = \'pwned\'; console.log(\'PWNED onerror\')">')

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield launched
        launched.close()


@pytest.fixture
def site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url) as running:
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 420, "height": 900})  # a phone-sized window
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def test_edit_the_draft_and_approve_from_the_review_link(site: Site, page: Page, sql: psycopg.Connection) -> None:
    action = site.submit(body="Followed up with ACME")
    review, approve = site.link(action), site.link(action, "approve")

    page.goto(review)
    assert page.locator("h1").inner_text() == "Log the follow-up"
    ARTEFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "review-page.png"), full_page=True)

    edit = page.locator("section#edit form")
    edit.locator('[name="edit.body"]').fill("Called ACME: they sign on Tuesday")
    edit.locator('input[name="reviewer"]').fill("ann")
    edit.get_by_role("button", name="Save edits and approve").click()
    page.wait_for_url(review)

    assert "Already decided by ann at" in page.locator("#outcome").inner_text()
    row = sql.execute("select status, decision, decided_by, modifications from actions where id = %s",
                      (action.id,)).fetchone()
    assert row == ("approved", "modified", "ann",
                   {"body": {"from": "Followed up with ACME", "to": "Called ACME: they sign on Tuesday"}})

    page.goto(approve)  # the Approve link again: the outcome, nothing to click
    assert "Already decided by ann at" in page.locator("#outcome").inner_text()
    assert page.locator("form").count() == 0


def test_approve_link_is_one_click_once_the_name_is_known(site: Site, page: Page, sql: psycopg.Connection) -> None:
    first, second = site.submit(summary="first"), site.submit(summary="second")
    page.goto(site.link(first, "approve"))
    page.locator("section#approve input[name=reviewer]").fill("ann")  # asked once
    page.locator("section#approve button").click()
    page.wait_for_url(site.link(first, "approve"))

    page.goto(site.link(second, "approve"))
    assert page.evaluate("document.activeElement.textContent") == "Approve"  # ready to confirm
    page.keyboard.press("Enter")
    page.wait_for_selector("#outcome")
    assert sql.execute("select decided_by, decision from actions where id = %s", (second.id,)).fetchone() == (
        "ann", "approved")


def test_a_hostile_draft_runs_no_script_in_the_page(site: Site, page: Page) -> None:
    console: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    as_text = site.submit(body=f"Hello {HOSTILE}")
    as_email = site.submit_shaped({"subject": "Spring sale", "html": f"<h1>Spring sale</h1>{HOSTILE}"})

    for action in (as_text, as_email):
        page.goto(site.link(action))
        page.wait_for_load_state("load")
        assert page.evaluate("window.pwned") is None
        assert page.title() != "pwned" and page.title().endswith("· opsdesk")
        assert page.evaluate("document.scripts.length") == 0

    # the text draft is shown as text, the email rendered in its sandbox
    page.goto(site.link(as_text))
    assert HOSTILE in page.locator("section#draft .text").first.inner_text()
    page.goto(site.link(as_email))
    frame = page.frame_locator("iframe.email")
    assert frame.locator("h1").inner_text() == "Spring sale"
    page.screenshot(path=str(ARTEFACTS / "review-page-email.png"), full_page=True)
    assert not [text for text in console if "PWNED" in text], console
    assert errors == []
