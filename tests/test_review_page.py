"""The review page over real HTTP: the whole draft by shape, the facts, the forms; deciding from it
(approve, edit then approve, reject with a reason), the remembered name, and the approval PIN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from uuid import UUID

import httpx
import psycopg
import pytest
from pydantic import ValidationError

from app.approvals.executor import Executor
from app.approvals.links import LinkSigner
from app.approvals.pages.draft_view import ChangeDraft, EmailDraft, TextDraft, draft_view, reach
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.config_check import check
from app.core.database import Database
from app.core.models import ActionRequest, DecisionRequest, Impact, ReviewState, Tier
from app.web import create_app
from tests.conftest import API_TOKEN, make_settings
from tests.link_support import Site, running_site, snapshot, token_of
from tests.live_server import free_port, serve


@pytest.fixture
def site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url) as running:
        yield running


def section_order(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z]+)"', page)


# --- the page -------------------------------------------------------------------------------
def test_the_page_shows_the_draft_and_every_fact_and_runs_no_script(site: Site) -> None:
    action = site.submit(body="Followed up with ACME <b>today</b>")
    response = site.http.get(site.link(action))
    page = response.text
    assert response.status_code == 200
    for expected in (
        "MEDIUM",
        "Log the follow-up",
        "sales · note.record",
        "Followed up with ACME &lt;b&gt;today&lt;/b&gt;",
        "120 recipients is 50-300",
        "the deal went quiet",
        "82%",
        "claude-sonnet-5-5",
        "$0.00",
        f"expires {action.expires_at.astimezone(site.settings.time_zone):%Y-%m-%d %H:%M}",
    ):
        assert expected in page, expected
    assert "<script" not in page.lower()
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert f"form-action {site.url}" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "same-origin"


def test_an_email_draft_renders_inside_a_sandbox_without_scripts(site: Site) -> None:
    html = '<h1 style="color:#c00">Spring sale</h1><script>window.pwned = 1</script><img src=x onerror="alert(1)">'
    action = site.submit_shaped(
        {
            "subject": "Spring sale: 20% off",
            "html": html,
            "recipients": [{"email": f"c{n}@example.com", "name": f"C{n}"} for n in range(120)],
        }
    )
    page = site.http.get(site.link(action)).text
    iframe = re.search(r"<iframe ([^>]*)>", page)
    assert iframe
    attributes = iframe[1]
    assert re.search(r"(^|\s)sandbox(\s|$)", attributes) and "allow-" not in attributes
    srcdoc = re.search(r'srcdoc="([^"]*)"', attributes)
    assert srcdoc and "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in srcdoc[1]
    assert "<script" not in page and 'onerror="alert' not in page
    assert "Spring sale: 20% off" in page
    assert "C0 &lt;c0@example.com&gt;, C1 &lt;c1@example.com&gt;" in page and ", …" in page


def test_a_crm_change_is_shown_as_before_and_after(site: Site) -> None:
    action = site.submit_shaped(
        {
            "object": "deal",
            "before": {"stage": "qualified", "amount": 5000},
            "after": {"stage": "closedlost", "amount": 5000},
        },
        recipients=0,
    )
    page = site.http.get(site.link(action)).text
    changed = re.findall(
        r'<tr class="changed"><td>([^<]+)</td><td class="text">([^<]*)</td>'
        r'<td class="text">([^<]*)</td>',
        page,
    )
    assert changed == [("stage", "qualified", "closedlost")]
    assert "<td>amount</td>" in page and "<h3>object</h3>" in page


def test_draft_shapes() -> None:
    email = draft_view({"subject": "Hi", "html": "<p>Hello</p>", "from": "shop@example.com"})
    assert isinstance(email, EmailDraft) and email.document == "<p>Hello</p>"
    assert [(f.name, f.text) for f in email.others] == [("from", "shop@example.com")]
    plain = draft_view({"subject": "Re: order", "body": "Hi <Ann>,\nthanks"})
    assert isinstance(plain, EmailDraft) and "Hi &lt;Ann&gt;,\nthanks" in plain.document
    change = draft_view({"changes": {"stage": {"from": "open", "to": "won"}}, "deal_id": 7})
    assert isinstance(change, ChangeDraft) and change.rows[0].changed and change.others[0].text == "7"
    text = draft_view({"title": "Our story", "body": "Once", "tags": ["a"]})
    assert isinstance(text, TextDraft) and [f.name for f in text.fields] == ["title", "body", "tags"]
    assert isinstance(draft_view({"subject": 5, "body": "x"}), TextDraft)
    shown = reach({"to": ["a@x.io", {"email": "b@x.io"}, 7]}, {"recipients": 3, "cost_usd": "12.50"})
    assert shown.sample == ["a@x.io", "b@x.io"] and shown.listed == 3 and shown.cost_usd == Decimal("12.50")


def test_the_approve_link_opens_with_approve_ready_and_the_reject_link_with_reject(site: Site) -> None:
    action = site.submit()
    site.http.cookies.set("opsdesk_reviewer", "ann", domain="127.0.0.1", path="/approvals")
    approve = site.http.get(site.link(action, "approve")).text
    assert section_order(approve)[0] == "approve"
    assert re.search(
        r'<section id="approve" class="ready">.*?<button type="submit" class="approve" autofocus>', approve, re.S
    )
    assert 'value="ann"' in approve
    reject = site.http.get(site.link(action, "reject")).text
    assert section_order(reject)[0] == "reject"
    assert re.search(r'<textarea name="reason" required maxlength="5000" autofocus>', reject)
    review = site.http.get(site.link(action)).text
    assert section_order(review) == ["draft", "reach", "why", "approve", "edit", "reject"]
    site.http.cookies.clear()
    first_time = site.http.get(site.link(action, "approve")).text  # no name yet: the name field is focused
    assert re.search(r'name="reviewer" value="" required maxlength="64" autocomplete="name" autofocus', first_time)


# --- deciding ---------------------------------------------------------------------------------
def test_approve_from_the_page_remembers_the_reviewer(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    link = site.link(action, "approve")
    posted = site.post_form(
        action.id,
        {"t": token_of(link), "decision": "approve", "reviewer": "  Ann Lee ", "reason": "looks right"},
        **{"X-Request-ID": "req-page-1"},
    )
    assert posted.status_code == 303 and posted.headers["location"] == link
    cookie = posted.headers["set-cookie"]
    assert cookie.startswith("opsdesk_reviewer=Ann%20Lee;") and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Path=/approvals" in cookie and "Secure" not in cookie
    row = sql.execute(
        "select status, decision, decided_by, feedback from actions where id = %s", (action.id,)
    ).fetchone()
    assert row == ("approved", "approved", "Ann Lee", "looks right")
    assert sql.execute("select actor, request_id from audit_log where event = 'decided'").fetchone() == (
        "Ann Lee",
        "req-page-1",
    )
    shown = site.http.get(link).text
    assert "Already decided by Ann Lee at" in shown
    later = site.submit(summary="next one")
    assert 'value="Ann Lee"' in site.http.get(site.link(later)).text


def test_the_cookie_is_secure_behind_https(db: Database, database_url: str) -> None:
    with running_site(db, database_url, public_base_url="https://ops.example.com") as site:
        action = site.submit()
        posted = site.post_form(action.id, {"t": token_of(site.link(action)), "decision": "approve", "reviewer": "ann"})
        assert posted.status_code == 303 and "Secure" in posted.headers["set-cookie"]
        assert posted.headers["location"].startswith("https://ops.example.com/approvals/")


def test_edit_then_approve_stores_the_difference(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit(body="Followed up with ACME")
    posted = site.post_form(
        action.id,
        {
            "t": token_of(site.link(action)),
            "decision": "modify",
            "reviewer": "ann",
            "edit.body": "Called ACME\r\nThey sign Tuesday",
        },
    )
    assert posted.status_code == 303
    row = sql.execute(
        "select decision, modifications, requested_action->>'body' from actions where id = %s", (action.id,)
    ).fetchone()
    assert row == (
        "modified",
        {"body": {"from": "Followed up with ACME", "to": "Called ACME\nThey sign Tuesday"}},
        "Called ACME\nThey sign Tuesday",
    )
    page = site.http.get(site.link(action)).text  # the old hash: decided, so it shows the outcome
    assert "Already decided by ann at" in page and "edited, then approved" in page
    assert '<tr class="changed"><td>body</td><td class="text">Followed up with ACME</td>' in page


def test_only_changed_fields_are_edits(site: Site, sql: psycopg.Connection) -> None:
    """The form posts every editable field; an untouched one (an empty box for a missing text
    part, or an unchanged subject) is not recorded as a change."""
    submitted = site.queue.submit(
        ActionRequest(
            agent="support",
            kind="email.send",
            summary="Reply to Ann",
            suggested_tier=Tier.MEDIUM,
            payload={"to": {"email": "ann@example.com"}, "subject": "Your order", "html": "<p>Hi Ann</p>"},
            impact=Impact(recipients=1),
        ),
        actor="test",
    )
    action = site.action(submitted.id)
    assert action.requested_action["text"] is None
    form = {
        "t": token_of(site.link(action)),
        "decision": "modify",
        "reviewer": "ann",
        "edit.subject": "Your order",
        "edit.html": "<p>Hi Ann, it ships today</p>",
        "edit.text": "",
    }
    assert site.post_form(action.id, form).status_code == 303
    row = sql.execute(
        "select decision, modifications, requested_action->'text' from actions where id = %s", (action.id,)
    ).fetchone()
    assert row == ("modified", {"html": {"from": "<p>Hi Ann</p>", "to": "<p>Hi Ann, it ships today</p>"}}, None)


def test_modify_with_nothing_changed_is_a_plain_approval(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit(body="Followed up with ACME")
    form = {
        "t": token_of(site.link(action)),
        "decision": "modify",
        "reviewer": "ann",
        "edit.body": "Followed up with ACME",
    }
    assert site.post_form(action.id, form).status_code == 303
    assert sql.execute("select decision, modifications from actions where id = %s", (action.id,)).fetchone() == (
        "approved",
        None,
    )


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"decision": "reject", "reviewer": "ann"}, "a rejection needs a reason"),
        ({"decision": "reject", "reviewer": "ann", "reason": "   "}, "a rejection needs a reason"),
        ({"decision": "approve", "reviewer": ""}, "reviewer"),
        ({"decision": "approve"}, "reviewer"),
        ({"decision": "approve", "reviewer": "a" * 65}, "reviewer"),
        ({"decision": "launch", "reviewer": "ann"}, "decision"),
        ({"decision": "modify", "reviewer": "ann", "edit.summary": "x"}, "does not allow editing summary"),
    ],
)
def test_an_incomplete_form_is_a_clear_page_and_writes_nothing(
    site: Site, sql: psycopg.Connection, form: dict[str, str], message: str
) -> None:
    action = site.submit()
    before = snapshot(sql)
    posted = site.post_form(action.id, {"t": token_of(site.link(action)), **form})
    assert posted.status_code == 422 and posted.headers["content-type"].startswith("text/html")
    assert message in posted.text and "Nothing was changed" in posted.text
    assert snapshot(sql) == before


def test_the_bearer_json_api_is_unchanged_by_the_pages(site: Site) -> None:
    action = site.submit()
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    shown = site.http.get(f"/approvals/{action.id}", headers=bearer)
    assert shown.status_code == 200 and shown.json()["id"] == str(action.id)
    assert site.http.get(f"/approvals/{action.id}").status_code == 401
    decided = site.http.post(
        f"/approvals/{action.id}/decision",
        headers=bearer,
        json={"decision": "reject", "reason": "duplicate", "decided_by": "ann"},
    )
    assert decided.status_code == 200 and decided.json()["decision"] == "rejected"
    again = site.http.post(
        f"/approvals/{action.id}/decision", headers=bearer, json={"decision": "approve", "decided_by": "bob"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_a_mangled_link_gets_an_html_page(site: Site) -> None:
    for path in ("/approvals/not-a-uuid?t=abc", "/approvals/00000000-0000-0000-0000-000000000000?t=abc&do=launch"):
        response = site.http.get(path)
        assert response.status_code == 422 and response.headers["content-type"].startswith("text/html")
        assert "This request was refused" in response.text


# --- the approval PIN -------------------------------------------------------------------------
@pytest.fixture
def pin_site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url, approval_pin="4321", approval_pin_max_tries=3) as running:
        yield running


def pin_form(site: Site, action_id: object, pin: str | None, decision: str = "approve") -> dict[str, str]:
    form = {"t": token_of(site.link(site.action(action_id))), "decision": decision, "reviewer": "ann"}  # type: ignore[arg-type]
    return form | ({"pin": pin} if pin is not None else {}) | ({"reason": "too much"} if decision == "reject" else {})


def audit_events(sql: psycopg.Connection, action_id: object) -> list[str]:
    return [row[0] for row in sql.execute("select event from audit_log where action_id = %s order by id", (action_id,))]


def test_critical_actions_need_the_pin_and_others_do_not(pin_site: Site, sql: psycopg.Connection) -> None:
    critical = pin_site.submit(cost="150", summary="Pay the ad invoice")
    assert 'name="pin"' in pin_site.http.get(pin_site.link(critical)).text
    wrong = pin_site.post_form(critical.id, pin_form(pin_site, critical.id, "1111"))
    assert wrong.status_code == 403 and "Wrong PIN" in wrong.text and "2 tries left" in wrong.text
    missing = pin_site.post_form(critical.id, pin_form(pin_site, critical.id, None))
    assert missing.status_code == 403 and "1 try left" in missing.text
    assert pin_site.action(critical.id).status.value == "pending"
    right = pin_site.post_form(critical.id, pin_form(pin_site, critical.id, "4321"))
    assert right.status_code == 303 and pin_site.action(critical.id).decision == "approved"
    assert audit_events(sql, critical.id) == ["submitted", "pin_failed", "pin_failed", "decided"]
    assert not sql.execute(
        "select count(*) from audit_log where details::text like '%%1111%%' "
        "or reason like '%%1111%%' or reason like '%%4321%%'"
    ).fetchone()[0]

    medium = pin_site.submit()
    assert 'name="pin"' not in pin_site.http.get(pin_site.link(medium)).text
    assert pin_site.post_form(medium.id, pin_form(pin_site, medium.id, None)).status_code == 303


def test_too_many_wrong_pins_lock_approval_by_link(pin_site: Site, sql: psycopg.Connection) -> None:
    critical = pin_site.submit(cost="150", summary="Pay the ad invoice")
    for _ in range(3):
        last = pin_site.post_form(critical.id, pin_form(pin_site, critical.id, "0000"))
    assert last.status_code == 403 and "Approval by link is locked" in last.text
    right = pin_site.post_form(critical.id, pin_form(pin_site, critical.id, "4321"))
    assert right.status_code == 403 and "can no longer be approved by link" in right.text
    assert pin_site.action(critical.id).status.value == "pending"
    assert audit_events(sql, critical.id) == [
        "submitted",
        "pin_failed",
        "pin_failed",
        "pin_failed",
        "pin_locked",
        "pin_refused",
    ]
    page = pin_site.http.get(pin_site.link(critical)).text
    assert "Approval by link is locked" in page
    assert 'value="approve"' not in page and 'value="modify"' not in page and 'value="reject"' in page
    # rejecting needs no PIN: it runs nothing
    assert pin_site.post_form(critical.id, pin_form(pin_site, critical.id, None, "reject")).status_code == 303
    assert pin_site.action(critical.id).status.value == "rejected"


def test_parallel_pin_guesses_are_counted_up_to_the_limit_and_no_further(
    pin_site: Site, sql: psycopg.Connection
) -> None:
    critical = pin_site.submit(cost="150", summary="Pay the ad invoice")
    guesses = [pin_form(pin_site, critical.id, f"{n:04d}") for n in range(20)]  # 0000..0019: all wrong

    def guess(form: dict[str, str]) -> int:
        with httpx.Client(base_url=pin_site.url, timeout=30) as client:
            return client.post(f"/approvals/{critical.id}/decision", data=form).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(guess, guesses)) == {403}
    assert sql.execute(
        "select failures from approval_pin_failures where action_id = %s", (critical.id,)
    ).fetchone() == (3,)
    assert pin_site.post_form(critical.id, pin_form(pin_site, critical.id, "4321")).status_code == 403
    assert pin_site.action(critical.id).status.value == "pending"


@pytest.mark.parametrize(("pin", "message"), [("12", "at least 4 characters"), ("changeme", "placeholder")])
def test_a_weak_pin_setting_is_refused(pin: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(approval_pin=pin)
    report = check(_env_file=None, approval_pin=pin)
    part = next(part for part in report.parts if part.name == "approval links")
    assert part.state == "malformed" and not report.ok


def test_an_old_link_cannot_decide_a_round_reopened_while_its_post_was_checked(
    db: Database,
    database_url: str,
    sql: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page checks the link's round, then decides. If, in between, the action is approved by
    someone else and sent back as CRITICAL, the old HIGH-round link must not approve the new round
    (which would skip its PIN): the database refuses the stale round under the row lock."""
    port = free_port()
    settings = make_settings(database_url=database_url, public_base_url=f"http://127.0.0.1:{port}", approval_pin="4321")
    app = create_app(settings, db)
    queue: ApprovalQueue = app.state.queue
    high = queue.submit(
        ActionRequest(
            agent="ops",
            kind="note.record",
            summary="Pay the ad invoice",
            payload={"body": "pay"},
            impact=Impact(cost_usd=Decimal("80")),
        ),
        actor="t",
    )
    assert high.risk_tier is Tier.HIGH
    action = queue.review_state(high.id).action
    assert action is not None and action.expires_at is not None
    old_link = LinkSigner(settings).token(action.id, action.draft_hash, "approve", action.expires_at)
    read = queue.review_state

    def read_then_reopen_as_critical(action_id: UUID) -> ReviewState:
        state = read(action_id)
        if state.action is not None and state.action.risk_level is Tier.HIGH:
            # bob approves from his own link; before it runs the money threshold drops, so the
            # executor sends it back: the same draft, now CRITICAL, in a new round
            queue.decide(action_id, DecisionRequest(decision="approve"), actor="bob", channel="link")
            stricter = make_settings(database_url=database_url, risk_money_critical=Decimal("70"))
            worker = Executor(db, stricter, worker_id="w", clients=Clients(stricter))
            try:
                worker.run_once()
            finally:
                worker.close()
        return state

    monkeypatch.setattr(queue, "review_state", read_then_reopen_as_critical)
    with serve(app, port=port) as url, httpx.Client(base_url=url, timeout=30) as http:
        refused = http.post(
            f"/approvals/{action.id}/decision", data={"t": old_link, "decision": "approve", "reviewer": "ann"}
        )
    assert refused.status_code == 409 and "Not decided" in refused.text
    row = sql.execute("select status, risk_level, decided_by from actions where id = %s", (action.id,)).fetchone()
    assert row == ("pending", "CRITICAL", None)  # waits for a decision with the PIN
