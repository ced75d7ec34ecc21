"""Plausible Analytics, Stats API v2: the website's numbers for the daily report and the agents.

One endpoint, `POST {PLAUSIBLE_BASE_URL}/api/v2/query` with a Bearer Stats API key; Plausible Cloud
(https://plausible.io) and a self-hosted Community Edition answer alike. Reference:
https://plausible.io/docs/stats-api and docs/vendors/plausible.md (what was checked in Plausible's
source, and where).

Days are the caller's days, not the site's: a `date_range` of two plain dates is read in the site's
own reporting time zone, so every range is sent as two datetimes with their UTC offsets, the first
and the last second of the caller's days in the caller's zone (`day_range`). For the same reason
a `time:day` series would count the site's days: the daily history is one aggregate query per day.

Errors (each body is `{"error": "..."}`): 401 a missing or refused key, or a site the key cannot
see (`AuthRefused`); 402 a plan without the Stats API or a locked site (`PlanRefused`); 429 the
key's hourly limit, counted in fixed windows of a clock hour (UTC) and sent without headers, so the
wait is the time to the next full hour (`RateLimited`); 400 a query Plausible refuses (permanent;
its wording varies between versions, so only the status is relied on); 5xx, timeouts and failed
connections are transient and retried with backoff and jitter behind a breaker. The whole answer
is read only when it has Plausible's shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError

from integrations.errors import IntegrationError, PermanentError, RateLimited, TransientError
from integrations.resilience import CircuitBreaker, call_with_retries
from integrations.untrusted import Storable, storable, storable_text

SYSTEM = "plausible"
DEFAULT_BASE_URL = "https://plausible.io"
QUERY_PATH = "/api/v2/query"
TOTAL_METRICS = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")
NO_SOURCE = "Direct / None"  # Plausible's label for visits without a referrer
RATE_WINDOW_SECONDS = 3600  # Plausible.RateLimit: one counter per key per clock hour
CLOCK_SLACK_SECONDS = 5.0  # our clock and Plausible's may differ a little: retry just after its hour turns


class AuthRefused(PermanentError):
    """401/403: the key is missing, revoked, or cannot see PLAUSIBLE_SITE_ID."""

    code = "plausible_auth_refused"


class PlanRefused(PermanentError):
    """402: the plan does not include the Stats API, or the site is locked for want of one."""

    code = "plausible_plan_refused"


class PlausibleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr
    site_id: str = Field(min_length=1)  # the site's domain as Plausible knows it
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: PositiveInt = 3


# --- answers ----------------------------------------------------------------------------------
class Totals(BaseModel):
    """One range's aggregate. Plausible returns 0 for every metric of a range without visits."""

    visitors: int = 0
    visits: int = 0
    pageviews: int = 0
    bounce_rate: float = 0.0  # percent of visits with one pageview (a whole number in practice)
    visit_duration: int = 0  # mean seconds per visit


class DayTotals(Totals):
    day: date


class Ranked(Storable):
    """A row of a top list. `name` is a page path or a source name, as visitors' browsers and
    referrers made it: data, never instructions."""

    name: str
    visitors: int
    pageviews: int | None = None


class WebsiteDay(BaseModel):
    """What the daily report shows of one day (the caller's day in `time_zone`)."""

    day: date
    time_zone: str
    totals: Totals
    day_before: Totals
    week_before: Totals  # the same weekday a week earlier
    top_pages: list[Ranked]
    top_sources: list[Ranked]
    history: list[DayTotals]  # oldest first, ending on `day`


class _Row(BaseModel):
    metrics: list[float | None]  # null for a metric without a value (e.g. percentage of nothing)
    dimensions: list[Any]


class _Answer(BaseModel):
    results: list[_Row]
    meta: dict[str, Any] = Field(default_factory=dict)


# --- time ---------------------------------------------------------------------------------------
def day_range(first: date, last: date, zone: ZoneInfo) -> list[str]:
    """`date_range` for the days `first`..`last` in `zone`: their first and last second, each with
    its own offset (a range may span a daylight-saving change). Computed through UTC, so a day whose
    midnight does not exist locally still starts at its first real instant."""
    start = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return [start.astimezone(zone).isoformat(), (end - timedelta(seconds=1)).astimezone(zone).isoformat()]


def seconds_to_next_window(now: datetime) -> float:
    """Plausible counts each key's requests per clock hour: a 429 lasts until the next full hour."""
    elapsed = now.timestamp() % RATE_WINDOW_SECONDS
    return RATE_WINDOW_SECONDS - elapsed


