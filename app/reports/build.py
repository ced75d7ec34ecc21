"""The daily report: what happened on one calendar day in CRON_TIMEZONE.

Every number comes from the database as an exact count (`daily_report_data` in schema.sql); this
module only shapes it, signs the review links of the approvals still waiting, draws the chart
(app.reports.chart) and stores the result: one row per day in `daily_reports`, body and PNG, so the
API, the CLI and Discord all show the same report, and, in the same transaction, one `report` row
in memory. Posting it is app.reports.delivery.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from app.approvals.links import LinkSigner
from app.clients.sql import buffer_grant_status
from app.core import sql as core_sql
from app.core.database import Database
from app.core.settings import Settings
from app.reports import sql
from app.reports.chart import render_chart
from app.reports.model import ConnectionNotice, DailyReport, EmailSummary, LlmUsage, StoredReport, WaitingApproval
from app.reports.website import WebsiteNumbers, WebsiteSection

HISTORY_DAYS = 14  # the chart's span
LIST_LIMIT = 25  # waiting approvals and failures listed; the totals count every one


class DailyReports:
    def __init__(
        self, db: Database, settings: Settings, *, website: Callable[[date], WebsiteSection] | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        # Plausible's numbers (app.reports.website); tests hand in one pointed at a fake
        self.website = website or WebsiteNumbers(settings, history_days=HISTORY_DAYS)
        self.signer = LinkSigner(settings) if settings.approval_link_secret is not None else None

    def yesterday(self) -> date:
        """The last day that is over in CRON_TIMEZONE, by the database's clock."""
        now = datetime.fromisoformat(core_sql.health(self.db)["now"])
        return now.astimezone(self.settings.time_zone).date() - timedelta(days=1)

    def build(self, day: date) -> DailyReport:
        """The report for `day` (InvalidInput unless the day is over), not stored."""
        settings = self.settings
        data = sql.daily_report_data(
            self.db,
            day=day,
            time_zone=settings.cron_timezone,
            history_days=HISTORY_DAYS,
            list_limit=LIST_LIMIT,
            daily_limit=settings.brevo_daily_limit,
            reserve=settings.brevo_transactional_reserve,
            quota_time_zone=settings.email_quota_timezone,
        )
        outlook = data["emails"]["outlook"]
        generated_at = datetime.fromisoformat(data["generated_at"])
        return DailyReport(
            day=data["day"],
            time_zone=data["time_zone"],
            generated_at=generated_at,
            totals=data["actions"]["totals"],
            by_agent_and_tier=data["actions"]["rows"],
            agent_runs=data["agent_runs"],
            emails=EmailSummary(
                sent=data["emails"]["sent"],
                closed_reason=data["emails"]["closed_reason"],
                daily_limit=settings.brevo_daily_limit,
                reserve=settings.brevo_transactional_reserve,
                today_used=outlook["today"]["used"],
                today_remaining=outlook["today"]["remaining"],
                scheduled=outlook["scheduled"],
                unknown_batches=outlook["unknown_batches"],
            ),
            waiting=[self._waiting(row) for row in data["waiting"]["items"]],
            waiting_total=data["waiting"]["total"],
            inbox_url=(
                self.signer.inbox_url(generated_at + timedelta(hours=settings.inbox_link_hours))
                if self.signer is not None
                else None
            ),
            llm=LlmUsage(budget_usd=settings.llm_daily_budget_usd, **data["llm"]),
            failures=data["failures"]["items"],
            failures_total=data["failures"]["total"],
            history=data["history"],
            connections=self._connections(),
            website=self.website(day),
        )

    def _connections(self) -> list[ConnectionNotice]:
        """Buffer's grant when it needs reconnecting: said in every report until it is fixed."""
        grant = buffer_grant_status(self.db)
        if grant is None or grant["status"] != "reconnect_needed":
            return []
        return [
            ConnectionNotice(
                system="Buffer",
                problem="needs reconnecting: nothing posts to social media",
                reason=grant.get("reason"),
                since=grant.get("reconnect_since"),
                fix="run `opsdesk buffer connect`",
            )
        ]

    def _waiting(self, row: dict[str, Any]) -> WaitingApproval:
        expires_at = datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None
        url = (
            self.signer.url(row["id"], row["draft_hash"], "review", expires_at)
            if self.signer is not None and expires_at is not None
            else None
        )
        return WaitingApproval(review_url=url, **{key: value for key, value in row.items() if key != "draft_hash"})

    def build_and_store(self, day: date) -> StoredReport:
        """Build, draw and store the report for `day`. One being sent, or already sent, is kept as
        it was posted and returned as stored."""
        stored = self.load(day)
        if stored is not None and stored.status != "built":
            return stored
        report = self.build(day)
        chart = render_chart(report)
        sql.store_daily_report(
            self.db,
            day=day,
            body=report.model_dump(mode="json"),
            chart_base64=base64.b64encode(chart).decode(),
        )
        fresh = self.load(day)
        assert fresh is not None
        return fresh

    def load(self, day: date, *, with_chart: bool = False) -> StoredReport | None:
        row = sql.get_daily_report(self.db, day=day, with_chart=with_chart)
        return None if row is None else StoredReport.model_validate(row)
