"""The opsdesk process entry point: `python scheduler.py` is `opsdesk run` (API + scheduler +
executor in one process). This module also wires the schedule into APScheduler.

APScheduler only decides when this process wakes up. Each scheduled job (app.schedule.jobs) is an
APScheduler job on its own cron trigger that asks the schedule (app.schedule.runs) to claim and run
the firing of it that is due. A catch-up tick, at start and every minute, runs what a wake-up
could not: firings missed while the process was down (within each job's grace), runs put off for
a retry, runs lost with a dead instance. Claims in the database make each firing run once, across
every instance running this schedule.

The Discord outbox and memory's embedding are pollers, plain APScheduler jobs on every instance:
they drain rows claimed one by one (SKIP LOCKED), so more instances only add throughput.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app.approvals.executor import default_worker_id
from app.approvals.queue import ApprovalQueue
from app.notifications.sender import NotificationSender
from app.schedule.jobs import build_jobs
from app.schedule.runs import Clock, Schedule, utc_now
from app.schedule.scheduler import add_memory_jobs


def build_scheduler(
    queue: ApprovalQueue,
    notifications: NotificationSender | None = None,
    *,
    clock: Clock = utc_now,
    instance: str | None = None,
) -> BackgroundScheduler:
    settings = queue.settings
    instance = instance or default_worker_id()
    jobs = build_jobs(queue.db, settings, worker_id=instance, notifications=notifications)
    schedule = Schedule(queue.db, jobs, instance=instance, clock=clock)
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    for job in jobs:
        # however late the wake-up, the schedule decides by the job's own grace whether it is due
        scheduler.add_job(
            schedule.tick,
            job.trigger,
            kwargs={"only": job.name},
            id=job.name,
            name=job.description,
            replace_existing=True,
            misfire_grace_time=None,
        )
    scheduler.add_job(
        schedule.tick,
        CronTrigger(second=30, timezone=UTC),
        id="schedule_catch_up",
        name="missed, retried and lost firings",
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    if notifications is not None:
        scheduler.add_job(
            notifications.run_until_idle,
            IntervalTrigger(seconds=notifications.settings.discord_poll_seconds, timezone=UTC),
            id="discord_outbox",
            replace_existing=True,
        )
    add_memory_jobs(scheduler, queue.db, settings)  # embed waiting memory rows
    return scheduler


if __name__ == "__main__":
    from app.cli import main

    main(["run", *sys.argv[1:]])
