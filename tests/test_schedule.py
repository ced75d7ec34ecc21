"""The schedule with injected clocks on real PostgreSQL: crontab semantics, time zones, cron
validation at start-up, three instances through one simulated day, downtime and grace, retries,
lost runs, the agents' seam, APScheduler's wiring and `opsdesk jobs`. Nothing sleeps: the
instances' clocks and the database clock are moved by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from apscheduler.triggers.cron import CronTrigger
from pydantic import ValidationError

import agents
from app.agent_runs.registry import AgentEntry, AgentUnavailable
from app.approvals.queue import ApprovalQueue
from app.core.config_check import check
from app.core.cron import CronError, parse_crontab
from app.core.database import Database
from app.core.errors import StaleAttempt
from app.core.settings import Settings
from app.notifications.sender import NotificationSender
from app.schedule.jobs import AGENT_NOT_AVAILABLE, build_jobs
from app.schedule.runs import Firing, Job, JobResult, Schedule
from app.schedule.scheduler import build_scheduler
from integrations.errors import TransientError
from tests.conftest import make_settings
from tests.fake_discord import FakeDiscord
from tests.schedule_support import (
    MINUTE,
    PHOENIX,
    UTC,
    Recorder,
    SimClock,
    firings,
    job_runs,
    phoenix,
    run_minutes,
    set_db_clock,
)

ROOT = Path(__file__).resolve().parent.parent
MONDAY = date(2027, 1, 18)  # a Monday in January (Phoenix: UTC-7, no DST, all year)


class AgentCalls(list[tuple[str, str]]):
    """Stands in for the agents registry's runs: the agents are tested in their own files; here
    only that the schedule calls them, when, and with what."""

    def __call__(self, name: str, trigger: str, *, settings: Settings, db: Database) -> dict[str, Any]:
        self.append((name, trigger))
        return {"agent": name, "outcome": "ok", "proposals": 0}


class StandInAgents:
    """The agents registry the schedule is handed: the real entries, a stand-in `run`."""

    entries: tuple[AgentEntry, ...] = tuple(agents.REGISTRY.entries)
    run: Any = None


AGENTS = StandInAgents()


@pytest.fixture(autouse=True)
def agent_calls(monkeypatch: pytest.MonkeyPatch) -> AgentCalls:
    calls = AgentCalls()
    monkeypatch.setattr(AGENTS, "run", calls, raising=False)
    return calls


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def ssettings(database_url: str, discord: FakeDiscord, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        discord_webhook_url=discord.webhook_url,
        brevo_dry_run=True,
    )


@pytest.fixture
def notifications(db: Database, ssettings: Settings) -> Iterator[NotificationSender]:
    sender = NotificationSender(db, ssettings)
    yield sender
    sender.close()


def real_jobs(db: Database, settings: Settings, notifications: NotificationSender | None = None) -> list[Job]:
    return build_jobs(db, settings, worker_id="test", agents=AGENTS, notifications=notifications)


def instance(db: Database, jobs: list[Job], name: str, now: datetime) -> tuple[Schedule, SimClock]:
    clock = SimClock(now)
    return Schedule(db, jobs, instance=name, clock=clock), clock


# --- crontab -------------------------------------------------------------------------------------
def weekdays_fired(expression: str) -> set[str]:
    trigger = parse_crontab(expression, PHOENIX)
    moment, seen = datetime(2027, 1, 1, tzinfo=PHOENIX), set()
    for _ in range(30):
        moment = trigger.get_next_fire_time(None, moment + timedelta(microseconds=1))
        seen.add(f"{moment:%a}")
    return seen


def test_crontab_day_numbers_are_crontabs_not_apschedulers() -> None:
    assert weekdays_fired("0 9 * * 1-5") == {"Mon", "Tue", "Wed", "Thu", "Fri"}
    assert weekdays_fired("0 9 * * mon-fri") == {"Mon", "Tue", "Wed", "Thu", "Fri"}
    assert weekdays_fired("0 9 * * 0") == weekdays_fired("0 9 * * 7") == weekdays_fired("0 9 * * SUN") == {"Sun"}
    assert weekdays_fired("0 9 * * 6,0") == {"Sat", "Sun"}
    assert weekdays_fired("0 9 * * */2") == {"Sun", "Tue", "Thu", "Sat"}
    # the pitfall this avoids: APScheduler's own from_crontab reads 1-5 as Tue-Sat
    raw = CronTrigger.from_crontab("0 9 * * 1-5", timezone=PHOENIX)
    assert f"{raw.get_next_fire_time(None, datetime(2027, 1, 17, tzinfo=PHOENIX)):%a}" == "Tue"


def test_other_fields_keep_their_crontab_meaning() -> None:
    trigger = parse_crontab("*/15 8-17 * * 1-5", PHOENIX)
    day = [trigger.get_next_fire_time(None, phoenix(MONDAY, 0))]
    while (following := trigger.get_next_fire_time(None, day[-1] + timedelta(seconds=1))).date() == MONDAY:
        day.append(following)
    assert (len(day), day[0], day[-1]) == (40, phoenix(MONDAY, 8), phoenix(MONDAY, 17, 45))
    quarterly = parse_crontab("30 6 1 jan,apr,jul,oct *", UTC)
    assert quarterly.get_next_fire_time(None, datetime(2027, 1, 2, tzinfo=UTC)) == datetime(
        2027, 4, 1, 6, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 9 * *", "not a 5-field crontab expression"),
        ("0 9 * * * *", "not a 5-field crontab expression"),
        ("60 9 * * *", "minute 60 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 9 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 9 * 13 *", "month 13 is out of range 1-12"),
        ("0 9 * * 8", "day-of-week 8 is out of range 0-7"),
        ("0 9 * * fri-mon", "runs backwards"),
        ("*/0 9 * * *", "a step of 0"),
        ("0 9 L * *", "is not a number"),
        ("0 9 1 * 1", "restricts both day-of-month and day-of-week"),
        ("0 9 30 feb *", "can never fire"),
        ("@daily", "not a 5-field crontab expression"),
    ],
)
def test_a_bad_cron_is_refused_with_a_clear_message(expression: str, says: str) -> None:
    with pytest.raises(CronError, match=says):
        parse_crontab(expression, "UTC")


# --- time zones (injected clock) -------------------------------------------------------------------
@pytest.mark.parametrize("day", [date(2027, 1, 14), date(2027, 7, 15)])
def test_the_report_fires_at_9_phoenix_which_is_16_utc_in_january_and_july(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    day: date,
) -> None:
    recorder = Recorder()
    jobs = recorder.wrap([job for job in real_jobs(db, ssettings) if job.name == "daily_report"])
    schedule, clock = instance(db, jobs, "a", datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC))
    run_minutes(schedule, clock, sql, clock.now, datetime(day.year, day.month, day.day, 17, 0, tzinfo=UTC))
    nine = datetime(day.year, day.month, day.day, 16, 0, tzinfo=UTC)
    assert recorder.of("daily_report") == [nine] and nine == phoenix(day, 9)
    assert [row["scheduled_for"] for row in job_runs(db, "daily_report")] == [nine.isoformat()]


def test_an_infrastructure_cron_fires_at_its_utc_time(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
) -> None:
    recorder = Recorder()
    jobs = recorder.wrap([job for job in real_jobs(db, ssettings) if job.name == "prune_job_runs"])
    assert str(jobs[0].trigger.timezone) == "UTC"
    schedule, clock = instance(db, jobs, "a", datetime(2027, 7, 15, 3, 0, tzinfo=UTC))
    run_minutes(schedule, clock, sql, clock.now, datetime(2027, 7, 15, 4, 0, tzinfo=UTC))
    # 03:40 UTC is 20:40 the day before in Phoenix
    assert recorder.of("prune_job_runs") == [datetime(2027, 7, 15, 3, 40, tzinfo=UTC)]


def test_user_jobs_run_in_cron_timezone_and_infrastructure_in_utc(
    db: Database, ssettings: Settings, notifications: NotificationSender
) -> None:
    zones = {job.name: str(job.trigger.timezone) for job in real_jobs(db, ssettings, notifications)}
    assert zones == {
        "daily_report": "America/Phoenix",
        "agent_sales": "America/Phoenix",
        "agent_support": "America/Phoenix",
        "agent_marketing": "America/Phoenix",
        "campaign_batches": "America/Phoenix",
        "expire_approvals": "UTC",
        "recover_leases": "UTC",
        "prune_job_runs": "UTC",
        "discord_reminders": "UTC",
        "memory_retention": "UTC",
    }


def test_memory_retention_is_a_claimed_job_that_runs_once_per_firing(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
) -> None:
    """Two instances tick the same minutes around 03:17 UTC: the prune runs once, on a claimed
    job_runs row (so `opsdesk jobs` lists it); a prune still running elsewhere makes it skip."""
    recorder = Recorder()
    jobs = recorder.wrap([job for job in real_jobs(db, ssettings) if job.name == "memory_retention"])
    start, end = datetime(2027, 7, 15, 3, 15, tzinfo=UTC), datetime(2027, 7, 16, 3, 20, tzinfo=UTC)
    instances = [instance(db, jobs, name, start) for name in ("a", "b")]
    day_two = datetime(2027, 7, 16, 3, 0, tzinfo=UTC)
    moment = start
    while moment < end:
        if moment == day_two:  # a prune still running elsewhere holds the maintenance lease
            set_db_clock(sql, moment)
            assert db.call("take_maintenance_lease", name="memory_prune", holder="manual", seconds=3600)["taken"]
        for schedule, clock in instances:
            clock.now = moment
            set_db_clock(sql, moment)
            schedule.tick()
        moment += MINUTE if moment.hour == 3 else timedelta(hours=1)
    assert recorder.of("memory_retention") == [
        datetime(2027, 7, 15, 3, 17, tzinfo=UTC),
        datetime(2027, 7, 16, 3, 17, tzinfo=UTC),
    ]
    runs = sorted(job_runs(db, "memory_retention"), key=lambda row: row["scheduled_for"])
    assert [(row["outcome"], row["attempts"]) for row in runs] == [("ok", 1), ("skipped", 1)]
    assert runs[0]["note"] == {"archived": {}, "files": []}
    assert runs[1]["note"]["skipped"] == "another prune is running (manual)"


# --- validation at start-up ------------------------------------------------------------------------
def test_an_invalid_cron_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError, match="day-of-week 9 is out of range"):
        make_settings(sales_agent_cron="0 8 * * 1-9")

    from scheduler import main

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPSDESK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REPORT_CRON", "0 9 * * 1 *")
    with pytest.raises(SystemExit) as exited:
        main(["run", "--no-api", "--no-executor"])
    assert exited.value.code == 2  # configuration: nothing started, not even the embedded database
    assert "REPORT_CRON" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()

    report = check(_env_file=None, report_cron="0 9 * * 1 *", support_agent_cron="*/15 8-17 * * 1-5")
    schedule = next(part for part in report.parts if part.name == "schedule")
    assert schedule.state == "malformed" and not report.ok
    rows = {row.setting: row for row in schedule.rows}
    assert rows["REPORT_CRON"].state == "malformed" and "not a 5-field" in rows["REPORT_CRON"].note
    assert rows["SUPPORT_AGENT_CRON"].state == "set"


# --- several instances -----------------------------------------------------------------------------
def test_three_instances_run_every_job_exactly_once_per_firing_through_a_day(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    notifications: NotificationSender,
    discord: FakeDiscord,
) -> None:
    """Three instances tick every minute of a Monday at the same moments (threads released
    together), each with its own clock a few seconds apart: every firing is claimed once.

    The every-minute jobs are only recorded here (their work is tested where it lives); the others
    do their real work, the report included. The database clock is set once, to the morning of
    the day: claims only need it for their leases, which no run outlives here."""
    recorder = Recorder()
    jobs = recorder.wrap(
        real_jobs(db, ssettings, notifications), record_only={"expire_approvals", "recover_leases", "discord_reminders"}
    )
    start, end = phoenix(MONDAY, 0), phoenix(MONDAY + timedelta(days=1), 0)
    set_db_clock(sql, start)
    skews = (timedelta(0), timedelta(seconds=7), timedelta(seconds=21))
    instances = [instance(db, jobs, f"instance-{n}", start + skew) for n, skew in enumerate(skews)]
    barrier = threading.Barrier(len(instances))
    errors: list[BaseException] = []

    def run(schedule: Schedule, clock: SimClock, skew: timedelta) -> None:
        try:
            moment = start
            while moment < end:
                clock.now = moment + skew
                barrier.wait()  # all three wake for the same minute
                schedule.tick()
                moment += MINUTE
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=run, args=(schedule, clock, skew))
        for (schedule, clock), skew in zip(instances, skews, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    expected = {job.name: firings(job, start, end) for job in jobs}
    assert {name: len(moments) for name, moments in expected.items()} == {
        "daily_report": 1,
        "agent_sales": 1,
        "agent_support": 40,
        "agent_marketing": 1,
        "expire_approvals": 1440,
        "recover_leases": 1440,
        "prune_job_runs": 1,
        "discord_reminders": 1440,
        "campaign_batches": 15,
        "memory_retention": 1,
    }
    assert all(count == 1 for count in recorder.calls.values())  # never twice
    assert {name: recorder.of(name) for name in expected} == expected  # never missed
    rows = job_runs(db)
    assert sorted((row["job"], datetime.fromisoformat(row["scheduled_for"])) for row in rows) == sorted(
        (name, moment) for name, moments in expected.items() for moment in moments
    )
    assert {row["outcome"] for row in rows} == {"ok"}
    assert {row["attempts"] for row in rows} == {1}
    assert {row["instance"] for row in rows} == {"instance-0", "instance-1", "instance-2"}  # whoever wakes first
    [report] = job_runs(db, "daily_report")
    assert datetime.fromisoformat(report["scheduled_for"]) == datetime(2027, 1, 18, 16, 0, tzinfo=UTC)
    posts = discord.posts()
    assert len(posts) == 1 and posts[0].files["files[0]"].filename == "chart.png"  # one report


def test_three_processes_run_every_job_exactly_once_per_firing_through_a_day(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    database_url: str,
    notifications: NotificationSender,
    discord: FakeDiscord,
    tmp_path: Path,
) -> None:
    """The same, with three separate OS processes (tests/schedule_process.py) against the one
    database: each builds the real jobs and ticks on its own simulated clock, seconds apart, which
    the test moves a minute at a time, all three together. Each process counts what its jobs were
    called for; added up, every firing ran exactly once."""
    start, end = phoenix(MONDAY, 0), phoenix(MONDAY + timedelta(days=1), 0)
    set_db_clock(sql, start)
    webhook = ssettings.discord_webhook_url
    assert webhook is not None
    skews = (0, 7, 21)
    logs = [(tmp_path / f"process-{n}.log").open("w") for n in range(len(skews))]  # a pipe could fill up
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.schedule_process",
                database_url,
                f"process-{n}",
                str(skew),
                webhook.get_secret_value(),
                str(tmp_path),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for (n, skew), log in zip(enumerate(skews), logs, strict=True)
    ]
    try:
        moment = start
        while moment < end:
            for process in processes:
                assert process.stdin is not None
                process.stdin.write(f"{moment.isoformat()}\n")
                process.stdin.flush()
            for n, process in enumerate(processes):  # all three tick the same minute before the clock moves on
                assert process.stdout is not None
                assert process.stdout.readline() == "ticked\n", (tmp_path / f"process-{n}.log").read_text()
            moment += MINUTE
        outputs = [process.communicate(timeout=60)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    assert all(process.returncode == 0 for process in processes)

    calls = Counter(
        (job, datetime.fromisoformat(moment))
        for out in outputs
        for job, moment in json.loads(out.removeprefix("calls "))
    )
    expected = {job.name: firings(job, start, end) for job in real_jobs(db, ssettings, notifications)}
    assert set(calls.values()) == {1}  # never twice
    assert sorted(calls) == sorted((name, moment) for name, moments in expected.items() for moment in moments)
    rows = job_runs(db)
    assert len(rows) == sum(calls.values()) and {row["outcome"] for row in rows} == {"ok"}
    assert {row["instance"] for row in rows} == {"process-0", "process-1", "process-2"}  # shared out
    posts = discord.posts()
    assert len(posts) == 1 and posts[0].files["files[0]"].filename == "chart.png"  # one report


# --- downtime ------------------------------------------------------------------------------------
def test_down_from_8_50_to_9_20_the_report_is_still_sent_once_on_restart(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    discord: FakeDiscord,
) -> None:
    recorder = Recorder()
    jobs = recorder.wrap(real_jobs(db, ssettings))
    first, clock = instance(db, jobs, "before", phoenix(MONDAY, 8, 0))
    run_minutes(first, clock, sql, phoenix(MONDAY, 8, 0), phoenix(MONDAY, 8, 51))
    assert recorder.of("daily_report") == []

    restarted, clock = instance(db, jobs, "after", phoenix(MONDAY, 9, 20))  # a new process
    run_minutes(restarted, clock, sql, phoenix(MONDAY, 9, 20), phoenix(MONDAY, 11, 0))
    assert recorder.of("daily_report") == [phoenix(MONDAY, 9)]
    [run] = job_runs(db, "daily_report")
    assert (run["instance"], run["outcome"], run["note"]["day"], run["note"]["posted_now"]) == (
        "after",
        "ok",
        str(MONDAY - timedelta(days=1)),
        True,
    )
    assert len(discord.posts()) == 1
    # the minute jobs caught up with one run each, not one per missed minute
    assert recorder.of("expire_approvals")[50:52] == [phoenix(MONDAY, 8, 50), phoenix(MONDAY, 9, 20)]


def test_down_for_days_it_sends_one_report_not_a_burst(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    discord: FakeDiscord,
) -> None:
    recorder = Recorder()
    jobs = recorder.wrap(real_jobs(db, ssettings))
    first, clock = instance(db, jobs, "before", phoenix(MONDAY, 8, 0))
    run_minutes(first, clock, sql, phoenix(MONDAY, 8, 0), phoenix(MONDAY, 8, 51))
    thursday = MONDAY + timedelta(days=3)

    restarted, clock = instance(db, jobs, "after", phoenix(thursday, 10, 0))
    run_minutes(restarted, clock, sql, phoenix(thursday, 10, 0), phoenix(thursday, 10, 30))
    assert recorder.of("daily_report") == [phoenix(thursday, 9)]  # Wednesday's report; Monday's and Tuesday's are gone
    assert [post.body["content"].splitlines()[0] for post in discord.posts()] == [
        "\U0001f4ca **Daily report for Wednesday 20 January 2027** (America/Phoenix)"
    ]
    # missed agent runs are not replayed: Thursday's sales run (8:00) is two hours late; support's
    # every-quarter-hour runs of three days resume with the one due at the restart
    assert recorder.of("agent_sales") == [phoenix(MONDAY, 8)]  # before the downtime
    assert recorder.of("agent_support")[-2:] == [phoenix(thursday, 10, 0), phoenix(thursday, 10, 15)]
    assert len(recorder.of("agent_support")) == 4 + 2  # Monday 8:00-8:45, then Thursday 10:00 and 10:15


def test_a_restart_after_the_grace_sends_no_report_until_the_next_morning(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    discord: FakeDiscord,
) -> None:
    recorder = Recorder()
    jobs = recorder.wrap(real_jobs(db, ssettings))
    first, clock = instance(db, jobs, "before", phoenix(MONDAY, 8, 0))
    run_minutes(first, clock, sql, phoenix(MONDAY, 8, 0), phoenix(MONDAY, 8, 51))
    restarted, clock = instance(db, jobs, "after", phoenix(MONDAY, 15, 1))  # 9:00 + 6 h grace has passed
    run_minutes(restarted, clock, sql, phoenix(MONDAY, 15, 1), phoenix(MONDAY, 15, 10))
    assert recorder.of("daily_report") == [] and discord.posts() == []
    run_minutes(
        restarted, clock, sql, phoenix(MONDAY + timedelta(days=1), 8, 58), phoenix(MONDAY + timedelta(days=1), 9, 2)
    )
    assert recorder.of("daily_report") == [phoenix(MONDAY + timedelta(days=1), 9)]


@pytest.mark.parametrize(("back_at", "made_up"), [((8, 5), True), ((8, 10), True), ((8, 11), False), ((9, 30), False)])
def test_a_missed_agent_run_is_made_up_only_within_its_grace(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    back_at: tuple[int, int],
    made_up: bool,
) -> None:
    recorder = Recorder()
    jobs = recorder.wrap([job for job in real_jobs(db, ssettings) if job.name in ("agent_sales", "expire_approvals")])
    first, clock = instance(db, jobs, "before", phoenix(MONDAY, 7, 50))
    run_minutes(first, clock, sql, phoenix(MONDAY, 7, 50), phoenix(MONDAY, 7, 56))
    restarted, clock = instance(db, jobs, "after", phoenix(MONDAY, *back_at))
    run_minutes(restarted, clock, sql, phoenix(MONDAY, *back_at), phoenix(MONDAY, *back_at) + 3 * MINUTE)
    assert recorder.of("agent_sales") == ([phoenix(MONDAY, 8)] if made_up else [])


# --- retries and lost runs -------------------------------------------------------------------------
def flaky_job(calls: list[int], *, failures: int, grace: timedelta = timedelta(hours=1)) -> Job:
    def run(firing: Firing) -> JobResult:
        calls.append(firing.attempt)
        if len(calls) <= failures:
            raise TransientError("down for a moment", system="test", retry_after=300)
        return JobResult(note={"attempt": firing.attempt})

    return Job(
        "flaky",
        parse_crontab("0 * * * *", UTC),
        run,
        grace=grace,
        lease=timedelta(minutes=10),
        description="fails first",
    )


def test_a_transient_failure_is_retried_once_its_retry_time_comes(db: Database, sql: psycopg.Connection) -> None:
    calls: list[int] = []
    noon = datetime(2027, 1, 18, 12, 0, tzinfo=UTC)
    schedule, clock = instance(db, [flaky_job(calls, failures=1)], "a", noon)
    run_minutes(schedule, clock, sql, noon, noon + 4 * MINUTE)
    [run] = job_runs(db, "flaky")
    assert (calls, run["outcome"], run["error"]) == ([1], "retry", "test: down for a moment")
    run_minutes(schedule, clock, sql, noon + 4 * MINUTE, noon + 7 * MINUTE)  # Retry-After: 300 s
    [run] = job_runs(db, "flaky")
    assert (calls, run["outcome"], run["attempts"], run["error"]) == ([1, 2], "ok", 2, None)


def test_a_retry_past_the_grace_is_dropped_and_closed_by_the_next_firing(db: Database, sql: psycopg.Connection) -> None:
    calls: list[int] = []
    noon = datetime(2027, 1, 18, 12, 0, tzinfo=UTC)
    schedule, clock = instance(db, [flaky_job(calls, failures=5, grace=timedelta(minutes=2))], "a", noon)
    run_minutes(schedule, clock, sql, noon, noon + 61 * MINUTE)
    assert calls == [1, 1]  # 12:00 once (its retry came after the grace), then 13:00
    runs = {row["scheduled_for"]: row for row in job_runs(db, "flaky")}
    assert runs[noon.isoformat()]["outcome"] == "failed"
    assert "superseded by the firing" in runs[noon.isoformat()]["error"]
    assert runs[(noon + timedelta(hours=1)).isoformat()]["outcome"] == "retry"


def test_a_run_lost_with_its_instance_is_taken_over_within_the_grace(db: Database, sql: psycopg.Connection) -> None:
    calls: list[int] = []
    noon = datetime(2027, 1, 18, 12, 0, tzinfo=UTC)
    job = flaky_job(calls, failures=0)
    set_db_clock(sql, noon)
    claim = db.call("claim_job_run", job="flaky", scheduled_for=noon, instance="died", lease_seconds=600)
    assert claim["claimed"]  # ... and that instance never finished
    survivor, clock = instance(db, [job], "survivor", noon)
    run_minutes(survivor, clock, sql, noon + MINUTE, noon + 10 * MINUTE)
    assert calls == [] and job_runs(db, "flaky")[0]["state"] == "running"  # its lease still holds
    run_minutes(survivor, clock, sql, noon + 10 * MINUTE, noon + 12 * MINUTE)
    [run] = job_runs(db, "flaky")
    assert (calls, run["instance"], run["attempts"], run["outcome"]) == ([2], "survivor", 2, "ok")
    with pytest.raises(StaleAttempt):  # the dead instance's late answer cannot overwrite it
        db.call(
            "finish_job_run",
            id=claim["id"],
            attempt_token=claim["attempt_token"],
            outcome="ok",
            note={},
            error=None,
            retry_in_seconds=None,
        )


def test_parallel_claims_of_one_firing_give_it_to_exactly_one(db: Database) -> None:
    noon = datetime(2027, 1, 18, 12, 0, tzinfo=UTC)
    barrier = threading.Barrier(8)
    answers: list[bool] = []

    def claim(n: int) -> None:
        barrier.wait()
        answers.append(
            db.call("claim_job_run", job="race", scheduled_for=noon, instance=f"i{n}", lease_seconds=60)["claimed"]
        )

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False] * 7 + [True]


# --- the agents' seam ------------------------------------------------------------------------------
def test_an_agent_job_records_agent_not_available_where_the_registry_cannot_run_it(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unavailable(name: str, trigger: str, **_: object) -> None:
        raise AgentUnavailable(f"no agent {name!r}")

    monkeypatch.setattr(AGENTS, "run", unavailable)
    jobs = [job for job in real_jobs(db, ssettings) if job.name == "agent_sales"]
    schedule, clock = instance(db, jobs, "a", phoenix(MONDAY, 8))
    run_minutes(schedule, clock, sql, phoenix(MONDAY, 8), phoenix(MONDAY, 8, 1))
    [run] = job_runs(db, "agent_sales")
    assert (run["outcome"], run["note"]) == ("skipped", {"agent": "sales", "reason": AGENT_NOT_AVAILABLE})

    seen: list[tuple[str, str]] = []

    def run_agent(name: str, trigger: str, *, settings: Settings, db: Database) -> dict[str, Any]:
        seen.append((name, trigger))
        assert settings is ssettings and isinstance(db, Database)  # the scheduler's own, not a new pool
        return {"proposals": 2, "day": MONDAY}

    monkeypatch.setattr(AGENTS, "run", run_agent)
    run_minutes(schedule, clock, sql, phoenix(MONDAY + timedelta(days=1), 8), phoenix(MONDAY + timedelta(days=1), 8, 1))
    assert seen == [("sales", "schedule")]
    latest = job_runs(db, "agent_sales")[0]
    assert (latest["outcome"], latest["note"]) == (
        "ok",
        {"agent": "sales", "result": {"proposals": 2, "day": "2027-01-18"}},
    )


def test_an_agent_that_raises_is_recorded_as_failed_and_the_others_still_run(
    db: Database,
    ssettings: Settings,
    sql: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run_agent(name: str, trigger: str, **_: object) -> None:
        raise RuntimeError(f"{name} broke")

    monkeypatch.setattr(AGENTS, "run", run_agent)
    jobs = [job for job in real_jobs(db, ssettings) if job.name in ("agent_sales", "agent_support")]
    schedule, clock = instance(db, jobs, "a", phoenix(MONDAY, 8))
    run_minutes(schedule, clock, sql, phoenix(MONDAY, 8), phoenix(MONDAY, 8, 1))
    assert {(row["job"], row["outcome"], row["error"]) for row in job_runs(db)} == {
        ("agent_sales", "failed", "RuntimeError: sales broke"),
        ("agent_support", "failed", "RuntimeError: support broke"),
    }


# --- wiring ---------------------------------------------------------------------------------------
def test_apscheduler_wakes_each_job_on_its_own_trigger_and_catches_up_every_minute(
    db: Database,
    ssettings: Settings,
    notifications: NotificationSender,
) -> None:
    scheduler = build_scheduler(ApprovalQueue(db, ssettings), notifications, agents=AGENTS)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    names = {job.name for job in real_jobs(db, ssettings, notifications)}
    assert set(jobs) - {"memory_embed"} == names | {"schedule_catch_up", "discord_outbox"}
    report = jobs["daily_report"]
    assert (str(report.trigger), str(report.trigger.timezone)) == (
        "cron[month='*', day='*', day_of_week='*', hour='9', minute='0']",
        "America/Phoenix",
    )
    assert report.kwargs == {"only": "daily_report"} and report.misfire_grace_time is None
    assert "day_of_week='mon,tue,wed,thu,fri'" in str(jobs["agent_sales"].trigger)
    assert jobs["schedule_catch_up"].kwargs == {}


def test_opsdesk_jobs_lists_upcoming_firings_and_recent_runs(
    db: Database,
    database_url: str,
    sql: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scheduler import main

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "DATABASE_URL": database_url,
        "OPS_API_TOKEN": "cli-test-token-0123456789",
        "APPROVAL_LINK_SECRET": "cli-test-link-secret-0123",
    }.items():
        monkeypatch.setenv(name, value)
    settings = make_settings(database_url=database_url)
    schedule, clock = instance(db, real_jobs(db, settings), "instance-a", phoenix(MONDAY, 8))
    run_minutes(schedule, clock, sql, phoenix(MONDAY, 8), phoenix(MONDAY, 8, 2))
    monkeypatch.setattr("app.cli.schedule.utc_now", lambda: phoenix(MONDAY, 8, 30))
    with pytest.raises(SystemExit) as exited:
        main(["jobs", "--runs", "50"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "daily_report" in out and "Mon 18 Jan 09:00" in out and "Tue 19 Jan 09:00" in out
    assert "agent_support" in out and "Mon 18 Jan 08:45" in out
    assert "instance-a" in out and "agent_sales" in out and '"proposals": 0' in out

    with pytest.raises(SystemExit):
        main(["jobs", "--json", "--job", "agent_sales"])
    listing = json.loads(capsys.readouterr().out)
    assert listing["upcoming"]["daily_report"][0] == phoenix(MONDAY, 9).isoformat()
    assert [run["job"] for run in listing["runs"]] == ["agent_sales"]
