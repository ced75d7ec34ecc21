"""The SQL functions of app/email: Brevo's daily quota and the campaign batches.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from app.core.database import Database


def reserve_email_quota(
    db: Database,
    *,
    key: str | None,
    count: int | None,
    purpose: str | None,
    daily_limit: int | None,
    reserve: int | None,
    time_zone: str | None,
) -> Any:
    return db.call(
        "reserve_email_quota",
        key=key,
        count=count,
        purpose=purpose,
        daily_limit=daily_limit,
        reserve=reserve,
        time_zone=time_zone,
    )


def release_email_quota(db: Database, *, day: date | None, key: str | None, count: int | None) -> dict[str, Any]:
    return db.call_object("release_email_quota", day=day, key=key, count=count)


def close_email_quota_day(db: Database, *, time_zone: str | None, reason: str | None) -> Any:
    return db.call("close_email_quota_day", time_zone=time_zone, reason=reason)


def get_email_campaign(db: Database, *, campaign_id: UUID | str | None) -> dict[str, Any] | None:
    return db.call_optional("get_email_campaign", campaign_id=campaign_id)


def plan_email_campaign(
    db: Database,
    *,
    campaign_id: UUID | str | None,
    recipients: Any,
    batch_size: int | None,
    daily_limit: int | None,
    reserve: int | None,
    time_zone: str | None,
) -> dict[str, Any]:
    return db.call_object(
        "plan_email_campaign",
        campaign_id=campaign_id,
        recipients=recipients,
        batch_size=batch_size,
        daily_limit=daily_limit,
        reserve=reserve,
        time_zone=time_zone,
    )


def claim_campaign_batches(
    db: Database,
    *,
    worker: str | None,
    lease_seconds: float | None,
    limit: int | None,
    time_zone: str | None,
    campaign_id: UUID | str | None,
) -> Any:
    return db.call(
        "claim_campaign_batches",
        worker=worker,
        lease_seconds=lease_seconds,
        limit=limit,
        time_zone=time_zone,
        campaign_id=campaign_id,
    )


def recover_campaign_batches(
    db: Database,
    *,
    actor: str | None,
    limit: int | None,
    daily_limit: int | None,
    reserve: int | None,
    time_zone: str | None,
) -> Any:
    return db.call(
        "recover_campaign_batches",
        actor=actor,
        limit=limit,
        daily_limit=daily_limit,
        reserve=reserve,
        time_zone=time_zone,
    )


def settle_campaign_batch(
    db: Database,
    *,
    campaign_id: UUID | str | None,
    batch_no: int | None,
    outcome: str | None,
    actor: str | None,
    reason: str | None,
    daily_limit: int | None,
    reserve: int | None,
    time_zone: str | None,
) -> dict[str, Any]:
    return db.call_object(
        "settle_campaign_batch",
        campaign_id=campaign_id,
        batch_no=batch_no,
        outcome=outcome,
        actor=actor,
        reason=reason,
        daily_limit=daily_limit,
        reserve=reserve,
        time_zone=time_zone,
    )


def email_quota_outlook(
    db: Database, *, daily_limit: int | None, reserve: int | None, time_zone: str | None, days: int | None
) -> dict[str, Any]:
    return db.call_object(
        "email_quota_outlook", daily_limit=daily_limit, reserve=reserve, time_zone=time_zone, days=days
    )


def reserve_campaign_batch(
    db: Database,
    *,
    campaign_id: UUID | str,
    batch_no: int,
    attempt_token: UUID | str,
    daily_limit: int,
    reserve: int,
    time_zone: str,
    dry_run: bool,
) -> dict[str, Any]:
    return db.call_object(
        "reserve_campaign_batch",
        campaign_id=campaign_id,
        batch_no=batch_no,
        attempt_token=attempt_token,
        daily_limit=daily_limit,
        reserve=reserve,
        time_zone=time_zone,
        dry_run=dry_run,
    )


def finish_campaign_batch(
    db: Database,
    *,
    campaign_id: UUID | str,
    batch_no: int,
    attempt_token: UUID | str,
    rest: str | None,
    retry_in_seconds: float | None,
    error: str | None,
    daily_limit: int,
    reserve: int,
    time_zone: str,
) -> dict[str, Any]:
    return db.call_object(
        "finish_campaign_batch",
        campaign_id=campaign_id,
        batch_no=batch_no,
        attempt_token=attempt_token,
        rest=rest,
        retry_in_seconds=retry_in_seconds,
        error=error,
        daily_limit=daily_limit,
        reserve=reserve,
        time_zone=time_zone,
    )


def renew_campaign_batch_lease(
    db: Database, *, campaign_id: UUID | str, batch_no: int, attempt_token: UUID | str, lease_seconds: float
) -> dict[str, Any]:
    return db.call_object(
        "renew_campaign_batch_lease",
        campaign_id=campaign_id,
        batch_no=batch_no,
        attempt_token=attempt_token,
        lease_seconds=lease_seconds,
    )


def campaign_recipients_sending(
    db: Database, *, campaign_id: UUID | str, batch_no: int, attempt_token: UUID | str, emails: Any
) -> dict[str, Any]:
    return db.call_object(
        "campaign_recipients_sending",
        campaign_id=campaign_id,
        batch_no=batch_no,
        attempt_token=attempt_token,
        emails=emails,
    )


def record_campaign_recipients(
    db: Database, *, campaign_id: UUID | str, batch_no: int, attempt_token: UUID | str, results: Any
) -> dict[str, Any]:
    return db.call_object(
        "record_campaign_recipients",
        campaign_id=campaign_id,
        batch_no=batch_no,
        attempt_token=attempt_token,
        results=results,
    )
