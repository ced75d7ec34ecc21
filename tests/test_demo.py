"""`opsdesk demo`: example articles and actions of every tier, no outside account, marked DEMO on
the pages, removed exactly by `opsdesk demo --remove`; its review page opened in real Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser

from app.approvals.executor import Executor
from app.cli.demo_data import ARTICLES, MARK, PLANS
from app.core.database import Database
from app.core.models import Impact, Tier
from app.memory.models import MemoryItem
from app.memory.store import MemoryStore
from tests.browser_support import launched_chromium
from tests.cli_support import database_env, run
from tests.link_support import Site, running_site


@pytest.fixture
def site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url) as running:
        yield running


@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, site: Site) -> pytest.MonkeyPatch:
    """The CLI on the test database, its links pointing at the running site."""
    env = database_env(monkeypatch, tmp_path, database_url)
    env.setenv("PUBLIC_BASE_URL", site.url)
    return env


def _actions(sql: psycopg.Connection) -> list[tuple[str, str, str, str]]:
    return sql.execute("select id::text, risk_level, status, summary from actions order by summary").fetchall()


def test_the_demo_drafts_every_tier_loads_articles_and_is_removed_exactly(
    demo_env: pytest.MonkeyPatch, site: Site, db: Database, sql: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    # a person's own action and article, which the demo's removal must leave alone
    own = site.submit(summary="Our own follow-up", recipients=120)
    store = MemoryStore(db, site.settings.model_copy(update={"embeddings_provider": "none"}))  # as the CLI's
    store.upsert([MemoryItem(kind="kb_article", source="files", source_id="own.md", content="Our own refund notes")])

    assert run("demo") == 0
    out = capsys.readouterr().out
    demo = [row for row in _actions(sql) if row[3].startswith(f"{MARK} — ")]
    assert len(demo) == len(PLANS)
    assert {row[1] for row in demo} == {tier.value for tier in Tier}  # every tier, from the real policy
    assert {row[2] for row in demo if row[1] == "LOW"} == {"approved"}  # LOW ran at once (AUTO_RUN_LOW)
    assert {row[2] for row in demo if row[1] != "LOW"} == {"pending"}
    assert "/approvals/inbox?t=" in out and "opsdesk demo --remove" in out
    hits = store.search("refund", kinds=["kb_article"], limit=10).results
    assert {hit.title for hit in hits} >= {f"{MARK} — Refund policy"}

    assert run("demo") == 0  # again: nothing open is drafted twice
    assert len([row for row in _actions(sql) if row[3].startswith(MARK)]) == len(PLANS)

    # the LOW notes run (the executor writes their notes): removal takes those notes too
    executor = Executor(db, site.settings, worker_id="demo-test")
    try:
        assert executor.run_once() >= 2
    finally:
        executor.close()
    assert sql.execute("select count(*) from notes").fetchone() == (2,)

    capsys.readouterr()
    assert run("demo", "--remove") == 0
    removed = capsys.readouterr().out
    assert f"removed the demo: {len(PLANS)} action(s), 2 note(s), {len(ARTICLES)} article(s), " in removed
    assert [row[0] for row in _actions(sql)] == [str(own.id)]
    assert sql.execute("select source, source_id from memory").fetchall() == [("files", "own.md")]
    assert sql.execute("select count(*) from notes").fetchone() == (0,)
    # the audit log is append-only: each demo action's trail stays, closed by a demo_removed row
    closed = sql.execute("select count(*) from audit_log where event = 'demo_removed'").fetchone()
    assert closed == (len(PLANS),)
    assert run("demo", "--remove") == 0  # nothing left: removes nothing
    assert [row[0] for row in _actions(sql)] == [str(own.id)]
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


def test_the_demos_review_page_and_inbox_open_in_chromium_marked_as_demo(
    demo_env: pytest.MonkeyPatch, site: Site, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("demo") == 0
    out = capsys.readouterr().out
    review = re.search(r"(http://\S+/approvals/[0-9a-f-]{36}\?t=\S+)", out)
    inbox = re.search(r"(http://\S+/approvals/inbox\?t=\S+)", out)
    assert review and inbox, out
    page = browser.new_page()
    try:
        response = page.goto(review[1])
        assert response is not None and response.status == 200
        text = page.inner_text("body")
        assert MARK in text and "CRITICAL" in text and "opsdesk demo --remove" in text
        assert page.locator("button", has_text="Approve").count() >= 1
        response = page.goto(inbox[1])
        assert response is not None and response.status == 200
        listed = page.inner_text("body")
        assert listed.count(MARK) >= len([plan for plan in PLANS if plan.impact != Impact()]) - 1
    finally:
        page.close()
