"""The world the agent tests run in: the real SDKs against local fakes of Anthropic, HubSpot,
Brevo, Notion and Discord, real PostgreSQL, and the live app serving the signed review links.

A test scripts the model's answers (`answer`), reads what the model was sent (`prompts`), runs an
agent (`run`), drains the Discord outbox (`announce`), decides through a posted link over HTTP
(`decide`), and runs the executor (`execute`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg

from agents import run_agent
from app.agent_runs.report import AgentRunReport
from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.clients.claude_ledger import claude_client
from app.core.database import Database
from app.core.settings import Settings
from app.memory.models import MemoryItem
from app.memory.store import MemoryStore
from app.notifications.sender import NotificationSender
from app.web import create_app
from tests.conftest import make_settings
from tests.fake_brevo import API_KEY as BREVO_KEY
from tests.fake_brevo import SENDER, FakeBrevo
from tests.fake_discord import FakeDiscord, Request
from tests.fake_http import Reply
from tests.fake_hubspot import TOKEN as HUBSPOT_TOKEN
from tests.fake_hubspot import FakeHubSpot, iso
from tests.link_support import token_of
from tests.live_server import free_port, serve
from tests.test_claude import API_KEY as ANTHROPIC_KEY
from tests.test_claude import FakeAnthropic, answer
from tests.test_notion import BLOG_DB, FakeNotion
from tests.test_notion import TOKEN as NOTION_TOKEN

DEAL_TO_CONTACT = 3
TICKET_TO_CONTACT = 16


@dataclass
class World:
    settings: Settings
    db: Database
    sql: psycopg.Connection
    claude: FakeAnthropic
    hubspot: FakeHubSpot
    brevo: FakeBrevo
    notion: FakeNotion
    discord: FakeDiscord
    http: httpx.Client  # the live app, where the signed links point
    sleeps: list[float] = field(default_factory=list)

    # --- the model ------------------------------------------------------------------------------
    def answer(self, plan: dict[str, Any] | str, **usage: int) -> None:
        """Script the model's next answer: a plan (as JSON), or raw text."""
        text = plan if isinstance(plan, str) else json.dumps(plan)
        self.claude.replies.append(Reply(200, answer(text, **usage)))

    def prompts(self) -> list[str]:
        """The user message of every request the model got, in order."""
        return [body["messages"][0]["content"] for body in self.claude.messages]

    def systems(self) -> list[str]:
        return [body["system"][0]["text"] for body in self.claude.messages]

    # --- running --------------------------------------------------------------------------------
    def run(self, agent: str, *, dry_run: bool = False, **overrides: Any) -> AgentRunReport:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        clients = Clients(settings, self.db, sleep=self.sleeps.append)
        planner = claude_client(settings, self.db, sleep=self.sleeps.append)
        memory = MemoryStore(self.db, settings)
        try:
            return run_agent(
                agent,
                "test",
                dry_run=dry_run,
                settings=settings,
                db=self.db,
                clients=clients,
                memory=memory,
                planner=planner,
            )
        finally:
            planner.close()
            clients.close()
            memory.close()

    def execute(self) -> int:
        executor = Executor(
            self.db,
            self.settings,
            worker_id="test-executor",
            clients=Clients(self.settings, self.db, sleep=self.sleeps.append),
            rng=lambda: 1.0,
        )
        try:
            return executor.run_until_idle()
        finally:
            executor.close()

    def announce(self) -> list[Request]:
        """Drain the Discord outbox to the fake Discord; returns every post it has had."""
        sender = NotificationSender(self.db, self.settings, worker_id="test-discord", rng=lambda: 1.0)
        try:
            sender.run_until_idle()
        finally:
            sender.close()
        return self.discord.posts()

    def links(self) -> dict[UUID, dict[str, str]]:
        """The buttons' links of every Discord post, by action and purpose (review, approve, reject)."""
        found: dict[UUID, dict[str, str]] = {}
        for post in self.discord.posts():
            for row in post.body.get("components") or []:
                for button in row["components"]:
                    match = re.search(r"/approvals/([0-9a-f-]{36})\?", button["url"])
                    assert match, button["url"]
                    found.setdefault(UUID(match[1]), {})[button["label"].lower()] = button["url"]
        return found

    def decide(self, link: str, decision: str, *, reason: str | None = None, reviewer: str = "Ann Owner") -> None:
        """Post the review page's form, as a reviewer's browser does after following the link."""
        action_id = re.search(r"/approvals/([0-9a-f-]{36})\?", link)
        assert action_id
        form = {"t": token_of(link), "decision": decision, "reviewer": reviewer}
        if reason is not None:
            form["reason"] = reason
        posted = self.http.post(f"/approvals/{action_id[1]}/decision", data=form)
        assert posted.status_code == 303, posted.text

    # --- the database -----------------------------------------------------------------------------
    def now(self) -> datetime:
        return ApprovalQueue(self.db, self.settings).clock()

    def actions(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self.sql.execute(
            "select to_jsonb(a) from actions a where %(kind)s::text is null or a.kind = %(kind)s "
            "order by a.requested_at, a.kind, a.id",
            {"kind": kind},
        ).fetchall()
        return [row[0] for row in rows]

    def runs(self) -> list[dict[str, Any]]:
        return [
            row[0]
            for row in self.sql.execute("select to_jsonb(r) from agent_runs r order by r.started_at, r.id").fetchall()
        ]

    def remember(self, *items: MemoryItem) -> dict[str, int]:
        """Memory rows (full-text mode: no embeddings provider), their ids by source_id."""
        MemoryStore(self.db, self.settings).upsert(items)
        rows = self.sql.execute("select source_id, id from memory").fetchall()
        return {source_id: memory_id for source_id, memory_id in rows}

    # --- HubSpot ----------------------------------------------------------------------------------
    def contact(
        self, email: str | None, first: str, last: str = "", *, created: datetime | None = None, **properties: str
    ) -> str:
        return self.hubspot.add(
            "contacts", created_at=iso(created or self.now()), email=email, firstname=first, lastname=last, **properties
        )

    def stale_deal(
        self,
        name: str,
        contact_id: str | None,
        *,
        quiet_days: int = 30,
        stage: str = "qualifiedtobuy",
        owner: str = "501",
    ) -> str:
        now = self.now()
        deal_id = self.hubspot.add(
            "deals",
            created_at=iso(now - timedelta(days=365)),
            dealname=name,
            dealstage=stage,
            pipeline="default",
            amount="1200",
            hubspot_owner_id=owner,
            notes_last_updated=iso(now - timedelta(days=quiet_days)),
        )
        if contact_id is not None:
            self.hubspot.associate("deals", deal_id, "contacts", contact_id, DEAL_TO_CONTACT)
        return deal_id

    def ticket(self, subject: str, content: str, requester: str | None) -> str:
        ticket_id = self.hubspot.add(
            "tickets",
            created_at=iso(self.now()),
            subject=subject,
            content=content,
            hs_pipeline="0",
            hs_pipeline_stage="1",
            hs_ticket_priority="MEDIUM",
        )
        if requester is not None:
            self.hubspot.associate("tickets", ticket_id, "contacts", requester, TICKET_TO_CONTACT)
        return ticket_id


@contextmanager
def agent_world(
    db: Database, database_url: str, sql: psycopg.Connection, tmp_path: Path, **overrides: Any
) -> Iterator[World]:
    with ExitStack() as stack:
        claude = FakeAnthropic()
        stack.enter_context(claude.server)
        hubspot = stack.enter_context(FakeHubSpot())
        brevo = stack.enter_context(FakeBrevo())
        notion = FakeNotion()
        stack.enter_context(notion.server)
        discord = stack.enter_context(FakeDiscord())
        port = free_port()
        settings = make_settings(
            database_url=database_url,
            opsdesk_data_dir=tmp_path,
            public_base_url=f"http://127.0.0.1:{port}",
            anthropic_api_key=ANTHROPIC_KEY,
            anthropic_base_url=claude.server.url,
            hubspot_private_app_token=HUBSPOT_TOKEN,
            hubspot_base_url=hubspot.url,
            brevo_api_key=BREVO_KEY,
            brevo_sender_email=SENDER,
            brevo_base_url=brevo.url,
            notion_api_key=NOTION_TOKEN,
            notion_base_url=notion.server.url,
            notion_blog_database_id=BLOG_DB,
            discord_webhook_url=discord.webhook_url,
            embeddings_provider="none",
            **overrides,
        )
        url = stack.enter_context(serve(create_app(settings, db), port=port))
        http = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        yield World(settings, db, sql, claude, hubspot, brevo, notion, discord, http)
