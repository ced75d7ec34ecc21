"""The schedule wired into APScheduler, for one process.

APScheduler only decides when this process wakes up. Each scheduled job (app.schedule.jobs) is an
APScheduler job on its own cron trigger that asks the schedule (app.schedule.runs) to claim and run
the firing of it that is due. A catch-up tick, at start and every minute, runs what a wake-up
could not: firings missed while the process was down (within each job's grace), runs put off for
a retry, runs lost with a dead instance. Claims in the database make each firing run once, across
every instance running this schedule.

The Discord outbox and memory's job are pollers, plain APScheduler jobs on every instance: they
drain rows claimed one by one (SKIP LOCKED), so more instances only add throughput. Memory's job
makes missing HNSW indexes (a few bounded steps per run; index steps take a lock, a busy one is
skipped) and embeds rows that wait for a vector (claimed with SKIP LOCKED and a lease). The daily
prune past retention is a claimed job of the schedule (app/schedule/jobs.py), listed by
`opsdesk jobs`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app.agent_runs.registry import AgentRegistry
from app.approvals.executor import default_worker_id
from app.approvals.queue import ApprovalQueue
from app.core.database import Database
from app.core.errors import KNOWN_ERRORS
from app.core.settings import Settings
from app.memory.store import MemoryStore
from app.notifications.sender import NotificationSender
from app.schedule.jobs import build_jobs
from app.schedule.runs import Clock, Schedule, utc_now

log = logging.getLogger(__name__)
EMBED_ROWS_PER_RUN = 2000  # a backlog is worked off over several runs instead of one long one
INDEX_STEPS_PER_RUN = 60  # each a short call; an index over 100,000 vectors takes a few runs


def build_scheduler(
    queue: ApprovalQueue,
    notifications: NotificationSender | None = None,
    *,
    agents: AgentRegistry,
    clock: Clock = utc_now,
    instance: str | None = None,
) -> BackgroundScheduler:
    settings = queue.settings
    instance = instance or default_worker_id()
    jobs = build_jobs(queue.db, settings, worker_id=instance, agents=agents, notifications=notifications)
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


def add_memory_jobs(scheduler: BaseScheduler, db: Database, settings: Settings) -> None:
    store = MemoryStore(db, settings)
    if store.spec is not None:
        scheduler.add_job(
            _embed,
            IntervalTrigger(seconds=settings.memory_embed_interval_seconds, timezone=UTC),
            args=(store,),
            id="memory_embed",
            replace_existing=True,
        )


def _embed(store: MemoryStore) -> None:
    try:
        indexes = store.maintain_indexes(max_steps=INDEX_STEPS_PER_RUN)
    except KNOWN_ERRORS as exc:  # the next run carries on: every step is complete in itself
        log.warning("memory: making the vector index failed, will retry: %s", exc.message)
    else:
        if indexes.steps:
            log.info("memory: vector index steps: %d (%s)", indexes.steps, indexes.state)
    try:
        report = store.embed_pending(max_rows=EMBED_ROWS_PER_RUN)
    except KNOWN_ERRORS as exc:  # the provider is down or refuses: the rows wait for the next run
        log.warning("memory: embedding failed, will retry: %s", exc.message)
        return
    if report.embedded:
        log.info("memory: embedded %d row(s) with %s", report.embedded, report.model)
