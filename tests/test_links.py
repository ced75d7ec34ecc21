"""Signed links over real HTTP: GET never decides; forged, foreign, expired, replayed and outdated
tokens are refused with the right status and nothing written; links come from PUBLIC_BASE_URL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest

from app.approvals.links import LinkSigner
from app.core.database import Database
from app.core.models import ActionRecord
from tests.conftest import advance_clock, make_settings
from tests.link_support import Site, running_site, snapshot, token_of


@pytest.fixture
def site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url) as running:
        yield running


def approve_form(token: str, reviewer: str = "ann") -> dict[str, str]:
    return {"t": token, "decision": "approve", "reviewer": reviewer}


def test_a_get_on_every_link_changes_nothing(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    critical = site.submit(cost="150", summary="Pay the ad invoice")
    before = snapshot(sql)
    for url in (
        site.link(action),
        site.link(action, "approve"),
        site.link(action, "reject"),
        site.link(critical, "approve"),
        site.inbox_link(),
    ):
        for _ in range(3):  # a preview bot, the reviewer, a second device
            response = site.http.get(url)
            assert response.status_code == 200, (url, response.text)
            assert response.headers["content-type"].startswith("text/html")
    assert snapshot(sql) == before


def test_a_get_on_a_decided_action_changes_nothing_and_shows_the_outcome(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    approve = site.link(action, "approve")
    assert site.post_form(action.id, approve_form(token_of(approve))).status_code == 303
    before = snapshot(sql)
    for url in (site.link(action), approve, site.link(action, "reject")):
        page = site.http.get(url)
        assert page.status_code == 200 and "Already decided by ann at" in page.text
        assert 'name="decision"' not in page.text  # no form left to decide with
    assert snapshot(sql) == before


def forged_tokens(site: Site, action: ActionRecord) -> dict[str, str]:
    genuine = token_of(site.link(action, "approve"))
    payload, _, signature = genuine.rpartition(".")
    other_payload = token_of(site.link(action, "review")).rpartition(".")[0]
    # the first character: the last one of a base64 signature partly encodes padding bits
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    assert action.expires_at is not None
    other_key = LinkSigner(make_settings(approval_link_secret="a-different-secret-0123456789"))
    return {
        "flipped signature": f"{payload}.{flipped}",
        "payload of another token": f"{other_payload}.{signature}",
        "truncated": genuine[: len(genuine) // 2],
        "garbage": "not-a-token",
        "another key": other_key.token(action.id, action.draft_hash, "approve", action.expires_at),
    }


@pytest.mark.parametrize(
    "case", ["flipped signature", "payload of another token", "truncated", "garbage", "another key"]
)
def test_a_forged_token_is_403_and_writes_nothing(site: Site, sql: psycopg.Connection, case: str) -> None:
    action = site.submit()
    token = forged_tokens(site, action)[case]
    before = snapshot(sql)
    page = site.http.get(f"/approvals/{action.id}", params={"t": token, "do": "approve"})
    assert page.status_code == 403 and "This link is not valid" in page.text
    posted = site.post_form(action.id, approve_form(token))
    assert posted.status_code == 403 and posted.headers["content-type"].startswith("text/html")
    assert snapshot(sql) == before


def test_a_token_for_another_action_is_403_and_writes_nothing(site: Site, sql: psycopg.Connection) -> None:
    mine, other = site.submit(), site.submit(summary="another one")
    foreign = token_of(site.link(other, "approve"))
    before = snapshot(sql)
    page = site.http.get(f"/approvals/{mine.id}", params={"t": foreign})
    assert page.status_code == 403 and "another approval" in page.text
    assert site.post_form(mine.id, approve_form(foreign)).status_code == 403
    # the inbox token is not an action token, nor the other way round
    inbox = token_of(site.inbox_link())
    assert site.http.get(f"/approvals/{mine.id}", params={"t": inbox}).status_code == 403
    assert site.post_form(mine.id, approve_form(inbox)).status_code == 403
    assert site.http.get("/approvals/inbox", params={"t": foreign}).status_code == 403
    assert snapshot(sql) == before


def test_a_token_used_after_expiry_is_410_and_writes_nothing(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    links = [site.link(action, purpose) for purpose in ("review", "approve", "reject")]
    inbox = site.inbox_link(hours=1)
    advance_clock(sql, 73 * 3600)  # past the 72 h approval window (and the 1 h inbox link)
    before = snapshot(sql)
    for url in links:
        page = site.http.get(url)
        assert page.status_code == 410 and "This link has expired" in page.text
        assert (
            site.post_form(
                action.id, {**approve_form(token_of(url)), "decision": "reject", "reason": "late"}
            ).status_code
            == 410
        )
    assert site.http.get(inbox).status_code == 410
    assert snapshot(sql) == before


def test_a_replay_after_a_decision_is_409_and_writes_nothing(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    token = token_of(site.link(action, "approve"))
    first = site.post_form(action.id, approve_form(token, "ann"))
    assert first.status_code == 303
    before = snapshot(sql)
    again = site.post_form(action.id, approve_form(token, "bob"))
    assert again.status_code == 409 and "Already decided by ann at" in again.text
    review = token_of(site.link(action))  # the Review link of the same message, now stale
    rejected = site.post_form(action.id, {"t": review, "decision": "reject", "reviewer": "bob", "reason": "no"})
    assert rejected.status_code == 409
    assert snapshot(sql) == before
    assert site.action(action.id).decided_by == "ann"


def test_a_draft_edited_after_its_links_were_issued_makes_them_refuse(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    old = {purpose: site.link(action, purpose) for purpose in ("review", "approve", "reject")}
    # an agent revises its pending draft (a revision writes the new draft and its hash)
    sql.execute(
        'update actions set requested_action = \'{"body": "Revised: call ACME on Monday"}\', '
        'draft_hash = draft_hash(\'{"body": "Revised: call ACME on Monday"}\') where id = %s',
        (action.id,),
    )
    before = snapshot(sql)
    for url in old.values():
        page = site.http.get(url)
        assert page.status_code == 409
        assert "This link is out of date" in page.text and "newest link" in page.text
        assert "Revised" not in page.text  # the old link does not show the new draft either
        assert site.post_form(action.id, approve_form(token_of(url))).status_code == 409
    assert snapshot(sql) == before
    fresh = site.link(site.action(action.id))
    assert "Revised: call ACME on Monday" in site.http.get(fresh).text


def test_one_click_tokens_only_do_their_own_decision(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    approve, reject = token_of(site.link(action, "approve")), token_of(site.link(action, "reject"))
    before = snapshot(sql)
    refused = site.post_form(action.id, {"t": approve, "decision": "reject", "reviewer": "ann", "reason": "no"})
    assert refused.status_code == 403 and "can only approve or modify" in refused.text
    assert site.post_form(action.id, approve_form(reject)).status_code == 403
    assert (
        site.post_form(action.id, {"t": reject, "decision": "modify", "reviewer": "ann", "edit.body": "x"}).status_code
        == 403
    )
    assert snapshot(sql) == before
    # the Approve link's page offers approve and edit-then-approve, not reject
    page = site.http.get(site.link(action, "approve")).text
    assert 'value="approve"' in page and 'value="modify"' in page and 'value="reject"' not in page
    page = site.http.get(site.link(action, "reject")).text
    assert 'value="reject"' in page and 'value="approve"' not in page and 'value="modify"' not in page
    # an approval may be edited: the Approve link can modify
    edited = site.post_form(
        action.id, {"t": approve, "decision": "modify", "reviewer": "ann", "edit.body": "Called ACME"}
    )
    assert edited.status_code == 303 and site.action(action.id).decision == "modified"


def test_a_post_from_another_site_is_refused(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    token = token_of(site.link(action, "approve"))
    before = snapshot(sql)
    assert site.post_form(action.id, approve_form(token), Origin="https://evil.example").status_code == 403
    assert site.post_form(action.id, approve_form(token), Origin="null").status_code == 403
    assert site.post_form(action.id, approve_form(token), Referer="https://evil.example/page").status_code == 403
    assert snapshot(sql) == before
    # from our own page (what a browser sends) it goes through
    ok = site.post_form(action.id, approve_form(token), Origin=site.url, Referer=site.link(action, "approve"))
    assert ok.status_code == 303


def test_links_and_redirects_use_public_base_url_whatever_the_host_header(site: Site) -> None:
    action = site.submit()
    spoofed = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    pages = [
        site.http.get(site.link(action), headers=spoofed).text,
        site.http.get(site.inbox_link(), headers=spoofed).text,
    ]
    site.submit(cost="150", summary="critical one")  # the inbox links CRITICAL ones to their pages
    pages.append(site.http.get(site.inbox_link(), headers=spoofed).text)
    for page in pages:
        assert "evil.example" not in page
        urls = re.findall(r'(?:href|action)="([^"]+)"', page)
        assert urls and all(url.startswith(f"{site.settings.public_base_url}/approvals/") for url in urls), urls
    posted = site.post_form(action.id, approve_form(token_of(site.link(action, "approve"))), **spoofed)
    assert posted.status_code == 303
    assert posted.headers["location"].startswith(f"{site.settings.public_base_url}/approvals/{action.id}?t=")


def test_links_signed_with_a_rotated_out_secret_still_work(db: Database, database_url: str) -> None:
    old_secret = "the-old-link-secret-0123456789"
    with running_site(db, database_url, approval_link_secret=old_secret) as before_rotation:
        action = before_rotation.submit()
        link = before_rotation.link(action, "approve")
    with running_site(
        db, database_url, approval_link_secret="the-new-link-secret-0123456789", approval_link_old_secrets=[old_secret]
    ) as rotated:
        # the port changed with the restart; the token is what matters
        token = token_of(link)
        assert rotated.http.get(f"/approvals/{action.id}", params={"t": token}).status_code == 200
        assert rotated.post_form(action.id, approve_form(token)).status_code == 303
