"""Brevo's daily limit, counted in the database (DESIGN.md "Brevo: 300 emails a day").

Every email is reserved before it is sent: `reserve_email_quota` takes the quota day's row lock, so
any number of workers together never pass BREVO_DAILY_LIMIT. A reservation is idempotent by key
(a retry counts nothing twice) and grants min(requested, what is left): campaigns can use all but
BREVO_TRANSACTIONAL_RESERVE, which stays for one-to-one replies. A send that never reached Brevo
gives its reservation back. The quota day is the calendar day of the database clock in
BREVO_QUOTA_TIMEZONE (CRON_TIMEZONE, Phoenix, by default).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel

from app.core.database import Database
from app.core.settings import Settings
from app.email import sql
from integrations.errors import RateLimited

Purpose = Literal["transactional", "campaign"]


class QuotaExhausted(RateLimited):
    """Nothing is left of today's quota for this purpose: try again on the next quota day."""

    code = "email_quota_exhausted"


class Grant(BaseModel):
    day: date
    key: str
    purpose: Purpose
    requested: int
    held: int
    duplicate: bool
    used: int
    daily_limit: int
    reserve: int
    closed: bool
    seconds_to_next_day: float


class EmailQuota:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @property
    def limits(self) -> dict[str, Any]:
        """The parameters every quota function takes, from the settings."""
        return {
            "daily_limit": self.settings.brevo_daily_limit,
            "reserve": self.settings.brevo_transactional_reserve,
            "time_zone": self.settings.email_quota_timezone,
        }

    def reserve(self, key: str, count: int, purpose: Purpose) -> Grant:
        return Grant.model_validate(
            sql.reserve_email_quota(self.db, key=key, count=count, purpose=purpose, **self.limits)
        )

    def release(self, grant: Grant, count: int | None = None) -> int:
        """Give back `count` (all when None) of a grant whose email did not go out."""
        return int(sql.release_email_quota(self.db, day=grant.day, key=grant.key, count=count)["released"])

    def close_day(self, reason: str) -> None:
        """Brevo said 402: nothing more is reserved today, whatever our own count says."""
        sql.close_email_quota_day(self.db, time_zone=self.settings.email_quota_timezone, reason=reason)

    def outlook(self, days: int = 7) -> dict[str, Any]:
        """Today's use and the campaign batches scheduled for the coming days."""
        return sql.email_quota_outlook(self.db, days=days, **self.limits)
