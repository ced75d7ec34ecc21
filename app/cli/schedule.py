"""`opsdesk jobs`: the scheduled jobs' next firings and their recent runs."""

from __future__ import annotations

import json
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.context import agents_of, console, database
from app.notifications.sender import NotificationSender
from app.schedule.jobs import build_jobs
from app.schedule.runs import JobRun, recent_runs, utc_now

_STATE_STYLE = {"ok": "green", "skipped": "dim", "running": "cyan", "retry": "yellow", "failed": "red", "lost": "red"}


def jobs_command(
    ctx: typer.Context,
    upcoming: Annotated[int, typer.Option(min=1, max=20, help="Next firings shown per job")] = 3,
    runs: Annotated[int, typer.Option(min=1, max=500, help="Recent runs shown")] = 20,
    job: Annotated[str | None, typer.Option(help="Only this job's runs")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The scheduled jobs: their next firings and their recent runs."""
    with database() as (settings, db):
        # the reminders job exists only where Discord is configured, as in the service
        notifications = NotificationSender(db, settings) if settings.discord_webhook_url is not None else None
        try:
            jobs = build_jobs(db, settings, worker_id="cli", agents=agents_of(ctx), notifications=notifications)
        finally:
            if notifications is not None:
                notifications.close()
        history = recent_runs(db, limit=runs, job=job)
    now = utc_now()
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "upcoming": {
                        item.name: [moment.isoformat() for moment in item.upcoming(now, upcoming)] for item in jobs
                    },
                    "runs": [run.model_dump(mode="json") for run in history],
                }
            )
        )
        return
    local = settings.time_zone
    table = Table(title=f"Scheduled jobs (times in {settings.cron_timezone})")
    for column in ("job", "cron zone", "next firings", "grace", "does"):
        table.add_column(column)
    for item in jobs:
        firings = ", ".join(f"{moment.astimezone(local):%a %d %b %H:%M}" for moment in item.upcoming(now, upcoming))
        table.add_row(item.name, str(item.trigger.timezone), firings, str(item.grace), item.description)
    console.print(table)
    console.print(_runs_table(history, settings.cron_timezone))


def _runs_table(history: list[JobRun], zone: str) -> Table:
    table = Table(title=f"Recent runs ({len(history)}, newest first)")
    for column in ("job", "scheduled for", "state", "attempts", "instance", "took", "error or note"):
        table.add_column(column)
    for run in history:
        took = f"{(run.finished_at - run.started_at).total_seconds():.1f}s" if run.finished_at else ""
        detail = run.error or (json.dumps(run.note, default=str) if run.note else "")
        table.add_row(
            run.job,
            f"{run.scheduled_for.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}",
            f"[{_STATE_STYLE.get(run.state, 'white')}]{run.state}[/]",
            str(run.attempts),
            escape(run.instance),
            took,
            escape(detail[:120]),
        )
    return table
