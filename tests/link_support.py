"""Shared by the link, review page, inbox and browser tests: the real service on 127.0.0.1 with
PUBLIC_BASE_URL set to its own address, actions to review, their links, and a snapshot of every
row a decision could write."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg

from app.approvals.links import LinkSigner, Purpose
from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.models import ActionMetadata, ActionRecord, ActionRequest, Impact
from app.core.settings import Settings
from app.web import create_app
from tests.conftest import make_settings
from tests.live_server import free_port, serve


@dataclass
class Site:
    url: str
    settings: Settings
    queue: ApprovalQueue
    signer: LinkSigner
    http: httpx.Client  # follows no redirects, sends no Origin: a test says what a browser would

    def submit(
        self,
        body: str = "Followed up with ACME",
        *,
        recipients: int = 120,
        cost: str = "0",
        agent: str = "sales",
        summary: str = "Log the follow-up",
    ) -> ActionRecord:
        request = ActionRequest(
            agent=agent,
            kind="note.record",
            summary=summary,
            reasoning="the deal went quiet",
            payload={"body": body},
            impact=Impact(recipients=recipients, cost_usd=cost),
            metadata=ActionMetadata(model_id="claude-sonnet-5-5", confidence=0.82),
        )
        return self.action(self.queue.submit(request, actor="test").id)

    def submit_shaped(
        self, payload: dict[str, Any], *, recipients: int = 120, summary: str = "Send the spring newsletter"
    ) -> ActionRecord:
        """A pending action whose payload has a shape no built-in kind drafts yet (an email, a CRM
        change), written straight through the SQL function; its kind exists only in this row."""
        row = self.queue.db.call(
            "submit_action",
            action={
                "agent": "marketing",
                "kind": "test.shaped",
                "summary": summary,
                "reasoning": "spring sale starts Monday",
                "payload": payload,
                "impact": {"recipients": recipients, "cost_usd": "0", "public": False, "reversible": True},
                "metadata": {"confidence": 0.7},
            },
            risk_level="MEDIUM",
            risk_reasons=[
                {"dimension": "recipients", "tier": "MEDIUM", "detail": f"{recipients} recipients is 50-300"}
            ],
            auto_run=False,
            ttl_seconds=72 * 3600,
            max_attempts=5,
            actor="test",
            request_id=None,
        )
        return self.action(row["id"])

    def action(self, action_id: UUID) -> ActionRecord:
        record = self.queue.review_state(action_id).action
        assert record is not None
        return record

    def link(self, action: ActionRecord, purpose: Purpose = "review") -> str:
        assert action.expires_at is not None
        return self.signer.url(action.id, action.draft_hash, purpose, action.expires_at)

    def inbox_link(self, hours: float = 24) -> str:
        return self.signer.inbox_url(self.queue.clock() + timedelta(hours=hours))

    def post_form(self, action_id: UUID, data: dict[str, Any], **headers: str) -> httpx.Response:
        return self.http.post(f"/approvals/{action_id}/decision", data=data, headers=headers)


@contextmanager
def running_site(db: Database, database_url: str, **overrides: Any) -> Iterator[Site]:
    port = free_port()
    values = {"public_base_url": f"http://127.0.0.1:{port}", **overrides}  # a test may say https
    settings = make_settings(database_url=database_url, **values)
    with serve(create_app(settings, db), port=port) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Site(url, settings, ApprovalQueue(db, settings), LinkSigner(settings), http)


def token_of(url: str) -> str:
    found = re.search(r"[?&]t=([^&]+)", url)
    assert found
    return httpx.QueryParams(f"t={found[1]}")["t"]


def snapshot(sql: psycopg.Connection) -> dict[str, Any]:
    """Every row a decision (or a PIN try) could write, to compare before and after a request."""
    return {
        "actions": sql.execute("select coalesce(jsonb_agg(to_jsonb(a) order by a.id), '[]') from actions a").fetchone()[
            0
        ],
        "audit": sql.execute("select count(*) from audit_log").fetchone()[0],
        "pin": sql.execute(
            "select coalesce(jsonb_agg(to_jsonb(f) order by f.action_id), '[]') from approval_pin_failures f"
        ).fetchone()[0],
    }
