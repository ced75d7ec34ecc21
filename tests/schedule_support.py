"""Shared by the schedule and report tests: Phoenix times, a simulated clock that moves the
database's clock with it, and schedules built from the real job list with their runs recorded."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Sequence, Set
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from app.core.database import Database
from app.schedule.runs import Firing, Job, JobFunc, JobResult, Schedule

PHOENIX = ZoneInfo("America/Phoenix")
UTC = ZoneInfo("UTC")
MINUTE = timedelta(minutes=1)


def phoenix(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), PHOENIX)


def set_db_clock(sql: psycopg.Connection, when: datetime) -> None:
    """Make db_now() read `when` (and run on from there) instead of sleeping until then."""
    sql.execute("update clock_offset set offset_interval = %s - now()", (when,))


class SimClock:
    """An instance's clock: the schedule reads it; the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """Wraps jobs so every call is counted per (job, scheduled time), across threads."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, datetime]] = Counter()
        self._lock = threading.Lock()

    def wrap(self, jobs: Sequence[Job], *, record_only: Set[str] = frozenset()) -> list[Job]:
        """The jobs, counted; those in `record_only` are only counted, not run."""
        return [dataclasses.replace(job, run=self._recording(job, run=job.name not in record_only)) for job in jobs]

    def _recording(self, job: Job, *, run: bool) -> JobFunc:
        def recorded(firing: Firing) -> JobResult | None:
            with self._lock:
                self.calls[(firing.job, firing.scheduled_for)] += 1
            return job.run(firing) if run else None

        return recorded

    def of(self, job: str) -> list[datetime]:
        return sorted(moment for (name, moment), count in self.calls.items() if name == job for _ in range(count))


def firings(job: Job, start: datetime, end: datetime) -> list[datetime]:
    """Every firing of `job` in [start, end), straight from its trigger."""
    found = []
    moment = job.trigger.get_next_fire_time(None, start)
    while moment is not None and moment < end:
        found.append(moment)
        moment = job.trigger.get_next_fire_time(None, moment + timedelta(microseconds=1))
    return found


def run_minutes(schedule: Schedule, clock: SimClock, sql: psycopg.Connection, start: datetime, end: datetime) -> None:
    """One instance ticking every minute from `start` up to, not including, `end`."""
    moment = start
    while moment < end:
        clock.now = moment
        set_db_clock(sql, moment)
        schedule.tick()
        moment += MINUTE


def job_runs(db: Database, job: str | None = None) -> list[dict[str, Any]]:
    return db.call("recent_job_runs", job=job, limit=100_000)
