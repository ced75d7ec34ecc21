"""A day whose every count is known, written through the real SQL functions on the database clock:
what the daily report must find for Wednesday 20 January 2027 in Phoenix (DAY), and what it must not
count (events a minute either side of the day)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID

import psycopg

from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.models import ActionRequest, DecisionRequest, Impact
from app.core.settings import Settings
from tests.conftest import make_settings
from tests.schedule_support import phoenix, set_db_clock

DAY = date(2027, 1, 20)
NEXT = DAY + timedelta(days=1)
ZONE = "America/Phoenix"
LIMITS = {"daily_limit": 300, "reserve": 30, "time_zone": ZONE}

# per (agent, tier): what happened on DAY
EXPECTED_ROWS = [
    {"agent": "marketing", "tier": "HIGH", "drafted": 2},
    {"agent": "marketing", "tier": "CRITICAL", "drafted": 1},
    {"agent": "sales", "tier": "LOW", "drafted": 3, "auto_run": 3, "succeeded": 2, "failed": 1},
    {
        "agent": "sales",
        "tier": "MEDIUM",
        "drafted": 4,
        "approved": 1,
        "modified": 1,
        "rejected": 1,
        "expired": 1,
        "succeeded": 1,
        "unknown": 1,
    },
]
EXPECTED_TOTALS = {
    "drafted": 10,
    "auto_run": 3,
    "approved": 1,
    "modified": 1,
    "rejected": 1,
    "expired": 1,
    "succeeded": 3,
    "failed": 1,
    "unknown": 1,
}


def seed_settings(database_url: str, **overrides: object) -> Settings:
    return make_settings(
        database_url=database_url,
        approval_ttl_hours_medium=2,
        llm_daily_budget_usd=5,
        brevo_daily_limit=300,
        brevo_transactional_reserve=30,
        **overrides,
    )


@dataclass
class Seeded:
    waiting: list[UUID] = field(default_factory=list)  # oldest first
    failed_action: UUID | None = None
    unknown_action: UUID | None = None


def note(agent: str, summary: str, impact: Impact) -> ActionRequest:
    return ActionRequest(
        agent=agent, kind="note.record", summary=summary, reasoning="seed", payload={"body": summary}, impact=impact
    )


def campaign(n: int) -> ActionRequest:
    recipients = [{"email": f"customer{i:04d}@example.com"} for i in range(n)]
    return ActionRequest(
        agent="marketing",
        kind="email.campaign",
        summary=f"February news to {n}",
        payload={"subject": "February news", "html": "<p>Hello</p>", "text": "Hello", "recipients": recipients},
        impact=Impact(recipients=n),
    )


def seed(db: Database, sql: psycopg.Connection, settings: Settings) -> Seeded:
    queue = ApprovalQueue(db, settings)
    seeded = Seeded()
    medium, high, critical = Impact(recipients=100), Impact(recipients=1000), Impact(cost_usd=Decimal(500))

    def at(day: date, hour: int, minute: int = 0, second: int = 0) -> None:
        set_db_clock(sql, phoenix(day, hour, minute, second))

    def reject(action_id: UUID, reason: str) -> None:
        queue.decide(action_id, DecisionRequest(decision="reject", reason=reason), actor="owner", channel="link")

    # a minute either side of DAY: nothing of this counts
    at(DAY - timedelta(days=1), 23, 59, 0)
    reject(queue.submit(note("support", "before the day", medium), actor="support").id, "too early")
    db.call("reserve_email_quota", key="before", count=7, purpose="transactional", **LIMITS)
    run = db.call("start_agent_run", agent="support", trigger="schedule")
    db.call("finish_agent_run", id=run["id"], outcome="ok", proposals=1, tokens=50, cost_usd="0.01", error=None)

    at(DAY, 7, 59)
    sales_run = db.call("start_agent_run", agent="sales", trigger="schedule")
    at(DAY, 8, 0)
    low = [queue.submit(note("sales", f"log call {n}", Impact()), actor="sales").id for n in range(3)]
    at(DAY, 8, 5)
    pending = [queue.submit(note("sales", f"follow up {n}", medium), actor="sales").id for n in range(4)]
    at(DAY, 8, 6)
    db.call(
        "finish_agent_run", id=sales_run["id"], outcome="ok", proposals=7, tokens=12_000, cost_usd="0.42", error=None
    )
    at(DAY, 9, 0)
    queue.decide(pending[0], DecisionRequest(decision="approve"), actor="owner", channel="link")
    queue.decide(
        pending[1], DecisionRequest(decision="modify", modifications={"body": "edited"}), actor="owner", channel="link"
    )
    reject(pending[2], "not now")
    at(DAY, 10, 30)  # pending[3]'s two hours are over
    assert queue.expire_due() == [str(pending[3])]

    at(DAY, 10, 59)
    marketing_run = db.call("start_agent_run", agent="marketing", trigger="schedule")
    at(DAY, 11, 0)
    seeded.waiting.append(queue.submit(note("marketing", "announce the sale", high), actor="marketing").id)
    db.call(
        "finish_agent_run",
        id=marketing_run["id"],
        outcome="failed",
        proposals=0,
        tokens=3_000,
        cost_usd="0.10",
        error="model answer did not fit",
    )
    # its scheduled job failed with it: the report lists the failure once, as the agent run
    job = db.call(
        "claim_job_run", job="agent_marketing", scheduled_for=phoenix(DAY, 10, 59), instance="i", lease_seconds=60
    )
    db.call(
        "finish_job_run",
        id=job["id"],
        attempt_token=job["attempt_token"],
        outcome="failed",
        note={"agent": "marketing", "result": {"run_id": marketing_run["id"], "outcome": "failed"}},
        error="model answer did not fit",
        retry_in_seconds=None,
    )
    at(DAY, 11, 10)
    seeded.waiting.append(queue.submit(note("marketing", "post the sale", high), actor="marketing").id)
    at(DAY, 11, 30)
    seeded.waiting.append(queue.submit(note("marketing", "buy ads", critical), actor="marketing").id)

    at(DAY, 12, 0)  # the executor's claim: three LOW and the two approved
    claimed = {
        row["id"]: row["attempt_token"] for row in db.call("claim_actions", worker="w", lease_seconds=600, limit=50)
    }
    assert set(claimed) == {str(item) for item in [*low, pending[0], pending[1]]}
    outcomes = {
        low[0]: "succeeded",
        low[1]: "succeeded",
        low[2]: "failed",
        pending[0]: "succeeded",
        pending[1]: "unknown",
    }
    for action_id, outcome in outcomes.items():
        db.call(
            "finish_action",
            id=action_id,
            attempt_token=claimed[str(action_id)],
            outcome=outcome,
            result=None,
            error=None if outcome == "succeeded" else f"{outcome} on purpose",
            retry_in_seconds=None,
            count_attempt=True,
        )
    seeded.failed_action, seeded.unknown_action = low[2], pending[1]

    at(DAY, 13, 0)  # a Discord announce that Discord refused
    [notification] = db.call("claim_notifications", worker="n", lease_seconds=60, limit=1)
    db.call(
        "fail_notification",
        id=notification["id"],
        attempt_token=notification["attempt_token"],
        error="HTTP 400 Invalid Form Body",
    )
    at(DAY, 14, 0)  # a scheduled run that failed
    job = db.call("claim_job_run", job="agent_support", scheduled_for=phoenix(DAY, 14), instance="i", lease_seconds=60)
    db.call(
        "finish_job_run",
        id=job["id"],
        attempt_token=job["attempt_token"],
        outcome="failed",
        note={},
        error="RuntimeError: support broke",
        retry_in_seconds=None,
    )
    at(DAY, 15, 0)
    db.call("start_agent_run", agent="sales", trigger="cli")  # still running when the day ends

    at(DAY, 16, 0)  # email and model spend
    db.call("reserve_email_quota", key="replies", count=5, purpose="transactional", **LIMITS)
    db.call("reserve_email_quota", key="newsletter", count=120, purpose="campaign", **LIMITS)
    for agent, tokens, cost in (("sales", (1000, 500, 0, 0), "0.03"), ("marketing", (2000, 100, 0, 300), "0.02")):
        call = db.call(
            "llm_reserve", agent=agent, model="claude-sonnet-5-5", reserve_usd="0.50", budget_usd="5", time_zone=ZONE
        )
        db.call(
            "llm_settle",
            call_id=call["call_id"],
            outcome="ok",
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cache_creation_input_tokens=tokens[2],
            cache_read_input_tokens=tokens[3],
            cost_usd=cost,
            latency_ms=900,
            error=None,
        )
    assert not db.call(
        "llm_reserve", agent="sales", model="claude-sonnet-5-5", reserve_usd="9", budget_usd="5", time_zone=ZONE
    )["granted"]

    at(NEXT, 0, 0, 10)  # the next day: none of it counts for DAY
    reject(queue.submit(note("support", "after the day", medium), actor="support").id, "too late")
    at(NEXT, 8, 0)
    db.call("reserve_email_quota", key="today", count=9, purpose="transactional", **LIMITS)
    at(NEXT, 8, 30)  # 400 recipients, planned over the coming days
    submitted = queue.submit(campaign(400), actor="marketing")
    queue.decide(submitted.id, DecisionRequest(decision="approve"), actor="owner", channel="link")
    db.call(
        "plan_email_campaign",
        campaign_id=submitted.id,
        recipients=campaign(400).payload["recipients"],
        batch_size=300,
        **LIMITS,
    )
    at(NEXT, 9, 0)
    return seeded
