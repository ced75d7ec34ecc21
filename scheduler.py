"""The opsdesk process entry point: `python scheduler.py` is `opsdesk run` (API + scheduler +
executor in one process). This module also builds the APScheduler schedule."""

from __future__ import annotations

import sys
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from app.approval_queue import ApprovalQueue

UTC = ZoneInfo("UTC")


def build_scheduler(queue: ApprovalQueue) -> BackgroundScheduler:
    """Infrastructure jobs run in UTC. Expiring approvals is idempotent in the database
    (SKIP LOCKED), so several instances running it at once do no harm."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    scheduler.add_job(queue.expire_due, IntervalTrigger(minutes=1, timezone=UTC),
                      id="expire_approvals", replace_existing=True)
    return scheduler


if __name__ == "__main__":
    from app.cli import main

    main(["run", *sys.argv[1:]])
