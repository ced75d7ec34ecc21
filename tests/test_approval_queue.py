"""The approval queue on real PostgreSQL: submit, decide, concurrency, expiry, audit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.errors import Conflict, Gone, InvalidInput, NotFound
from app.core.models import ActionRequest, DecisionRequest, Impact, Status, Tier
from app.core.settings import Settings
from tests.conftest import advance_clock, make_settings


def note(recipients: int = 0, cost: str = "0", **extra: Any) -> ActionRequest:
    return ActionRequest(
        agent="support",
        kind="note.record",
        summary="Log the call",
        reasoning="the customer asked",
        payload={"body": "Called Ann about her order"},
        impact=Impact(recipients=recipients, cost_usd=cost),
        **extra,
    )


@pytest.fixture
def queue(db: Database, settings: Settings) -> ApprovalQueue:
    return ApprovalQueue(db, settings)


def audit_rows(sql: psycopg.Connection, action_id: object) -> list[tuple]:
    return sql.execute(
        "select actor, event, from_status, to_status, reason from audit_log where action_id = %s order by id",
        (action_id,),
    ).fetchall()


def test_low_risk_runs_at_once_and_is_audited(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    result = queue.submit(note(), actor="agent:support", request_id="req-1")
    assert result.status is Status.APPROVED
    assert result.risk_tier is Tier.LOW
    assert audit_rows(sql, result.id) == [
        ("agent:support", "submitted", None, "pending", None),
        ("policy", "auto_approved", "pending", "approved", "LOW risk runs without approval"),
    ]
    assert sql.execute("select request_id from audit_log where action_id = %s limit 1", (result.id,)).fetchone() == (
        "req-1",
    )


def test_auto_run_can_be_switched_off(db: Database, database_url: str) -> None:
    queue = ApprovalQueue(db, make_settings(database_url=database_url, auto_run_low=False))
    assert queue.submit(note(), actor="t").status is Status.PENDING


def test_medium_waits_with_reasons_and_a_tier_ttl(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    result = queue.submit(note(recipients=120), actor="t")
    assert result.status is Status.PENDING
    assert result.risk_tier is Tier.MEDIUM
    assert [r.dimension for r in result.reasons] == ["recipients"]
    hours = sql.execute(
        "select extract(epoch from expires_at - requested_at) / 3600 from actions where id = %s", (result.id,)
    ).fetchone()[0]
    assert float(hours) == pytest.approx(72)


def test_model_can_raise_the_tier_never_lower_it(queue: ApprovalQueue) -> None:
    raised = queue.submit(note(suggested_tier=Tier.HIGH), actor="t")
    assert raised.risk_tier is Tier.HIGH and raised.status is Status.PENDING
    kept = queue.submit(note(cost="150", suggested_tier=Tier.LOW), actor="t")
    assert kept.risk_tier is Tier.CRITICAL


def test_unknown_kind_and_bad_payload_are_refused_with_nothing_written(
    queue: ApprovalQueue, sql: psycopg.Connection
) -> None:
    with pytest.raises(InvalidInput, match="unknown action kind"):
        queue.submit(note().model_copy(update={"kind": "email.blast"}), actor="t")
    with pytest.raises(InvalidInput, match="payload does not fit"):
        queue.submit(note().model_copy(update={"payload": {"text": "wrong field"}}), actor="t")
    assert sql.execute("select count(*) from actions").fetchone() == (0,)
    assert sql.execute("select count(*) from audit_log").fetchone() == (0,)


def test_same_dedupe_key_never_opens_a_second_action(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    first = queue.submit(note(recipients=80, dedupe_key="ticket:42"), actor="t")
    again = queue.submit(note(recipients=80, dedupe_key="ticket:42"), actor="t")
    assert again.id == first.id and again.duplicate
    assert sql.execute("select count(*) from actions").fetchone() == (1,)
    queue.decide(first.id, DecisionRequest(decision="reject", reason="not now"), actor="ann", channel="link")
    assert queue.submit(note(recipients=80, dedupe_key="ticket:42"), actor="t").id != first.id


def test_reject_writes_exactly_the_decision_fields(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    """The seed's bug: a reject that wrote anything but the decision fields."""
    action = queue.submit(note(recipients=75), actor="t")
    columns = [
        row[0]
        for row in sql.execute(
            "select column_name from information_schema.columns where table_name = 'actions'"
        ).fetchall()
    ]
    select = "select " + ", ".join(columns) + " from actions where id = %s"
    before = dict(zip(columns, sql.execute(select, (action.id,)).fetchone(), strict=True))
    queue.decide(action.id, DecisionRequest(decision="reject", reason="Wrong tone"), actor="ann", channel="link")
    after = dict(zip(columns, sql.execute(select, (action.id,)).fetchone(), strict=True))
    changed = {name for name in columns if before[name] != after[name]}
    assert changed == {
        "status",
        "decision",
        "decided_by",
        "decided_via",
        "decided_at",
        "rejection_reason",
        "feedback",
        "updated_at",
    }  # decided_via: the channel (issue 12), a decision field too
    assert after["status"] == "rejected" and after["decision"] == "rejected"
    assert after["rejection_reason"] == after["feedback"] == "Wrong tone"
    assert after["decided_by"] == "ann"


