"""The SQL functions of app/schedule: the job schedule's runs.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from app.core.database import Database


def job_schedule_state(db: Database, *, jobs: Any) -> Any:
    return db.call("job_schedule_state", jobs=jobs)


def claim_job_run(
    db: Database, *, job: str | None, scheduled_for: datetime | None, instance: str | None, lease_seconds: float | None
) -> Any:
    return db.call(
        "claim_job_run", job=job, scheduled_for=scheduled_for, instance=instance, lease_seconds=lease_seconds
    )


def finish_job_run(
    db: Database,
    *,
    id: int | None,
    attempt_token: UUID | str | None,
    outcome: str | None,
    note: Any,
    error: str | None,
    retry_in_seconds: float | None,
) -> Any:
    return db.call(
        "finish_job_run",
        id=id,
        attempt_token=attempt_token,
        outcome=outcome,
        note=note,
        error=error,
        retry_in_seconds=retry_in_seconds,
    )


def recent_job_runs(db: Database, *, job: str | None, limit: int | None) -> Any:
    return db.call("recent_job_runs", job=job, limit=limit)


def prune_job_runs(db: Database, *, days: int | None) -> Any:
    return db.call("prune_job_runs", days=days)
