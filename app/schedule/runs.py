"""The schedule: which firings are due, each claimed once across every instance, run and recorded.

APScheduler (scheduler.py) only wakes a process at the right moments. What is due is computed here
from each job's trigger, the database's record of runs (`job_runs`) and an injected clock, so tests
walk through days without sleeping:

- A firing is claimed in `job_runs`, unique per job and scheduled time: one instance runs it,
  however many run the same schedule, whichever wakes first.
- Firings are looked for after the job's last settled run (for a job that never ran, since the
  schedule first ran against this database), and only within the job's grace. After downtime the
  latest missed firing within the grace runs once (coalesced) and older ones are dropped: the
  report's grace is hours, so a missed report is still sent; the agents' is minutes, so missed
  agent runs are not replayed in a burst.
- A run that failed for a transient reason (an outside system down, rate limited) is tried again
  once its retry time has come, and so is a run whose instance died (its lease ran out): in both
  cases only while the firing is still within the grace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field

from app.core.database import Database
from app.core.errors import KNOWN_ERRORS, StaleAttempt
from app.schedule import sql
from integrations.errors import TransientError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_TICK = timedelta(microseconds=1)
RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(minutes=30)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Firing:
    """One claimed firing, handed to the job: what it is for and which attempt this is."""

    job: str
    scheduled_for: datetime
    attempt: int


class JobResult(BaseModel):
    """What a job reports: `skipped` when it had nothing it could do (say why in the note);
    `failed`, with the error, when its work failed without raising (an agent run records its own
    failure and hands it back)."""

    outcome: Literal["ok", "skipped", "failed"] = "ok"
    note: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


JobFunc = Callable[[Firing], JobResult | None]


@dataclass(frozen=True)
class Job:
    name: str
    trigger: CronTrigger
    run: JobFunc
    grace: timedelta  # how late a firing may still run; also how far back a restart looks
    lease: timedelta  # a run not finished by then is taken as lost (its instance died)
    description: str

    def latest_due(self, since: datetime, now: datetime) -> datetime | None:
        """The latest firing in [since, now] that is within the grace, if any."""
        latest = None
        moment = self.trigger.get_next_fire_time(None, max(since, now - self.grace))
        while moment is not None and moment <= now:
            latest = moment
            moment = self.trigger.get_next_fire_time(None, moment + _TICK)
        return latest

    def upcoming(self, now: datetime, count: int) -> list[datetime]:
        found: list[datetime] = []
        moment = self.trigger.get_next_fire_time(None, now)
        while moment is not None and len(found) < count:
            found.append(moment)
            moment = self.trigger.get_next_fire_time(None, moment + _TICK)
        return found


class JobRun(BaseModel):
    """A row of `job_runs`; `state` is its outcome, or `lost` for a run whose lease ran out."""

    model_config = ConfigDict(extra="ignore")

    id: int
    job: str
    scheduled_for: datetime
    instance: str
    attempts: int
    outcome: Literal["running", "ok", "skipped", "retry", "failed"]
    state: str
    note: dict[str, Any]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    lease_expires_at: datetime | None


class _State(BaseModel):
    epoch: datetime | None
    last: dict[str, datetime]


class _Claim(BaseModel):
    claimed: bool
    id: int | None = None
    attempt: int | None = None
    attempt_token: str | None = None


class Schedule:
    """The jobs of one instance. `tick` claims and runs whatever is due; `due` only says what."""

    def __init__(self, db: Database, jobs: Sequence[Job], *, instance: str, clock: Clock = utc_now) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.db = db
        self.jobs = {job.name: job for job in jobs}
        self.instance = instance
        self.clock = clock
        # A job that never ran, on a database the schedule never ran against, starts from here.
        self.started_at = clock()

    def due(self, now: datetime | None = None, *, only: str | None = None) -> list[tuple[Job, datetime]]:
        now = now or self.clock()
        state = _State.model_validate(sql.job_schedule_state(self.db, jobs=list(self.jobs)))
        found = []
        for job in self.jobs.values():
            if only is not None and job.name != only:
                continue
            last = state.last.get(job.name)
            since = last + _TICK if last is not None else (state.epoch or self.started_at)
            moment = job.latest_due(since, now)
            if moment is not None:
                found.append((job, moment))
        return found

    def tick(self, now: datetime | None = None, *, only: str | None = None) -> list[JobRun]:
        """Claim and run every due firing (of `only`, when given); returns the runs this instance made."""
        runs = []
        for job, moment in self.due(now, only=only):
            run = self.run_firing(job, moment)
            if run is not None:
                runs.append(run)
        return runs

    def run_firing(self, job: Job, scheduled_for: datetime) -> JobRun | None:
        claim = _Claim.model_validate(
            sql.claim_job_run(
                self.db,
                job=job.name,
                scheduled_for=scheduled_for,
                instance=self.instance,
                lease_seconds=job.lease.total_seconds(),
            )
        )
        if not claim.claimed:
            return None  # another instance has it
        assert claim.id is not None and claim.attempt is not None
        firing = Firing(job.name, scheduled_for, claim.attempt)
        outcome, note, error, retry_in = "ok", {}, None, None
        try:
            result = job.run(firing) or JobResult()
            outcome, note, error = result.outcome, result.model_dump(mode="json")["note"], result.error
        except TransientError as exc:
            outcome, error = "retry", exc.message
            retry_in = exc.retry_after or min(RETRY_BASE * 2 ** (claim.attempt - 1), RETRY_MAX).total_seconds()
            log.warning("job %s (%s): will retry in %.0fs: %s", job.name, scheduled_for, retry_in, exc.message)
        except KNOWN_ERRORS as exc:
            outcome, error = "failed", exc.message
            log.error("job %s (%s) failed: %s", job.name, scheduled_for, exc.message)
        except Exception as exc:  # a crashing job must still be recorded, and must not stop the others
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("job %s (%s) crashed", job.name, scheduled_for)
        try:
            row = sql.finish_job_run(
                self.db,
                id=claim.id,
                attempt_token=claim.attempt_token,
                outcome=outcome,
                note=note,
                error=error,
                retry_in_seconds=retry_in,
            )
        except StaleAttempt:
            log.warning("job %s (%s): its lease ran out and another instance took over", job.name, scheduled_for)
            return None
        return JobRun.model_validate(row)


def recent_runs(db: Database, *, limit: int = 30, job: str | None = None) -> list[JobRun]:
    """The latest runs, newest first (of one job when given)."""
    return [JobRun.model_validate(row) for row in sql.recent_job_runs(db, job=job, limit=limit)]
