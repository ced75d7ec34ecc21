"""The jobs the schedule runs: each one's name, cron trigger, grace, lease and callable.

User-facing jobs run in CRON_TIMEZONE (America/Phoenix): the daily report, the three agents, and
Brevo's campaign batches (in the quota day's zone; the first run after BREVO_SEND_HOUR sends the
day's batches, the later hourly ones pick up batches a transient failure put off). Infrastructure
jobs run in UTC: expiring approvals, queuing Discord reminders, recovering lost leases, pruning
old job runs, and archiving and pruning memory and the audit log past retention.

The agents' jobs come from the agents registry the entry point hands in (one per entry, on the
crontab of its setting); each calls the registry's `run(name, trigger)` when it fires, with this
process's settings and database (so a run does not open a database of its own). A run that failed
is recorded as a `failed` job run with the run's error. An agent the registry cannot run here is
recorded as `skipped`, "agent not available", rather than pretending to have run.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from pydantic_core import to_jsonable_python

from app.agent_runs.registry import AgentRegistry, AgentUnavailable
from app.approvals import sql as approvals_sql
from app.approvals.queue import ApprovalQueue
from app.core.cron import parse_crontab
from app.core.database import Database
from app.core.settings import Settings
from app.memory.retention import LEASE_SECONDS as RETENTION_LEASE_SECONDS
from app.memory.retention import prune as prune_retention
from app.notifications import sql as notifications_sql
from app.notifications.sender import NotificationSender
from app.reports.build import DailyReports
from app.reports.delivery import ReportSender
from app.schedule import sql
from app.schedule.runs import Firing, Job, JobFunc, JobResult

log = logging.getLogger(__name__)
UTC = ZoneInfo("UTC")
AGENT_TRIGGER = "schedule"
EVERY_MINUTE = "* * * * *"
INFRA_GRACE = timedelta(minutes=5)  # after downtime, one run catches up: their work is in the database
INFRA_LEASE = timedelta(minutes=10)
REPORT_LEASE = timedelta(minutes=15)
AGENT_LEASE = timedelta(hours=1)
CAMPAIGN_GRACE = timedelta(hours=1)  # the job fires hourly: a later firing does the same work
CAMPAIGN_LEASE = timedelta(hours=1)
RECOVERY_LIMIT = 500

AGENT_NOT_AVAILABLE = "agent not available: the agents registry cannot run it here"


class AgentOutcome(BaseModel):
    """What the job reads of the run's report (app.agent_runs.report.AgentRunReport)."""

    model_config = ConfigDict(extra="ignore")

    outcome: Literal["ok", "failed"] = "ok"
    error: str | None = None


def agent_job(agents: AgentRegistry, name: str, db: Database, settings: Settings) -> JobFunc:
    def run(firing: Firing) -> JobResult:
        try:
            report = agents.run(name, AGENT_TRIGGER, settings=settings, db=db)
        except AgentUnavailable:
            return JobResult(outcome="skipped", note={"agent": name, "reason": AGENT_NOT_AVAILABLE})
        result = to_jsonable_python(report, fallback=str)
        note = {"agent": name, "result": result}
        # the run records a failure (the model down, HubSpot down, the budget spent) instead of
        # raising: the job's run must say so too, or the schedule shows it as done
        ran = AgentOutcome.model_validate(result) if isinstance(result, dict) else AgentOutcome()
        if ran.outcome == "failed":
            return JobResult(outcome="failed", note=note, error=ran.error or f"the {name} agent's run failed")
        return JobResult(note=note)

    return run


class ReportJob:
    """The scheduled report: a firing on day D reports on D-1 (in CRON_TIMEZONE) and posts it once."""

    def __init__(self, reports: DailyReports, sender: ReportSender | None) -> None:
        self.reports = reports
        self.sender = sender

    @classmethod
    def from_settings(cls, reports: DailyReports, settings: Settings, *, worker_id: str) -> ReportJob:
        sender = ReportSender(reports, worker_id=worker_id) if settings.discord_webhook_url is not None else None
        return cls(reports, sender)

    def __call__(self, firing: Firing) -> JobResult:
        local = firing.scheduled_for.astimezone(self.reports.settings.time_zone)
        day = local.date() - timedelta(days=1)
        self.reports.build_and_store(day)
        if self.sender is None:
            return JobResult(
                note={"day": day, "stored": True, "sent": False, "reason": "DISCORD_WEBHOOK_URL is not set"}
            )
        outcome = self.sender.send(day)
        log.info("daily report for %s: %s", day, "posted" if outcome.posted_now else outcome.status)
        return JobResult(note=outcome.model_dump(mode="json"))


