"""Memory's frequent job: make missing HNSW indexes (a few bounded steps per run) and embed rows
that wait for a vector.

Safe with several instances: index steps take a lock (a busy one is skipped), embedding claims rows
(SKIP LOCKED and a lease). The daily prune past retention is a claimed job of the schedule
(app/scheduled_jobs.py), listed by `opsdesk jobs`.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from app.database import Database
from app.errors import KNOWN_ERRORS
from app.memory import MemoryStore
from app.settings import Settings

log = logging.getLogger(__name__)
UTC = ZoneInfo("UTC")
EMBED_ROWS_PER_RUN = 2000  # a backlog is worked off over several runs instead of one long one
INDEX_STEPS_PER_RUN = 60  # each a short call; an index over 100,000 vectors takes a few runs


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
