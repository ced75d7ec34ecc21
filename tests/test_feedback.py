"""Reviewers' feedback for the agents: rejection reasons, edits and notes, newest first."""

from __future__ import annotations

import psycopg

from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.models import ActionRequest, DecisionRequest, Impact
from app.core.settings import Settings
from tests.conftest import advance_clock


def pending(queue: ApprovalQueue, agent: str = "sales", kind: str = "note.record", summary: str = "s") -> object:
    payload = {"body": "draft"} if kind == "note.record" else {"event": "deal.won"}
    return queue.submit(
        ActionRequest(agent=agent, kind=kind, summary=summary, payload=payload, impact=Impact(recipients=100)),
        actor="t",
    ).id


def test_recent_feedback_has_reasons_and_edits_newest_first(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    queue = ApprovalQueue(db, settings)
    rejected = pending(queue, summary="rejected")
    queue.decide(rejected, DecisionRequest(decision="reject", reason="too pushy"), actor="ann", channel="link")
    advance_clock(sql, 60)
    edited = pending(queue, summary="edited")
    queue.decide(
        edited, DecisionRequest(decision="modify", modifications={"body": "softer"}), actor="ann", channel="link"
    )
    advance_clock(sql, 60)
    plain = pending(queue, summary="approved as drafted")
    queue.decide(plain, DecisionRequest(decision="approve"), actor="ann", channel="link")
    noted = pending(queue, summary="approved with a note")
    advance_clock(sql, 60)
    queue.decide(
        noted, DecisionRequest(decision="approve", reason="next time mention the discount"), actor="bob", channel="link"
    )
    other_agent = pending(queue, agent="support")
    queue.decide(other_agent, DecisionRequest(decision="reject", reason="not ours"), actor="ann", channel="link")
    other_kind = pending(queue, kind="webhook.post")
    queue.decide(other_kind, DecisionRequest(decision="reject", reason="wrong event"), actor="ann", channel="link")
    pending(queue, summary="still pending")

    items = queue.recent_feedback("sales", "note.record")
    assert [(item.summary, item.decision) for item in items] == [
        ("approved with a note", "approved"),
        ("edited", "modified"),
        ("rejected", "rejected"),
    ]
    assert items[0].feedback == "next time mention the discount" and items[0].decided_by == "bob"
    assert items[1].modifications == {"body": {"from": "draft", "to": "softer"}}
    assert items[2].rejection_reason == "too pushy"
    assert [item.summary for item in queue.recent_feedback("sales", "note.record", limit=1)] == ["approved with a note"]
    every_kind = queue.recent_feedback("sales")
    assert {item.kind for item in every_kind} == {"note.record", "webhook.post"} and len(every_kind) == 4
    assert [item.rejection_reason for item in queue.recent_feedback("support")] == ["not ours"]
    assert queue.recent_feedback("marketing") == []
