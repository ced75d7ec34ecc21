"""The inbox over real HTTP: everything pending oldest first, several decided at once, CRITICAL
never in bulk, items that moved on since the page was loaded skipped and reported; the CLI link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.core.database import Database
from app.core.models import ActionRecord, DecisionRequest
from app.core.settings import Settings
from scheduler import main
from tests.conftest import advance_clock
from tests.link_support import Site, running_site, snapshot, token_of


@pytest.fixture
def site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url) as running:
        yield running


def checkbox_values(page: str) -> dict[str, str]:
    """action id -> the checkbox value the page offers for it."""
    return {value.split(".")[0]: value for value in re.findall(r'name="items" value="([^"]+)"', page)}


def bulk(site: Site, token: str, decision: str, items: list[str], reason: str | None = None) -> str:
    data: dict[str, object] = {"t": token, "decision": decision, "reviewer": "ann", "items": items}
    if reason is not None:
        data["reason"] = reason
    response = site.http.post("/approvals/inbox", data=data)
    assert response.status_code == 200, response.text
    return response.text


def status(sql: psycopg.Connection, action: ActionRecord) -> tuple[str, str | None, str | None]:
    return sql.execute(
        "select status, decided_by, rejection_reason from actions where id = %s", (action.id,)
    ).fetchone()


def test_the_inbox_lists_everything_pending_oldest_first(site: Site, sql: psycopg.Connection) -> None:
    first = site.submit(summary="first")
    advance_clock(sql, 60)
    critical = site.submit(cost="150", summary="second, critical")
    advance_clock(sql, 60)
    third = site.submit(summary="third")
    site.submit(recipients=3, summary="low, ran at once")
    decided = site.submit(summary="decided already")
    site.queue.decide(decided.id, DecisionRequest(decision="approve"), actor="bob", channel="link")

    page = site.http.get(site.inbox_link()).text
    summaries = re.findall(r'<a href="[^"]+">([^<]+)</a>', page)
    assert summaries == ["first", "second, critical", "third"]
    assert "3 actions waiting" in page
    assert set(checkbox_values(page)) == {str(first.id), str(third.id)}  # CRITICAL: no checkbox
    assert "CRITICAL: decide it on its own page" in page
    own_page = re.search(rf'href="([^"]+/approvals/{critical.id}\?t=[^"]+)"', page)
    assert own_page and site.http.get(own_page[1].replace("&amp;", "&")).status_code == 200


def test_several_decided_at_once(site: Site, sql: psycopg.Connection) -> None:
    a, b, c = (site.submit(summary=name) for name in ("a", "b", "c"))
    token = token_of(site.inbox_link())
    offered = checkbox_values(site.http.get(site.inbox_link()).text)
    done = bulk(site, token, "approve", [offered[str(a.id)], offered[str(b.id)]])
    assert "2 approved, 0 skipped" in done
    done = bulk(site, token, "reject", [offered[str(c.id)]], reason="wrong customer")
    assert "1 rejected, 0 skipped" in done
    assert [status(sql, x) for x in (a, b, c)] == [
        ("approved", "ann", None),
        ("approved", "ann", None),
        ("rejected", "ann", "wrong customer"),
    ]
    assert sql.execute("select count(*) from audit_log where event = 'decided' and actor = 'ann'").fetchone() == (3,)


def test_items_that_moved_on_since_the_page_was_loaded_are_skipped_and_reported(
    site: Site, sql: psycopg.Connection
) -> None:
    edited, decided, reopened, fine = (site.submit(summary=name) for name in ("edited", "decided", "reopened", "fine"))
    critical = site.submit(cost="150", summary="critical")
    token = token_of(site.inbox_link())
    offered = checkbox_values(site.http.get(site.inbox_link()).text)
    # meanwhile: the draft is revised, someone else decides, an approval is reopened with a new expiry
    sql.execute(
        'update actions set requested_action = \'{"body": "v2"}\', draft_hash = draft_hash(\'{"body": '
        '"v2"}\') where id = %s',
        (edited.id,),
    )
    site.queue.decide(decided.id, DecisionRequest(decision="reject", reason="dup"), actor="bob", channel="link")
    sql.execute("update actions set expires_at = expires_at + interval '1 hour' where id = %s", (reopened.id,))
    # a hand-made checkbox for the CRITICAL one, which the page never offers
    forged = f"{critical.id}.{critical.draft_hash}.{int(critical.expires_at.timestamp())}"  # type: ignore[union-attr]
    before = snapshot(sql)

    done = bulk(site, token, "approve", [offered[str(x.id)] for x in (edited, decided, reopened, fine)] + [forged])
    assert "1 approved, 4 skipped" in done
    skipped = re.search(r'<section id="skipped".*?</section>', done, re.S)
    assert skipped
    for expected in (
        "edited: the draft changed since this page was loaded",
        "decided: Already decided by bob at",
        "reopened: reopened since this page was loaded",
        "critical: CRITICAL: decide it on its own page",
    ):
        assert expected in skipped[0], expected
    after = snapshot(sql)
    unchanged = {str(x.id) for x in (edited, decided, reopened, critical)}
    assert [row for row in after["actions"] if row["id"] in unchanged] == [
        row for row in before["actions"] if row["id"] in unchanged
    ]
    assert status(sql, fine) == ("approved", "ann", None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"decision": "reject", "reviewer": "ann"}, "A rejection needs a reason"),
        ({"decision": "reject", "reviewer": "ann", "reason": "  "}, "A rejection needs a reason"),
        ({"decision": "approve", "reviewer": "ann", "items": []}, "items"),
        (
            {
                "decision": "approve",
                "reviewer": "",
            },
            "reviewer",
        ),
        ({"reviewer": "ann"}, "decision"),
        ({"decision": "approve", "reviewer": "ann", "items": ["drop table actions"]}, "not one this page offered"),
    ],
)
def test_an_incomplete_bulk_form_decides_nothing(
    site: Site, sql: psycopg.Connection, data: dict[str, object], message: str
) -> None:
    action = site.submit()
    offered = checkbox_values(site.http.get(site.inbox_link()).text)
    before = snapshot(sql)
    response = site.http.post(
        "/approvals/inbox", data={"t": token_of(site.inbox_link()), "items": [offered[str(action.id)]], **data}
    )
    assert response.status_code == 422 and message in response.text
    assert snapshot(sql) == before


def test_a_bad_or_expired_inbox_token_decides_nothing(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    link = site.inbox_link(hours=1)
    offered = checkbox_values(site.http.get(link).text)
    review_token = token_of(site.link(action))
    before = snapshot(sql)
    form = {"decision": "approve", "reviewer": "ann", "items": [offered[str(action.id)]]}
    assert site.http.post("/approvals/inbox", data={"t": review_token, **form}).status_code == 403
    assert site.http.post("/approvals/inbox", data={"t": "forged", **form}).status_code == 403
    assert (
        site.http.post(
            "/approvals/inbox", data={"t": token_of(link), **form}, headers={"Origin": "https://evil.example"}
        ).status_code
        == 403
    )
    advance_clock(sql, 3601)
    assert site.http.get(link).status_code == 410
    assert site.http.post("/approvals/inbox", data={"t": token_of(link), **form}).status_code == 410
    assert snapshot(sql) == before


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, site: Site, database_url: str) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no developer .env
    settings = site.settings
    assert settings.approval_link_secret is not None
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("APPROVAL_LINK_SECRET", settings.approval_link_secret.get_secret_value())
    monkeypatch.setenv("OPS_API_TOKEN", "cli-test-token-0123456789")
    monkeypatch.setenv("PUBLIC_BASE_URL", settings.public_base_url)
    monkeypatch.setenv("INBOX_LINK_HOURS", "2")


def test_the_cli_prints_an_inbox_link_valid_for_inbox_link_hours(
    cli_env: None, site: Site, sql: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    site.submit(summary="waiting")
    with pytest.raises(SystemExit) as exited:
        main(["approvals", "inbox-link"])
    assert exited.value.code == 0
    captured = capsys.readouterr()
    url = captured.out.strip()
    assert re.fullmatch(rf"{re.escape(site.url)}/approvals/inbox\?t=\S+", url)
    assert "valid until" in captured.err
    assert "waiting" in site.http.get(url).text
    advance_clock(sql, 2 * 3600 - 60)
    assert site.http.get(url).status_code == 200
    advance_clock(sql, 120)
    assert site.http.get(url).status_code == 410
