"""The SQL functions of app/approvals: the approval queue's, the executor's and the pre-run checks' functions.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from uuid import UUID

from app.core.database import AsyncDatabase, Database


def submit_action(
    db: Database,
    *,
    action: Any,
    risk_level: str | None,
    risk_reasons: Any,
    auto_run: bool | None,
    ttl_seconds: float | None,
    max_attempts: int | None,
    actor: str | None,
    request_id: str | None,
) -> Any:
    return db.call(
        "submit_action",
        action=action,
        risk_level=risk_level,
        risk_reasons=risk_reasons,
        auto_run=auto_run,
        ttl_seconds=ttl_seconds,
        max_attempts=max_attempts,
        actor=actor,
        request_id=request_id,
    )


def decide_action(
    db: Database,
    *,
    id: UUID | str | None,
    decision: str | None,
    actor: str | None,
    reason: str | None,
    modifications: Any,
    expected_hash: str | None,
    request_id: str | None,
    expected_round: int | None = None,
    channel: str | None = None,
    risk_level: str | None = None,
    risk_reasons: Any = None,
    estimated_impact: Any = None,
) -> Any:
    return db.call(
        "decide_action",
        id=id,
        decision=decision,
        actor=actor,
        reason=reason,
        modifications=modifications,
        expected_hash=expected_hash,
        request_id=request_id,
        expected_round=expected_round,
        channel=channel,
        risk_level=risk_level,
        risk_reasons=risk_reasons,
        estimated_impact=estimated_impact,
    )


def cancel_action(
    db: Database, *, id: UUID | str | None, actor: str | None, reason: str | None, request_id: str | None
) -> Any:
    return db.call("cancel_action", id=id, actor=actor, reason=reason, request_id=request_id)


def expire_pending(db: Database, *, actor: str | None, limit: int | None) -> dict[str, Any]:
    return db.call_object("expire_pending", actor=actor, limit=limit)


def get_action(db: Database, *, id: UUID | str | None) -> dict[str, Any] | None:
    return db.call_optional("get_action", id=id)


def list_actions(
    db: Database,
    *,
    status: str | None,
    risk_level: str | None,
    agent: str | None,
    limit: int | None,
    offset: int | None,
) -> Any:
    return db.call("list_actions", status=status, risk_level=risk_level, agent=agent, limit=limit, offset=offset)


def claim_actions(db: Database, *, worker: str | None, lease_seconds: float | None, limit: int | None) -> Any:
    return db.call("claim_actions", worker=worker, lease_seconds=lease_seconds, limit=limit)


def mark_dispatched(db: Database, *, id: UUID | str | None, attempt_token: UUID | str | None) -> Any:
    return db.call("mark_dispatched", id=id, attempt_token=attempt_token)


def renew_action_lease(
    db: Database, *, id: UUID | str | None, attempt_token: UUID | str | None, lease_seconds: float | None
) -> Any:
    return db.call("renew_action_lease", id=id, attempt_token=attempt_token, lease_seconds=lease_seconds)


def uncertain_dispatch(db: Database, *, id: UUID | str | None, attempt_token: UUID | str | None) -> Any:
    return db.call("uncertain_dispatch", id=id, attempt_token=attempt_token)


def note_uncertain_dispatch(db: Database, *, id: UUID | str | None, attempt_token: UUID | str | None) -> Any:
    return db.call("note_uncertain_dispatch", id=id, attempt_token=attempt_token)


def finish_action(
    db: Database,
    *,
    id: UUID | str | None,
    attempt_token: UUID | str | None,
    outcome: str | None,
    result: Any,
    error: str | None,
    retry_in_seconds: float | None,
    count_attempt: bool | None,
) -> Any:
    return db.call(
        "finish_action",
        id=id,
        attempt_token=attempt_token,
        outcome=outcome,
        result=result,
        error=error,
        retry_in_seconds=retry_in_seconds,
        count_attempt=count_attempt,
    )


def recover_expired_leases(db: Database, *, actor: str | None, limit: int | None) -> Any:
    return db.call("recover_expired_leases", actor=actor, limit=limit)


def settle_action(
    db: Database,
    *,
    id: UUID | str | None,
    outcome: str | None,
    actor: str | None,
    reason: str | None,
    request_id: str | None,
) -> Any:
    return db.call("settle_action", id=id, outcome=outcome, actor=actor, reason=reason, request_id=request_id)


def approval_review(db: Database, *, id: UUID | str | None) -> Any:
    return db.call("approval_review", id=id)


def approval_pin_try(
    db: Database,
    *,
    id: UUID | str | None,
    correct: bool | None,
    max_tries: int | None,
    actor: str | None,
    request_id: str | None,
) -> Any:
    return db.call("approval_pin_try", id=id, correct=correct, max_tries=max_tries, actor=actor, request_id=request_id)


def recent_feedback(db: Database, *, agent: str | None, kind: str | None, limit: int | None) -> list[dict[str, Any]]:
    return db.call_list("recent_feedback", agent=agent, kind=kind, limit=limit)


def requeue_action(
    db: Database,
    *,
    id: UUID | str | None,
    attempt_token: UUID | str | None,
    risk_level: str | None,
    risk_reasons: Any,
    ttl_seconds: float | None,
    reason: str | None,
    requested_action: Any = None,
    estimated_impact: Any = None,
) -> Any:
    return db.call(
        "requeue_action",
        id=id,
        attempt_token=attempt_token,
        risk_level=risk_level,
        risk_reasons=risk_reasons,
        ttl_seconds=ttl_seconds,
        reason=reason,
        requested_action=requested_action,
        estimated_impact=estimated_impact,
    )


def decide_actions(db: AsyncDatabase, *, decisions: list[dict[str, Any]]) -> Awaitable[Any]:
    return db.call("decide_actions", decisions=decisions)
