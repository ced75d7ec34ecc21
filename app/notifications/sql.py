"""The SQL functions of app/notifications: the Discord outbox.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from app.core.database import Database


def enqueue_reminders(
    db: Database, *, reminder_after_seconds: float | None, escalate_before_seconds: float | None, limit: int | None
) -> dict[str, Any]:
    return db.call_object(
        "enqueue_reminders",
        reminder_after_seconds=reminder_after_seconds,
        escalate_before_seconds=escalate_before_seconds,
        limit=limit,
    )


def recover_notification_leases(db: Database, *, actor: str | None, limit: int | None) -> Any:
    return db.call("recover_notification_leases", actor=actor, limit=limit)


def claim_notifications(db: Database, *, worker: str | None, lease_seconds: float | None, limit: int | None) -> Any:
    return db.call("claim_notifications", worker=worker, lease_seconds=lease_seconds, limit=limit)


def mark_notification_dispatched(db: Database, *, id: int | None, attempt_token: UUID | str | None) -> Any:
    return db.call("mark_notification_dispatched", id=id, attempt_token=attempt_token)


def record_notification_sent(
    db: Database, *, id: int | None, attempt_token: UUID | str | None, message_id: str | None
) -> Any:
    return db.call("record_notification_sent", id=id, attempt_token=attempt_token, message_id=message_id)


def record_outcome_edited(db: Database, *, id: int | None, attempt_token: UUID | str | None, message_ids: Any) -> Any:
    return db.call("record_outcome_edited", id=id, attempt_token=attempt_token, message_ids=message_ids)


def reschedule_notification(
    db: Database,
    *,
    id: int | None,
    attempt_token: UUID | str | None,
    error: str | None,
    retry_in_seconds: float | None,
    count_attempt: bool | None,
    max_attempts: int | None,
    maybe_posted: bool | None,
) -> Any:
    return db.call(
        "reschedule_notification",
        id=id,
        attempt_token=attempt_token,
        error=error,
        retry_in_seconds=retry_in_seconds,
        count_attempt=count_attempt,
        max_attempts=max_attempts,
        maybe_posted=maybe_posted,
    )


def fail_notification(db: Database, *, id: int | None, attempt_token: UUID | str | None, error: str | None) -> Any:
    return db.call("fail_notification", id=id, attempt_token=attempt_token, error=error)
