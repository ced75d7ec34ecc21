"""The opsdesk process entry point: `python scheduler.py` is `opsdesk run` (API + scheduler +
executor in one process). This module also builds the APScheduler schedule."""

from __future__ import annotations

import sys
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app.approval_queue import ApprovalQueue
from app.clients import Clients
from app.email_campaigns import CampaignSender
from app.memory_jobs import add_memory_jobs
from app.notifications import NotificationSender

UTC = ZoneInfo("UTC")


def build_scheduler(queue: ApprovalQueue, notifications: NotificationSender | None = None) -> BackgroundScheduler:
    """Infrastructure jobs run in UTC. Expiring approvals, queuing reminders and draining the
    Discord outbox are each safe in the database (SKIP LOCKED, unique rows), so several instances
    running them at once do no harm."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    scheduler.add_job(queue.expire_due, IntervalTrigger(minutes=1, timezone=UTC),
                      id="expire_approvals", replace_existing=True)
    if notifications is not None:
        scheduler.add_job(notifications.run_until_idle,
                          IntervalTrigger(seconds=notifications.settings.discord_poll_seconds, timezone=UTC),
                          id="discord_outbox", replace_existing=True)
        scheduler.add_job(notifications.enqueue_reminders, IntervalTrigger(minutes=1, timezone=UTC),
                          id="discord_reminders", replace_existing=True)
    # Campaign batches due today go out hourly from BREVO_SEND_HOUR (quota day's zone); each run
    # also retries batches a transient failure put off. Claims use SKIP LOCKED: instances may overlap.
    settings = queue.settings
    if settings.brevo_api_key is not None or settings.brevo_dry_run:
        campaigns = CampaignSender(queue.db, settings, Clients(settings), worker_id="scheduler:campaigns")
        scheduler.add_job(campaigns.send_due,
                          CronTrigger(hour=f"{settings.brevo_send_hour}-23", minute=5,
                                      timezone=ZoneInfo(settings.email_quota_timezone)),
                          id="campaign_batches", replace_existing=True)
    add_memory_jobs(scheduler, queue.db, settings)  # embed waiting memory rows; prune daily
    return scheduler


if __name__ == "__main__":
    from app.cli import main

    main(["run", *sys.argv[1:]])
