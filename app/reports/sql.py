"""The SQL functions of app/reports: the daily report: its data, its stored copies, its one post.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from app.core.database import Database


def daily_report_data(
    db: Database,
    *,
    day: date | None,
    time_zone: str | None,
    history_days: int | None,
    list_limit: int | None,
    daily_limit: int | None,
    reserve: int | None,
    quota_time_zone: str | None,
) -> Any:
    return db.call(
        "daily_report_data",
        day=day,
        time_zone=time_zone,
        history_days=history_days,
        list_limit=list_limit,
        daily_limit=daily_limit,
        reserve=reserve,
        quota_time_zone=quota_time_zone,
    )


def store_daily_report(db: Database, *, day: date | None, body: Any, chart_base64: str | None) -> Any:
    return db.call("store_daily_report", day=day, body=body, chart_base64=chart_base64)


def get_daily_report(db: Database, *, day: date | None, with_chart: bool | None) -> Any:
    return db.call("get_daily_report", day=day, with_chart=with_chart)


def claim_daily_report_send(db: Database, *, day: date | None, worker: str | None, lease_seconds: float | None) -> Any:
    return db.call("claim_daily_report_send", day=day, worker=worker, lease_seconds=lease_seconds)


def mark_daily_report_dispatched(db: Database, *, day: date | None, attempt_token: UUID | str | None) -> Any:
    return db.call("mark_daily_report_dispatched", day=day, attempt_token=attempt_token)


def record_daily_report_sent(db: Database, *, day: date | None, message_id: str | None) -> Any:
    return db.call("record_daily_report_sent", day=day, message_id=message_id)


def release_daily_report_send(
    db: Database, *, day: date | None, attempt_token: UUID | str | None, error: str | None, maybe_posted: bool | None
) -> Any:
    return db.call(
        "release_daily_report_send", day=day, attempt_token=attempt_token, error=error, maybe_posted=maybe_posted
    )