def test_reject_needs_a_reason(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    action = queue.submit(note(recipients=75), actor="t")
    with pytest.raises(InvalidInput, match="reason"):
        queue.decide(action.id, DecisionRequest(decision="reject", reason="  "), actor="ann", channel="link")
    assert sql.execute("select status from actions where id = %s", (action.id,)).fetchone() == ("pending",)


def test_modify_stores_the_difference(queue: ApprovalQueue) -> None:
    action = queue.submit(note(recipients=75), actor="t")
    record = queue.decide(
        action.id,
        DecisionRequest(decision="modify", modifications={"body": "Called Ann; refund sent"}),
        actor="ann",
        channel="link",
    )
    assert record.status is Status.APPROVED and record.decision == "modified"
    assert record.modifications == {"body": {"from": "Called Ann about her order", "to": "Called Ann; refund sent"}}
    assert record.requested_action["body"] == "Called Ann; refund sent"


def test_modify_refuses_fields_that_are_not_editable(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    action = queue.submit(note(recipients=75), actor="t")
    with pytest.raises(InvalidInput, match="does not allow editing"):
        queue.decide(
            action.id,
            DecisionRequest(decision="modify", modifications={"metadata": {"x": 1}}),
            actor="ann",
            channel="link",
        )
    assert sql.execute("select status from actions where id = %s", (action.id,)).fetchone() == ("pending",)


def test_twenty_concurrent_decisions_one_wins(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    action = queue.submit(note(recipients=75), actor="t")

    def decide(n: int) -> str:
        request = (
            DecisionRequest(decision="approve") if n % 2 else DecisionRequest(decision="reject", reason=f"no ({n})")
        )
        try:
            queue.decide(action.id, request, actor=f"reviewer-{n}", channel="link")
        except Conflict as exc:
            return f"conflict:{exc.details['decided_by']}"
        return "won"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(decide, range(20)))
    assert outcomes.count("won") == 1
    winner = sql.execute("select decided_by from actions where id = %s", (action.id,)).fetchone()[0]
    assert outcomes.count(f"conflict:{winner}") == 19
    decided = sql.execute(
        "select count(*) from audit_log where action_id = %s and event = 'decided'", (action.id,)
    ).fetchone()
    assert decided == (1,)


def test_a_late_decision_says_who_decided_and_when(queue: ApprovalQueue) -> None:
    action = queue.submit(note(recipients=75), actor="t")
    queue.decide(action.id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    with pytest.raises(Conflict) as late:
        queue.decide(action.id, DecisionRequest(decision="reject", reason="x"), actor="bob", channel="link")
    assert "decided by ann" in late.value.message
    assert late.value.details["decided_by"] == "ann" and late.value.details["decided_at"]


def test_expired_approvals_are_refused_then_swept(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    action = queue.submit(note(recipients=75), actor="t")
    advance_clock(sql, 73 * 3600)
    with pytest.raises(Gone):
        queue.decide(action.id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    assert sql.execute("select status from actions where id = %s", (action.id,)).fetchone() == ("pending",)
    assert queue.expire_due() == [str(action.id)]
    assert queue.expire_due() == []
    assert audit_rows(sql, action.id)[-1] == ("expiry", "expired", "pending", "expired", "approval time ran out")
    with pytest.raises(Gone, match="expired") as swept:  # still 410 once swept: expired, not decided by someone
        queue.decide(action.id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    assert swept.value.details["status"] == "expired"
    with pytest.raises(Gone):
        queue.cancel(action.id, actor="ann", reason="too late anyway")


def test_unknown_action_is_not_found(queue: ApprovalQueue) -> None:
    import uuid

    with pytest.raises(NotFound):
        queue.decide(uuid.uuid4(), DecisionRequest(decision="approve"), actor="ann", channel="link")


def test_list_filters_and_paginates(queue: ApprovalQueue) -> None:
    for n in range(5):
        queue.submit(note(recipients=60 + n), actor="t")
    queue.submit(note(cost="500"), actor="t")
    page = queue.list(status=Status.PENDING, limit=2, offset=0)
    assert page.total == 6 and len(page.items) == 2
    assert page.items[0].requested_at <= page.items[1].requested_at  # oldest first
    assert queue.list(tier=Tier.CRITICAL).total == 1
    assert queue.list(agent="nobody").total == 0


def test_cancel_and_settle(queue: ApprovalQueue, sql: psycopg.Connection) -> None:
    action = queue.submit(note(recipients=75), actor="t")
    assert queue.cancel(action.id, actor="ann", reason="customer called back").status is Status.CANCELLED
    with pytest.raises(Conflict):
        queue.settle(action.id, "succeeded", actor="ann", reason="checked")


def test_settling_unknown_as_retry_gives_a_real_new_run(
    db: Database, database_url: str, sql: psycopg.Connection
) -> None:
    queue = ApprovalQueue(db, make_settings(database_url=database_url, executor_max_attempts=2))
    action = queue.submit(note(), actor="t")  # LOW: approved at once
    [first] = db.call("claim_actions", worker="w1", lease_seconds=60, limit=1)
    db.call("mark_dispatched", id=action.id, attempt_token=first["attempt_token"])
    advance_clock(sql, 61)  # the worker died after the outside call started
    assert db.call("recover_expired_leases", actor="t", limit=10)["recovered"][0]["status"] == "unknown"
    retried = queue.settle(action.id, "retry", actor="ann", reason="checked: it never arrived")
    assert retried.status is Status.APPROVED and retried.attempts == 1
    [second] = db.call("claim_actions", worker="w2", lease_seconds=60, limit=1)
    # a later attempt, so a handler looks for what the first may have made before making it again
    assert (second["attempts"], second["max_attempts"]) == (2, 3)
    # and a transient failure of the new run is retried, not the end of the action's attempts
    after = db.call(
        "finish_action",
        id=action.id,
        attempt_token=second["attempt_token"],
        outcome="retry",
        result=None,
        error="HTTP 503",
        retry_in_seconds=1,
        count_attempt=True,
    )
    assert after["status"] == "approved"