# --- the client ---------------------------------------------------------------------------------
class PlausibleClient:
    def __init__(
        self,
        config: PlausibleConfig,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.breaker = breaker or CircuitBreaker(SYSTEM)
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            timeout=config.timeout_seconds,
            transport=transport,
            follow_redirects=False,  # a redirect would resend the key elsewhere
            headers={"Authorization": f"Bearer {config.api_key.get_secret_value()}", "User-Agent": "opsdesk"},
        )

    def close(self) -> None:
        self._http.close()

    def query(self, **body: Any) -> list[_Row]:
        """One Stats API query for PLAUSIBLE_SITE_ID (`metrics`, `date_range`, ...), retried when
        that can help. Returns its result rows."""
        request = {"site_id": self.config.site_id, **body}
        return call_with_retries(
            lambda: self._query_once(request),
            breaker=self.breaker,
            attempts=self.config.max_attempts,
            sleep=self._sleep,
        )

    def _query_once(self, body: dict[str, Any]) -> list[_Row]:
        try:
            response = self._http.post(QUERY_PATH, json=body)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out after {self.config.timeout_seconds:g} s", system=SYSTEM) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})", system=SYSTEM) from exc
        if response.status_code != 200:
            raise self._error(response)
        try:
            # json.loads, not pydantic's reader: a page path may hold a lone surrogate escape, which
            # must be cleaned (Storable), not sink the answer
            answer = _Answer.model_validate(storable(json.loads(response.content)))
        except (ValueError, ValidationError) as exc:
            raise PermanentError(
                f"the answer from {QUERY_PATH} is not a Stats API v2 result (is PLAUSIBLE_BASE_URL right?)",
                system=SYSTEM,
            ) from exc
        return answer.results

    def _error(self, response: httpx.Response) -> IntegrationError:
        status = response.status_code
        said = _error_text(response)
        details = {"status": status}
        if status in (401, 403):
            return AuthRefused(
                f"HTTP {status}: {said} (check PLAUSIBLE_API_KEY and PLAUSIBLE_SITE_ID)", system=SYSTEM, details=details
            )
        if status == 402:
            return PlanRefused(f"HTTP 402: {said}", system=SYSTEM, details=details)
        if status == 429:
            now = self._clock()
            wait = seconds_to_next_window(now) + CLOCK_SLACK_SECONDS
            reset = now + timedelta(seconds=wait)
            return RateLimited(
                f"HTTP 429: {said} (the hour's allowance resets at {reset:%H:%M} UTC)",
                system=SYSTEM,
                retry_after=wait,
                details={**details, "resets_at": reset.isoformat(timespec="seconds")},
            )
        if status >= 500:
            return TransientError(f"HTTP {status}: {said}", system=SYSTEM, details=details)
        if 300 <= status < 400 or status == 404:
            return PermanentError(
                f"HTTP {status} from {QUERY_PATH}: is PLAUSIBLE_BASE_URL ({self.config.base_url}) the Plausible host?",
                system=SYSTEM,
                details=details,
            )
        return PermanentError(f"HTTP {status}: {said}", system=SYSTEM, details=details)

    # --- the queries opsdesk makes ------------------------------------------------------------
    def totals(self, first: date, last: date, zone: ZoneInfo) -> Totals:
        """Visitors, visits, pageviews, bounce rate and visit duration over whole days in `zone`."""
        rows = self.query(metrics=list(TOTAL_METRICS), date_range=day_range(first, last, zone))
        values = rows[0].metrics if rows else []
        numbers = dict(zip(TOTAL_METRICS, (value or 0 for value in values), strict=False))
        return Totals(
            visitors=round(numbers.get("visitors", 0)),
            visits=round(numbers.get("visits", 0)),
            pageviews=round(numbers.get("pageviews", 0)),
            bounce_rate=numbers.get("bounce_rate", 0),
            visit_duration=round(numbers.get("visit_duration", 0)),
        )

    def top_pages(self, first: date, last: date, zone: ZoneInfo, *, limit: int = 5) -> list[Ranked]:
        """The most visited pages (by unique visitors, then pageviews), with their pageviews."""
        return self._top("event:page", ["visitors", "pageviews"], first, last, zone, limit)

    def top_sources(self, first: date, last: date, zone: ZoneInfo, *, limit: int = 5) -> list[Ranked]:
        """Where visits came from, by unique visitors; no referrer is "Direct / None"."""
        return self._top("visit:source", ["visitors"], first, last, zone, limit)

    def _top(
        self, dimension: str, metrics: list[str], first: date, last: date, zone: ZoneInfo, limit: int
    ) -> list[Ranked]:
        rows = self.query(
            metrics=metrics,
            dimensions=[dimension],
            date_range=day_range(first, last, zone),
            order_by=[[metric, "desc"] for metric in metrics],
            pagination={"limit": limit, "offset": 0},
        )
        ranked = []
        for row in rows[:limit]:
            values = [round(value or 0) for value in row.metrics]
            ranked.append(
                Ranked(
                    name=storable_text(str(row.dimensions[0] if row.dimensions else "")),
                    visitors=values[0] if values else 0,
                    pageviews=values[1] if len(values) > 1 else None,
                )
            )
        return ranked

    def website_day(self, day: date, zone: ZoneInfo, *, history_days: int = 14, top: int = 5) -> WebsiteDay:
        """Everything the report shows of `day`: its totals against the day before and the same
        weekday a week earlier, its top pages and sources, and the visitors of the `history_days`
        days ending on it. One query per day (see the module's note on time zones), `day` first:
        the first failure ends it, so a failing Plausible is asked little."""
        history = [day - timedelta(days=back) for back in range(history_days)]
        days = list(dict.fromkeys([day, day - timedelta(days=1), day - timedelta(days=7), *history]))
        totals = {each: self.totals(each, each, zone) for each in days}
        return WebsiteDay(
            day=day,
            time_zone=zone.key,
            totals=totals[day],
            day_before=totals[day - timedelta(days=1)],
            week_before=totals[day - timedelta(days=7)],
            top_pages=self.top_pages(day, day, zone, limit=top),
            top_sources=self.top_sources(day, day, zone, limit=top),
            history=[DayTotals(day=each, **totals[each].model_dump()) for each in sorted(history)],
        )


def _error_text(response: httpx.Response) -> str:
    """Plausible's `{"error": "..."}`, or the start of whatever else came back (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    said = body.get("error") if isinstance(body, dict) else None
    if isinstance(said, str):
        return said[:300]
    return response.text[:200] or response.reason_phrase
