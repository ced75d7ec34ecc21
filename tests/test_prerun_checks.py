"""The executor checks the policy again before it acts: riskier facts since the approval send the
action back to pending (new tier, fresh expiry, audited) instead of running it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from uuid import UUID

import psycopg
import pytest

from app.approvals.executor import Executor
from app.approvals.prerun import SendBack
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.errors import Conflict, StaleAttempt
from app.core.models import ActionRequest, DecisionRequest, Impact, Reason, Tier
from app.core.settings import Settings
from app.email.quota import EmailQuota
from app.kinds.context import ClaimedAction
from app.kinds.registry import kind_registry
from tests.conftest import advance_clock, make_settings
from tests.fake_brevo import API_KEY, SENDER, FakeBrevo
from tests.link_support import running_site, token_of


@pytest.fixture
def queue(db: Database, settings: Settings) -> ApprovalQueue:
    return ApprovalQueue(db, settings)


@pytest.fixture
def executor(db: Database, settings: Settings) -> Iterator[Executor]:
    worker = Executor(db, settings, worker_id="w1", clients=Clients(settings))
    yield worker
    worker.close()


def approved_note(queue: ApprovalQueue, recipients: int = 120) -> UUID:
    action_id = queue.submit(
        ActionRequest(
            agent="sales",
            kind="note.record",
            summary="Log it",
            payload={"body": "called"},
            impact=Impact(recipients=recipients),
        ),
        actor="t",
    ).id
    if recipients >= 50:
        queue.decide(action_id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    return action_id


def row(sql: psycopg.Connection, action_id: UUID) -> dict:
    return sql.execute("select to_jsonb(a) - 'attempt_token' from actions a where id = %s", (action_id,)).fetchone()[0]


def notes(sql: psycopg.Connection) -> int:
    return sql.execute("select count(*) from notes").fetchone()[0]


def test_more_recipients_since_approval_send_it_back_to_pending(
    queue: ApprovalQueue, executor: Executor, sql: psycopg.Connection
) -> None:
    action_id = approved_note(queue)
    # the audience grew after the approval (say a segment was refreshed): 400 is over 300
    sql.execute(
        "update actions set estimated_impact = estimated_impact || '{\"recipients\": 400}' where id = %s", (action_id,)
    )
    advance_clock(sql, 3600)
    assert executor.run_once() == 1
    after = row(sql, action_id)
    assert after["status"] == "pending" and after["risk_level"] == "HIGH"
    assert after["decision"] is None and after["decided_by"] is None and after["attempts"] == 0
    assert [reason["dimension"] for reason in after["risk_reasons"]] == ["recipients"]
    now = sql.execute("select db_now()").fetchone()[0]
    fresh = sql.execute("select %s::timestamptz - db_now()", (after["expires_at"],)).fetchone()[0]
    assert fresh.total_seconds() == pytest.approx(72 * 3600, abs=5), now
    assert notes(sql) == 0  # the handler never ran
    audit = sql.execute(
        "select event, from_status, to_status, actor, reason, details from audit_log "
        "where action_id = %s order by id desc limit 1",
        (action_id,),
    ).fetchone()
    assert audit[:4] == ("requeued", "running", "pending", "w1")
    assert audit[4] == "approved as MEDIUM, the policy now says HIGH: 400 recipients is over 300"
    assert audit[5]["from_tier"] == "MEDIUM" and audit[5]["to_tier"] == "HIGH"
    # a person approves the new facts; then it runs
    queue.decide(action_id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    assert executor.run_once() == 1 and notes(sql) == 1 and row(sql, action_id)["status"] == "succeeded"


def test_unchanged_or_safer_facts_run_as_approved(
    queue: ApprovalQueue, executor: Executor, sql: psycopg.Connection
) -> None:
    same, safer = approved_note(queue), approved_note(queue)
    sql.execute(
        "update actions set estimated_impact = estimated_impact || '{\"recipients\": 3}' where id = %s", (safer,)
    )
    assert executor.run_until_idle() == 2
    assert row(sql, same)["status"] == row(sql, safer)["status"] == "succeeded"


def test_stricter_thresholds_or_kind_rules_since_approval_send_it_back(
    db: Database, database_url: str, queue: ApprovalQueue, sql: psycopg.Connection
) -> None:
    medium, low = approved_note(queue, 120), approved_note(queue, 3)
    assert row(sql, low)["status"] == "approved" and row(sql, low)["risk_level"] == "LOW"
    # the operator lowered the HIGH threshold, and the note kind became irreversible, before they ran
    stricter = make_settings(database_url=database_url, risk_recipients_medium=2, risk_recipients_high=100)
    kinds = kind_registry()
    irreversible = {**kinds, "note.record": replace(kinds["note.record"], always_irreversible=True)}
    worker = Executor(db, stricter, kinds=irreversible, worker_id="w2", clients=Clients(stricter))
    try:
        assert worker.run_until_idle() == 2
    finally:
        worker.close()
    assert (row(sql, medium)["status"], row(sql, medium)["risk_level"]) == ("pending", "HIGH")
    assert (row(sql, low)["status"], row(sql, low)["risk_level"]) == ("pending", "HIGH")
    assert {r["dimension"] for r in row(sql, low)["risk_reasons"]} == {"recipients", "irreversible"}
    assert notes(sql) == 0


def test_the_checks_are_a_hook_the_executor_runs_in_order(
    db: Database, settings: Settings, queue: ApprovalQueue, sql: psycopg.Connection
) -> None:
    seen: list[str] = []

    def first(action: ClaimedAction, kind: object) -> SendBack | None:
        seen.append("first")
        return None

    def objects(action: ClaimedAction, kind: object) -> SendBack:
        seen.append("objects")
        return SendBack(Tier.CRITICAL, [Reason(dimension="money", tier=Tier.CRITICAL, detail="quota")], "over quota")

    def never(action: ClaimedAction, kind: object) -> SendBack | None:
        raise AssertionError("checks after the first objection do not run")

    action_id = approved_note(queue)
    worker = Executor(db, settings, worker_id="w3", clients=Clients(settings), checks=[first, objects, never])
    try:
        worker.run_once()
    finally:
        worker.close()
    assert seen == ["first", "objects"]
    assert (row(sql, action_id)["status"], row(sql, action_id)["risk_level"]) == ("pending", "CRITICAL")


def test_only_the_current_attempt_before_any_outside_call_can_send_back(
    db: Database, settings: Settings, queue: ApprovalQueue, sql: psycopg.Connection
) -> None:
    action_id = approved_note(queue)
    claimed = db.call("claim_actions", worker="w", lease_seconds=60, limit=1)[0]
    args = {"id": action_id, "risk_level": "HIGH", "risk_reasons": [], "ttl_seconds": 3600, "reason": "riskier"}
    with pytest.raises(StaleAttempt):
        db.call("requeue_action", attempt_token="00000000-0000-0000-0000-000000000000", **args)
    db.call("mark_dispatched", id=action_id, attempt_token=claimed["attempt_token"])
    with pytest.raises(Conflict, match="reached the outside world"):
        db.call("requeue_action", attempt_token=claimed["attempt_token"], **args)
    assert row(sql, action_id)["status"] == "running"


def test_links_of_the_earlier_round_stop_working_once_sent_back(
    db: Database, database_url: str, sql: psycopg.Connection
) -> None:
    with running_site(db, database_url) as site:
        action = site.submit()
        old_review, old_approve = site.link(action), site.link(action, "approve")
        site.queue.decide(action.id, DecisionRequest(decision="approve"), actor="ann", channel="link")
        sql.execute(
            "update actions set estimated_impact = estimated_impact || '{\"recipients\": 400}' where id = %s",
            (action.id,),
        )
        worker = Executor(db, site.settings, worker_id="w4", clients=Clients(site.settings))
        try:
            worker.run_once()
        finally:
            worker.close()
        reopened = site.action(action.id)
        assert reopened.status.value == "pending" and reopened.risk_level is Tier.HIGH
        for url in (old_review, old_approve):
            page = site.http.get(url)
            assert page.status_code == 409 and "reopened" in page.text
        refused = site.post_form(action.id, {"t": token_of(old_approve), "decision": "approve", "reviewer": "ann"})
        assert refused.status_code == 409 and site.action(action.id).status.value == "pending"
        new_page = site.http.get(site.link(reopened)).text
        assert "HIGH" in new_page and "400 recipients is over 300" in new_page


def test_an_approved_email_whose_quota_day_filled_up_is_deferred_to_the_next_day_not_failed(
    db: Database,
    database_url: str,
    sql: psycopg.Connection,
) -> None:
    """The quota is checked again when the email runs (the handler reserves it before sending):
    a day that filled up after the approval puts the send off to the next quota day, no attempt used."""
    with FakeBrevo() as brevo:
        settings = make_settings(
            database_url=database_url,
            brevo_api_key=API_KEY,
            brevo_sender_email=SENDER,
            brevo_base_url=brevo.url,
            auto_run_low=False,
        )
        queue = ApprovalQueue(db, settings)
        action_id = queue.submit(
            ActionRequest(
                agent="support",
                kind="email.send",
                summary="Reply to Ann",
                payload={"to": {"email": "ann@example.com"}, "subject": "Re: your order", "html": "<p>Shipped</p>"},
                impact=Impact(recipients=1),
            ),
            actor="t",
        ).id
        queue.decide(action_id, DecisionRequest(decision="approve"), actor="ann", channel="link")
        # other sends used the whole day after the approval
        taken = EmailQuota(db, settings).reserve("other-sends", settings.brevo_daily_limit, "transactional")
        assert taken.held == settings.brevo_daily_limit
        worker = Executor(db, settings, worker_id="w5", clients=Clients(settings, sleep=lambda _: None))
        try:
            assert worker.run_once() == 1
            deferred = row(sql, action_id)
            assert (deferred["status"], deferred["attempts"]) == ("approved", 0) and brevo.requests == []
            assert "goes out on the next quota day" in deferred["last_error"]
            wait = sql.execute(
                "select extract(epoch from run_after - db_now())::float from actions where id = %s", (action_id,)
            ).fetchone()[0]
            assert 0 < wait <= taken.seconds_to_next_day + 1
            assert worker.run_once() == 0  # not before the next quota day
            advance_clock(sql, wait + 1)
            assert worker.run_once() == 1
        finally:
            worker.close()
        assert row(sql, action_id)["status"] == "succeeded" and len(brevo.requests) == 1
