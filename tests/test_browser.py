"""The review page in real headless Chromium (Debian's `chromium`, driven by Playwright) against the
running service: an email's Review link taken from the message a fake Discord captured, its subject
edited then approved from the page; a hostile draft runs no script; a screenshot.

Without Chromium these tests skip, or fail where CI is set (tests.browser_support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Page

from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.models import ActionMetadata, ActionRequest, Impact, Tier
from app.notifications.sender import NotificationSender
from tests.browser_support import launched_chromium
from tests.fake_brevo import API_KEY, SENDER, FakeBrevo
from tests.fake_discord import FakeDiscord
from tests.link_support import Site, running_site

ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
HOSTILE = (
    '<script>window.pwned = 1; document.title = "pwned"; console.log("PWNED script")</script>'
    "<img src=x onerror=\"window.pwned = 2; document.title = 'pwned'; console.log('PWNED onerror')\">"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url) as running:
        yield running


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def brevo() -> Iterator[FakeBrevo]:
    with FakeBrevo() as fake:
        yield fake


@pytest.fixture
def mail_site(db: Database, database_url: str, discord: FakeDiscord, brevo: FakeBrevo) -> Iterator[Site]:
    """The service with Discord pointed at the fake (its links built from the live address) and Brevo
    configured against a fake that must receive nothing: no executor runs here."""
    with running_site(
        db,
        database_url,
        discord_webhook_url=discord.webhook_url,
        brevo_api_key=API_KEY,
        brevo_sender_email=SENDER,
        brevo_base_url=brevo.url,
    ) as running:
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 420, "height": 900})  # a phone-sized window
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def link_buttons(message: dict[str, Any]) -> dict[str, str]:
    """The URLs of a Discord message's link buttons (style 5), by label."""
    return {
        button["label"]: button["url"]
        for row in message.get("components") or []
        for button in row["components"]
        if button["type"] == 2 and button["style"] == 5
    }


def test_edit_the_subject_and_approve_from_the_discord_review_link(
    mail_site: Site,
    db: Database,
    discord: FakeDiscord,
    brevo: FakeBrevo,
    page: Page,
    sql: psycopg.Connection,
) -> None:
    old, new = "Re: your invoice", "Re: your invoice for March"
    request = ActionRequest(
        agent="support",
        kind="email.send",
        summary="Reply to ticket #42: your invoice",
        reasoning="the customer asked why the invoice doubled",
        suggested_tier=Tier.MEDIUM,
        payload={
            "to": {"email": "ann@example.com", "name": "Ann"},
            "subject": old,
            "html": "<p>Hello Ann,</p><p>The invoice covers two months.</p>",
            "text": "Hello Ann, the invoice covers two months.",
        },
        impact=Impact(recipients=1),
        metadata=ActionMetadata(model_id="claude-sonnet-5-5", confidence=0.8),
    )
    action_id = ApprovalQueue(db, mail_site.settings).submit(request, actor="test").id

    sender = NotificationSender(db, mail_site.settings, worker_id="browser-test", rng=lambda: 1.0)
    try:
        assert sender.run_until_idle() == 1
        [post] = discord.posts()
        links = link_buttons(post.body)
        assert set(links) == {"Review", "Approve", "Reject"}
        review, approve = links["Review"], links["Approve"]
        assert review.startswith(f"{mail_site.url}/approvals/{action_id}?t=")
        assert approve.startswith(f"{mail_site.url}/approvals/{action_id}?t=") and approve != review

        page.goto(review)
        assert page.locator("h1").inner_text() == "Reply to ticket #42: your invoice"
        assert page.frame_locator("iframe.email").locator("p").first.inner_text() == "Hello Ann,"
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "review-page.png"), full_page=True)

        edit = page.locator("section#edit form")
        subject = edit.locator('[name="edit.subject"]')
        assert subject.input_value() == old
        subject.fill(new)
        edit.locator('input[name="reviewer"]').fill("ann")
        edit.get_by_role("button", name="Save edits and approve").click()
        page.wait_for_url(review)

        assert "Already decided by ann at" in page.locator("#outcome").inner_text()
        row = sql.execute(
            "select status, decision, decided_by, modifications, requested_action ->> 'subject' "
            "from actions where id = %s",
            (action_id,),
        ).fetchone()
        assert row == ("approved", "modified", "ann", {"subject": {"from": old, "to": new}}, new)

        page.goto(approve)  # the Approve link from the same message: the outcome, nothing to click
        assert "Already decided by ann at" in page.locator("#outcome").inner_text()
        assert page.locator("form").count() == 0

        # the Discord message is edited to the outcome, its buttons gone; no email left (no executor)
        assert sender.run_until_idle() == 1
        [message_id] = discord.messages
        [edited] = discord.edits()
        assert edited.message_id == message_id
        assert link_buttons(discord.messages[message_id]) == {}
        assert brevo.requests == []
    finally:
        sender.close()


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
        "ann",
        "approved",
    )


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
