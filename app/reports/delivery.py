"""Posting the daily report to Discord, once per day, and the scheduled job that builds and posts it.

The message is embeds (within Discord's limits: `integrations.discord.render` enforces them) with
the chart attached as `chart.png` and shown in the first embed (`attachment://chart.png`). Review
links travel only in link buttons, never in text: Discord's unfurler fetches URLs it finds there.

Names, summaries and errors in it were written by agents, submitters and outside systems: each goes
in through `integrations.discord_text.literal`, so it cannot link, format or ping.

Posting is claimed in `daily_reports` like the notification outbox: two instances racing post it
once; a crash after the POST leaves `maybe_posted`, and the next post says it may repeat one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from app.core.models import Tier
from app.core.settings import ClientDeps
from app.reports import sql
from app.reports.build import DailyReports
from app.reports.model import COUNT_LABELS, DailyReport
from app.reports.website import metric_rows
from integrations.discord import (
    Attachment,
    DiscordClient,
    Embed,
    EmbedField,
    LinkButton,
    WebhookMessage,
    call_budget_seconds,
)
from integrations.discord_text import fit, literal
from integrations.errors import IntegrationError, OutcomeUnknown, TransientError
from integrations.plausible import Ranked

log = logging.getLogger(__name__)

CHART_FILE = "chart.png"
LINES_SHOWN = 10  # rows of each list shown in Discord; the rest are on the report page
# a line per item stays short, so a list keeps all its lines within Discord's limits
NAME_CHARS, SUMMARY_CHARS, ERROR_CHARS = 40, 100, 160
REVIEW_BUTTONS = 4  # plus the inbox button: one row of five
COLOUR = 0x3498DB
ALERT_COLOUR = 0xE74C3C
TIER_ICONS = {Tier.LOW: "\U0001f7e2", Tier.MEDIUM: "\U0001f7e1", Tier.HIGH: "\U0001f7e0", Tier.CRITICAL: "\U0001f534"}


def _when(moment: datetime) -> str:
    """Discord renders this relative to each reader's now ("3 hours ago")."""
    return f"<t:{int(moment.timestamp())}:R>"


def _counts_line(counts: dict[str, int]) -> str:
    shown = [f"{label} {counts[key]}" for key, label in COUNT_LABELS.items() if counts[key]]
    return " \u00b7 ".join(shown) or "nothing"


