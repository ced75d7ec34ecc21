"""`opsdesk report`: build (and store) a day's report, print it, and with --send post it once."""

from __future__ import annotations

import getpass
import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.context import console, database
from app.reports.build import DailyReports
from app.reports.delivery import ReportSender, SendOutcome
from app.reports.model import COUNT_LABELS, DailyReport


def report_command(
    day: Annotated[
        datetime | None, typer.Option("--date", formats=["%Y-%m-%d"], help="The day to report on (default: yesterday)")
    ] = None,
    send: Annotated[bool, typer.Option("--send", help="Post it to Discord unless it was posted already")] = False,
    chart: Annotated[Path | None, typer.Option(help="Also write the chart PNG here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Build (and store) the daily report for a day that is over; with --send, post it once."""
    with database() as (settings, db):
        reports = DailyReports(db, settings)
        report_day: date = day.date() if day is not None else reports.yesterday()
        stored = reports.build_and_store(report_day)
        outcome = ReportSender(reports, worker_id=f"cli:{getpass.getuser()}").send(report_day) if send else None
        if chart is not None:
            with_chart = reports.load(report_day, with_chart=True)
            if with_chart is not None and with_chart.chart is not None:
                chart.write_bytes(with_chart.chart)
    report = stored.report
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "report": report.model_dump(mode="json"),
                    "delivery": outcome.model_dump(mode="json") if outcome else None,
                }
            )
        )
        return
    _print_report(report)
    if outcome is not None:
        _print_delivery(outcome)
    elif stored.sent_at is not None:
        console.print(
            f"posted to Discord at {stored.sent_at.astimezone(settings.time_zone):%Y-%m-%d %H:%M %Z} "
            f"(message {stored.discord_message_id})"
        )


def _print_report(report: DailyReport) -> None:
    console.print(f"[bold]Daily report for {report.day:%A %d %B %Y}[/bold] ({report.time_zone})")
    counts = Table(title="Actions")
    counts.add_column("agent")
    counts.add_column("tier")
    for label in COUNT_LABELS.values():
        counts.add_column(label, justify="right")
    for row in report.by_agent_and_tier:
        values = row.model_dump()
        counts.add_row(escape(row.agent), row.tier.value, *(str(values[key]) for key in COUNT_LABELS))
    totals = report.totals.model_dump()
    counts.add_row("[bold]all[/bold]", "", *(f"[bold]{totals[key]}[/bold]" for key in COUNT_LABELS))
    console.print(counts)
    for run in report.agent_runs:
        console.print(
            f"agent {escape(run.agent)}: {run.runs} run(s), {run.ok} ok, {run.failed} failed, "
            f"{run.proposals} proposal(s), {run.tokens:,} tokens, ${run.cost_usd:,.2f}"
        )
    emails, llm = report.emails, report.llm
    console.print(
        f"emails: {emails.sent} of {emails.daily_limit} sent; today {emails.today_used} used; "
        f"{sum(item.recipients for item in emails.scheduled)} scheduled ahead"
    )
    console.print(f"LLM: ${llm.spent_usd:,.2f} of ${llm.budget_usd:,.2f}, {llm.tokens:,} tokens in {llm.calls} call(s)")
    console.print(f"waiting for approval: {report.waiting_total}")
    zone = ZoneInfo(report.time_zone)
    for item in report.waiting:
        console.print(
            f"  {item.requested_at.astimezone(zone):%Y-%m-%d %H:%M} {item.tier.value} {escape(item.agent)}: "
            f"{escape(item.summary)}"
        )
        if item.review_url:
            console.print(f"    {item.review_url}", soft_wrap=True, markup=False)
    console.print(f"failures worth a look: {report.failures_total}")
    for failure in report.failures:
        console.print(f"  {failure.source} {failure.status}: {escape(failure.title)} {escape(failure.error or '')}")


def _print_delivery(outcome: SendOutcome) -> None:
    if outcome.posted_now:
        console.print(f"[green]posted to Discord[/green] (message {outcome.discord_message_id})")
    elif outcome.sent:
        console.print(f"already posted to Discord (message {outcome.discord_message_id}); not posted again")
    else:
        console.print(f"[yellow]another process is posting it right now[/yellow] ({outcome.status})")
