"""The daily report's Website section: Plausible's numbers for the report's day, or why they are
missing. It never holds the report up: without Plausible settings the section says once that
Plausible is not connected; when Plausible refuses or fails (401, 402, 429, a timeout, an open
breaker) it says the numbers are missing and why, and the rest of the report goes out as usual.

The section is stored with the report like every other part, so the page and Discord show what was
fetched when the report was built. Every view reads the same rows (`metric_rows`), so the page and
Discord agree on the figures and on how a change is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Literal

from pydantic import BaseModel

from app.core.settings import ClientDeps, Settings
from integrations.errors import CircuitOpen, IntegrationError, NotConfigured, RateLimited, TransientError
from integrations.plausible import SYSTEM, AuthRefused, PlanRefused, WebsiteDay
from integrations.resilience import CircuitBreaker

log = logging.getLogger(__name__)

TOP_ROWS = 5  # pages and sources listed
DASH = "\u2013"


class WebsiteSection(BaseModel):
    state: Literal["ok", "not_connected", "missing"]
    reason: str | None = None  # why there are no numbers: one line, shown as it is
    numbers: WebsiteDay | None = None


class MetricRow(BaseModel):
    label: str
    value: str
    day_before: str
    week_before: str
    vs_day_before: str  # "+12%", "-3 pts", "new", or a dash
    vs_week_before: str


def _headline(exc: IntegrationError) -> str:
    if isinstance(exc, AuthRefused):
        return "Plausible refused the API key or the site"
    if isinstance(exc, PlanRefused):
        return "Plausible's plan for this site does not include the Stats API"
    if isinstance(exc, RateLimited):
        return "Plausible's hourly API allowance is used up"
    if isinstance(exc, CircuitOpen):
        return "Plausible failed several times in a row and is left alone for a while"
    if isinstance(exc, TransientError):
        return "Plausible did not answer"
    return "Plausible refused the query"


def _detail(exc: IntegrationError) -> str:
    return exc.message.removeprefix(f"{SYSTEM}: ")[:300]


def why_missing(exc: IntegrationError) -> str:
    return f"{_headline(exc)} \u2014 {_detail(exc)}"


class WebsiteNumbers:
    """Fetches the section for a day. One breaker lives as long as this object (the scheduler's
    process), so a Plausible that keeps failing is not asked 16 times every report; each fetch
    makes and closes its own HTTP client."""

    def __init__(
        self,
        settings: Settings,
        *,
        history_days: int,
        sleep: Callable[[float], None] = time.sleep,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.settings = settings
        self.history_days = history_days
        self.sleep = sleep
        self.breaker = breaker or CircuitBreaker(SYSTEM)

    def __call__(self, day: date) -> WebsiteSection:
        try:
            client = self.settings.plausible_client(ClientDeps(sleep=self.sleep, breaker=self.breaker))
        except NotConfigured as exc:
            return WebsiteSection(state="not_connected", reason=f"Plausible is not connected ({_detail(exc)})")
        try:
            numbers = client.website_day(day, self.settings.time_zone, history_days=self.history_days, top=TOP_ROWS)
        except IntegrationError as exc:
            log.warning("daily report %s: website numbers missing: %s", day, exc.message)
            return WebsiteSection(state="missing", reason=why_missing(exc))
        finally:
            client.close()
        return WebsiteSection(state="ok", numbers=numbers)


# --- shown the same way everywhere -------------------------------------------------------------
def _count(value: float) -> str:
    return f"{round(value):,}"


def _rate(value: float) -> str:
    return f"{value:.0f}%"


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _relative(now: float, before: float) -> str:
    if now == before:
        return "\u00b10%" if now else DASH
    if not before:
        return "new"
    return f"{(now - before) / before * 100:+.0f}%"


def _points(now: float, before: float) -> str:
    return f"{now - before:+.0f} pts" if now != before else "\u00b10 pts"


METRICS: tuple[tuple[str, str, Callable[[float], str], Callable[[float, float], str]], ...] = (
    ("Visitors", "visitors", _count, _relative),
    ("Visits", "visits", _count, _relative),
    ("Pageviews", "pageviews", _count, _relative),
    ("Bounce rate", "bounce_rate", _rate, _points),  # a rate: its change is in points
    ("Visit duration", "visit_duration", duration, _relative),
)


def metric_rows(numbers: WebsiteDay) -> list[MetricRow]:
    rows = []
    for label, name, shown, change in METRICS:
        now, day_before, week_before = (
            getattr(totals, name) for totals in (numbers.totals, numbers.day_before, numbers.week_before)
        )
        rows.append(
            MetricRow(
                label=label,
                value=shown(now),
                day_before=shown(day_before),
                week_before=shown(week_before),
                vs_day_before=change(now, day_before),
                vs_week_before=change(now, week_before),
            )
        )
    return rows