def report_message(report: DailyReport, *, with_chart: bool, maybe_posted: bool = False) -> WebhookMessage:
    lines = [f"\U0001f4ca **Daily report for {report.day:%A %d %B %Y}** ({report.time_zone})"]
    if maybe_posted:
        lines.append("\u26a0\ufe0f Sent again after an interrupted attempt: an earlier copy of this report may exist.")
    lines += [
        f"\u26a0\ufe0f **{notice.system} {notice.problem}** ({literal(notice.reason or 'no reason')}): {notice.fix}."
        for notice in report.connections
    ]
    totals = report.totals.model_dump()
    summary = Embed(
        title="Actions",
        color=COLOUR,
        description="\n".join(_breakdown_lines(report)) or "No action events on this day.",
        fields=[EmbedField(name=label, value=str(totals[key]), inline=True) for key, label in COUNT_LABELS.items()],
        image_url=f"attachment://{CHART_FILE}" if with_chart else None,
        footer=f"opsdesk \u00b7 daily report \u00b7 built "
        f"{report.generated_at.astimezone(ZoneInfo(report.time_zone)):%Y-%m-%d %H:%M %Z}",
        timestamp=report.generated_at,
    )
    runs = Embed(
        title="Agent runs",
        color=COLOUR,
        description="\n".join(
            f"**{literal(run.agent)}**: {run.runs} run(s), {run.ok} ok, {run.failed} failed, "
            f"{run.proposals} proposal(s), "
            f"{run.tokens:,} tokens, ${run.cost_usd:,.2f}"
            for run in report.agent_runs
        )
        or "No agent runs.",
    )
    emails, llm = report.emails, report.llm
    scheduled = (
        "\n".join(f"{item.day:%a %d %b}: {item.recipients} in {item.batches} batch(es)" for item in emails.scheduled)
        or "nothing scheduled"
    )
    usage = Embed(
        title="Email and model spend",
        color=COLOUR,
        fields=[
            EmbedField(
                name="Emails sent",
                value=f"{emails.sent} of {emails.daily_limit}"
                + (f" (closed: {literal(emails.closed_reason)})" if emails.closed_reason else ""),
                inline=True,
            ),
            EmbedField(
                name="Today so far", value=f"{emails.today_used} used, {emails.today_remaining} left", inline=True
            ),
            EmbedField(name="Campaign batches ahead", value=scheduled),
            EmbedField(name="LLM spend", value=f"${llm.spent_usd:,.2f} of ${llm.budget_usd:,.2f}", inline=True),
            EmbedField(
                name="LLM tokens",
                value=f"{llm.tokens:,} in {llm.calls} call(s)"
                + (f", {llm.refused} refused by the budget" if llm.refused else ""),
                inline=True,
            ),
        ],
    )
    embeds = [summary, runs, usage, _waiting_embed(report)]
    if report.failures_total:
        embeds.append(_failures_embed(report))
    embeds += _website_embed(report)
    buttons = [LinkButton(label="Open the approval inbox", url=report.inbox_url)] if report.inbox_url else []
    buttons += [
        LinkButton(label=f"Review: {item.summary}", url=item.review_url)
        for item in report.waiting[:REVIEW_BUTTONS]
        if item.review_url
    ]
    return WebhookMessage(content="\n".join(lines), embeds=embeds, buttons=buttons)


def _breakdown_lines(report: DailyReport) -> list[str]:
    rows = report.by_agent_and_tier
    lines = [
        f"**{fit(literal(row.agent), NAME_CHARS)}** \u00b7 {row.tier.value}: {_counts_line(row.model_dump())}"
        for row in rows[:LINES_SHOWN]
    ]
    if len(rows) > len(lines):
        lines.append(f"\u2026 and {len(rows) - len(lines)} more agent and tier rows on the report page")
    return lines


def _website_embed(report: DailyReport) -> list[Embed]:
    """Plausible's numbers; a line saying they are not connected, or missing and why; nothing for a
    report stored before the section existed. Page paths and sources come from visitors' browsers
    and referrers: literal, like every other outside text."""
    website = report.website
    if website is None:
        return []
    if website.numbers is None:
        missing = website.state == "missing"
        return [
            Embed(
                title="Website",
                color=ALERT_COLOUR if missing else COLOUR,
                description=("The website's numbers are missing from this report: " if missing else "")
                + fit(literal(website.reason or ""), ERROR_CHARS * 2),
            )
        ]
    site = website.numbers
    rows = [
        f"**{row.label}** {row.value} \u00b7 day before {row.day_before} ({row.vs_day_before}) \u00b7 "
        f"last {site.day:%A} {row.week_before} ({row.vs_week_before})"
        for row in metric_rows(site)
    ]

    def listed(items: list[Ranked], empty: str) -> str:
        lines = [f"{fit(literal(item.name), SUMMARY_CHARS)} \u00b7 {item.visitors:,}" for item in items]
        return "\n".join(lines) or empty

    return [
        Embed(
            title=f"Website \u00b7 {site.day:%a %d %b}",
            color=COLOUR,
            description="\n".join(rows),
            fields=[
                EmbedField(name="Top pages (visitors)", value=listed(site.top_pages, "No pageviews."), inline=True),
                EmbedField(name="Top sources (visitors)", value=listed(site.top_sources, "No visits."), inline=True),
            ],
        )
    ]


