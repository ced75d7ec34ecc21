"""What the daily report is, as data: the API, the CLI, the chart, the page and Discord all read
these models (app.reports.build makes them from the database)."""

from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.core.models import Tier
from app.reports.website import WebsiteSection

# the action counts in the order every view shows them, with their labels
COUNT_LABELS = {
    "drafted": "Drafted",
    "auto_run": "Auto-run",
    "approved": "Approved",
    "modified": "Edited",
    "rejected": "Rejected",
    "expired": "Expired",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "unknown": "Unknown",
}


class ActionCounts(BaseModel):
    drafted: int = 0
    auto_run: int = 0
    approved: int = 0
    modified: int = 0
    rejected: int = 0
    expired: int = 0
    succeeded: int = 0
    failed: int = 0
    unknown: int = 0


class ActionBreakdown(ActionCounts):
    agent: str
    tier: Tier


class AgentRunStats(BaseModel):
    agent: str
    runs: int
    ok: int
    failed: int
    running: int
    proposals: int
    tokens: int
    cost_usd: Decimal


class ScheduledEmails(BaseModel):
    day: date
    batches: int
    recipients: int


class EmailSummary(BaseModel):
    sent: int  # counted against the quota on the report's day
    closed_reason: str | None  # Brevo said the day's credits were gone
    daily_limit: int
    reserve: int
    today_used: int
    today_remaining: int
    scheduled: list[ScheduledEmails]  # campaign batches waiting for the coming days
    unknown_batches: int


class WaitingApproval(BaseModel):
    id: UUID
    agent: str
    kind: str
    tier: Tier
    summary: str
    requested_at: datetime
    expires_at: datetime | None
    review_url: str | None


class LlmUsage(BaseModel):
    spent_usd: Decimal
    budget_usd: Decimal
    calls: int
    refused: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class Failure(BaseModel):
    source: Literal["action", "notification", "campaign_batch", "agent_run", "job"]
    ref: str
    title: str
    status: str
    error: str | None
    at: datetime


class ConnectionNotice(BaseModel):
    """An outside connection that needs the owner (Buffer's OAuth grant, revoked or lost)."""

    system: str
    problem: str
    reason: str | None
    since: datetime | None
    fix: str


class HistoryDay(BaseModel):
    day: date
    succeeded: int
    failed: int
    unknown: int
    rejected: int
    expired: int
    emails_used: int


class DailyReport(BaseModel):
    day: date
    time_zone: str
    generated_at: datetime
    totals: ActionCounts
    by_agent_and_tier: list[ActionBreakdown]
    agent_runs: list[AgentRunStats]
    emails: EmailSummary
    waiting: list[WaitingApproval]  # oldest first
    waiting_total: int
    inbox_url: str | None  # one signed link to every pending approval
    llm: LlmUsage
    failures: list[Failure]
    failures_total: int
    history: list[HistoryDay]  # HISTORY_DAYS days ending on `day`
    connections: list[ConnectionNotice] = []  # what needs the owner now (older stored reports: none)
    website: WebsiteSection | None = None  # None: a report stored before the section existed


class StoredReport(BaseModel):
    """A `daily_reports` row: the report as built, its chart, and whether Discord has it."""

    model_config = ConfigDict(extra="ignore")

    day: date
    body: dict[str, Any]
    built_at: datetime
    status: Literal["built", "sending", "sent"]
    attempts: int
    maybe_posted: bool
    last_error: str | None
    sent_at: datetime | None
    discord_message_id: str | None
    has_chart: bool
    chart_base64: str | None = None

    @property
    def report(self) -> DailyReport:
        return DailyReport.model_validate(self.body)

    @property
    def chart(self) -> bytes | None:
        return base64.b64decode(self.chart_base64) if self.chart_base64 else None