def build_jobs(
    db: Database,
    settings: Settings,
    *,
    worker_id: str,
    agents: AgentRegistry,
    notifications: NotificationSender | None = None,
) -> list[Job]:
    """Every scheduled job of this configuration, one per agent of `agents` among them. Crons are
    checked by Settings already."""
    local = settings.time_zone
    queue = ApprovalQueue(db, settings)
    actor = f"scheduler:{worker_id}"

    def expire(firing: Firing) -> JobResult:
        return JobResult(note={"expired": len(queue.expire_due())})

    def recover(firing: Firing) -> JobResult:
        # the executor and the outbox sender recover leases on each cycle; this covers the time
        # when no instance runs them
        actions = approvals_sql.recover_expired_leases(db, actor=actor, limit=RECOVERY_LIMIT)["recovered"]
        notes = notifications_sql.recover_notification_leases(db, actor=actor, limit=RECOVERY_LIMIT)["recovered"]
        return JobResult(note={"actions": len(actions), "notifications": len(notes)})

    def prune(firing: Firing) -> JobResult:
        return JobResult(note=sql.prune_job_runs(db, days=settings.job_runs_retention_days))

    def retention(firing: Firing) -> JobResult:
        # prune() still takes its maintenance lease: a run that outlives this job's lease and is
        # taken over never overlaps the new one (same length as that lease)
        report = prune_retention(db, settings, holder=actor)
        return JobResult(outcome="skipped" if report.skipped else "ok", note=report.model_dump(exclude_none=True))

    jobs = [
        Job(
            "daily_report",
            parse_crontab(settings.report_cron, local),
            ReportJob.from_settings(DailyReports(db, settings), settings, worker_id=actor),
            grace=timedelta(hours=settings.report_grace_hours),
            lease=REPORT_LEASE,
            description="yesterday's report: stored, and posted to Discord",
        ),
        *(
            Job(
                f"agent_{entry.name}",
                parse_crontab(getattr(settings, entry.cron_setting), local),
                agent_job(agents, entry.name, db, settings),
                grace=timedelta(minutes=settings.agent_grace_minutes),
                lease=AGENT_LEASE,
                description=f"the {entry.name} agent",
            )
            for entry in agents.entries
        ),
        Job(
            "expire_approvals",
            parse_crontab(EVERY_MINUTE, UTC),
            expire,
            grace=INFRA_GRACE,
            lease=INFRA_LEASE,
            description="cancel approvals past their expiry",
        ),
        Job(
            "recover_leases",
            parse_crontab(EVERY_MINUTE, UTC),
            recover,
            grace=INFRA_GRACE,
            lease=INFRA_LEASE,
            description="recover actions and notifications whose worker died",
        ),
        Job(
            "prune_job_runs",
            parse_crontab("40 3 * * *", UTC),
            prune,
            grace=timedelta(hours=24),
            lease=INFRA_LEASE,
            description="delete job runs past JOB_RUNS_RETENTION_DAYS",
        ),
        Job(
            "memory_retention",
            parse_crontab("17 3 * * *", UTC),
            retention,
            grace=timedelta(hours=24),
            lease=timedelta(seconds=RETENTION_LEASE_SECONDS),
            description="archive, then delete, memory and audit rows past their retention",
        ),
    ]
    if notifications is not None:

        def remind(firing: Firing) -> JobResult:
            return JobResult(note=notifications.enqueue_reminders())

        jobs.append(
            Job(
                "discord_reminders",
                parse_crontab(EVERY_MINUTE, UTC),
                remind,
                grace=INFRA_GRACE,
                lease=INFRA_LEASE,
                description="queue reminders and escalations for waiting approvals",
            )
        )
    if settings.brevo_api_key is not None or settings.brevo_dry_run:
        from app.clients import Clients
        from app.email.campaigns import CampaignSender  # loads Brevo's SDK: only where email is configured

        campaigns = CampaignSender(db, settings, Clients(settings, db), worker_id=f"{actor}:campaigns")

        def send_batches(firing: Firing) -> JobResult:
            return JobResult(note={"batches": campaigns.send_due()})

        jobs.append(
            Job(
                "campaign_batches",
                parse_crontab(f"5 {settings.brevo_send_hour}-23 * * *", settings.email_quota_timezone),
                send_batches,
                grace=CAMPAIGN_GRACE,
                lease=CAMPAIGN_LEASE,
                description="send the campaign batches due today, retry those put off",
            )
        )
    return jobs