def _waiting_embed(report: DailyReport) -> Embed:
    lines = [
        f"{TIER_ICONS[item.tier]} {item.tier.value} \u00b7 {fit(literal(item.agent), NAME_CHARS)} \u00b7 "
        f"{fit(literal(item.summary), SUMMARY_CHARS)} \u00b7 "
        f"waiting since {_when(item.requested_at)}" + (f", expires {_when(item.expires_at)}" if item.expires_at else "")
        for item in report.waiting[:LINES_SHOWN]
    ]
    if report.waiting_total > len(lines):
        lines.append(f"\u2026 and {report.waiting_total - len(lines)} more in the inbox")
    return Embed(
        title=f"Waiting for approval ({report.waiting_total})",
        color=COLOUR,
        description="\n".join(lines) or "Nothing is waiting.",
    )


def _failures_embed(report: DailyReport) -> Embed:
    lines = [
        f"**{literal(item.source)}** {literal(item.status)}: {fit(literal(item.title), SUMMARY_CHARS)}"
        + (f" \u2014 {fit(literal(item.error), ERROR_CHARS)}" if item.error else "")
        for item in report.failures[:LINES_SHOWN]
    ]
    if report.failures_total > len(lines):
        lines.append(f"\u2026 and {report.failures_total - len(lines)} more on the report page")
    return Embed(
        title=f"Failures worth a look ({report.failures_total})", color=ALERT_COLOUR, description="\n".join(lines)
    )


class SendOutcome(BaseModel):
    day: str
    sent: bool  # the report is in Discord (now or earlier)
    posted_now: bool
    status: str
    discord_message_id: str | None


class ReportSender:
    """Posts a stored report once. `client_factory` makes the Discord client for one send."""

    def __init__(
        self, reports: DailyReports, *, worker_id: str, client_factory: Callable[[], DiscordClient] | None = None
    ) -> None:
        settings = reports.settings
        if client_factory is None:
            settings.discord_config()  # not configured: refused here, not at the first send

            def client_factory() -> DiscordClient:
                return settings.discord_client(ClientDeps())

        self.reports = reports
        self.db = reports.db
        self.worker_id = worker_id
        self.client_factory = client_factory
        self.lease_seconds = call_budget_seconds(settings.discord_timeout_seconds) + 30

    def send(self, day: date) -> SendOutcome:
        """Post the stored report for `day` unless it is posted already or being posted."""
        claim = sql.claim_daily_report_send(self.db, day=day, worker=self.worker_id, lease_seconds=self.lease_seconds)
        if not claim["claimed"]:
            return _outcome(claim, posted_now=False)
        token = claim["attempt_token"]
        full = self.reports.load(day, with_chart=True)
        assert full is not None
        chart = full.chart
        message = report_message(full.report, with_chart=chart is not None, maybe_posted=claim["maybe_posted"])
        files = [Attachment(filename=CHART_FILE, content=chart, content_type="image/png")] if chart else []
        client = self.client_factory()
        try:
            sql.mark_daily_report_dispatched(self.db, day=day, attempt_token=token)
            message_id = client.execute(message, files)
        except OutcomeUnknown as exc:
            sql.release_daily_report_send(self.db, day=day, attempt_token=token, error=exc.message, maybe_posted=True)
            # trying again is right for a report: the repost says it may repeat this one
            raise TransientError(
                f"the report may or may not have been posted ({exc.message})", system="discord"
            ) from exc
        except IntegrationError as exc:
            sql.release_daily_report_send(self.db, day=day, attempt_token=token, error=exc.message, maybe_posted=False)
            raise
        finally:
            client.close()
        return _outcome(sql.record_daily_report_sent(self.db, day=day, message_id=message_id), posted_now=True)


def _outcome(row: dict[str, Any], *, posted_now: bool) -> SendOutcome:
    return SendOutcome(
        day=row["day"],
        sent=row["status"] == "sent",
        posted_now=posted_now,
        status=row["status"],
        discord_message_id=row["discord_message_id"],
    )
