"""Brevo's daily limit on real PostgreSQL: concurrent reservations, the transactional reserve, the
Phoenix quota day, and campaigns sent in batches over days through the real executor path."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
import pytest

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.errors import InvalidInput, StaleAttempt
from app.core.models import ActionRequest, DecisionRequest, Impact, Status, Tier
from app.core.settings import Settings
from app.email.campaigns import CampaignSender
from app.email.quota import EmailQuota
from integrations.brevo import Address
from tests.conftest import advance_clock, make_settings
from tests.fake_brevo import API_KEY, SENDER, FakeBrevo
from tests.fake_http import Recorded, Reply

ROOT = Path(__file__).resolve().parent.parent
PHOENIX = ZoneInfo("America/Phoenix")
DAY = date(2026, 12, 1)


def phoenix(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), PHOENIX)


def set_clock(sql: psycopg.Connection, when: datetime) -> None:
    """Make db_now() read `when` (and run on from there) instead of sleeping until then."""
    sql.execute("update clock_offset set offset_interval = %s - now()", (when,))


@pytest.fixture
def brevo() -> Iterator[FakeBrevo]:
    with FakeBrevo() as fake:
        yield fake


@pytest.fixture
def mail_settings(database_url: str, brevo: FakeBrevo) -> Settings:
    return make_settings(
        database_url=database_url,
        brevo_api_key=API_KEY,
        brevo_sender_email=SENDER,
        brevo_base_url=brevo.url,
        executor_lease_seconds=60,
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clients(mail_settings: Settings, sleeps: list[float]) -> Iterator[Clients]:
    made = Clients(mail_settings, sleep=sleeps.append)
    yield made
    made.close()


@pytest.fixture
def executor(db: Database, mail_settings: Settings, clients: Clients) -> Executor:
    return Executor(db, mail_settings, worker_id="w1", clients=clients, rng=lambda: 1.0)


def daily_job(db: Database, settings: Settings, clients: Clients) -> list[dict[str, Any]]:
    return CampaignSender(db, settings, clients, worker_id="job").send_due()


def campaign(n: int, *, prefix: str = "customer") -> ActionRequest:
    recipients = [{"email": f"{prefix}{i:04d}@example.com", "name": f"Customer {i}"} for i in range(n)]
    return ActionRequest(
        agent="marketing",
        kind="email.campaign",
        summary=f"December news to {n}",
        payload={
            "subject": "December news",
            "html": "<p>Hello {{params.name}}</p>",
            "text": "Hello",
            "recipients": recipients,
        },
        impact=Impact(recipients=n),
    )


def reply(to: str = "ann@example.com") -> ActionRequest:
    return ActionRequest(
        agent="support",
        kind="email.send",
        summary="reply",
        impact=Impact(recipients=1),
        payload={"to": {"email": to}, "subject": "Re: help", "html": "<p>Done</p>"},
    )


def approve(db: Database, settings: Settings, request: ActionRequest) -> UUID:
    queue = ApprovalQueue(db, settings)
    submitted = queue.submit(request, actor="marketing")
    if submitted.status is Status.PENDING:  # below 50 recipients the policy runs it at once
        queue.decide(submitted.id, DecisionRequest(decision="approve"), actor="owner", channel="link")
    return submitted.id


def batches(sql: psycopg.Connection, campaign_id: UUID) -> list[tuple[int, date, str, int]]:
    return sql.execute(
        "select b.batch_no, b.send_on, b.status, count(r.email) from campaign_batches b "
        "left join campaign_recipients r on r.campaign_id = b.campaign_id and r.batch_no = b.batch_no "
        "where b.campaign_id = %s group by b.batch_no, b.send_on, b.status order by b.batch_no",
        (campaign_id,),
    ).fetchall()


def recipient_states(sql: psycopg.Connection, campaign_id: UUID) -> dict[str, int]:
    return dict(
        sql.execute(
            "select status, count(*) from campaign_recipients where campaign_id = %s group by status", (campaign_id,)
        ).fetchall()
    )


def daily_use(sql: psycopg.Connection) -> dict[date, tuple[int, int, int]]:
    """Per quota day: campaign emails held, transactional emails held, the day's counter."""
    rows = sql.execute(
        "select d.day, coalesce(sum(r.held) filter (where r.purpose = 'campaign'), 0), "
        "coalesce(sum(r.held) filter (where r.purpose = 'transactional'), 0), d.used "
        "from email_quota_days d left join email_quota_reservations r on r.day = d.day "
        "group by d.day, d.used order by d.day"
    ).fetchall()
    return {day: (int(c), int(t), used) for day, c, t, used in rows}


def action_status(sql: psycopg.Connection, action_id: UUID) -> str:
    return sql.execute("select status from actions where id = %s", (action_id,)).fetchone()[0]


# --- the counter -----------------------------------------------------------------------------------


def run_workers(count: int, work: Any) -> None:
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            work(n)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_32_workers_asking_for_1000_emails_are_granted_exactly_300(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    set_clock(sql, phoenix(DAY, 10))
    quota = EmailQuota(db, settings)
    granted = [0] * 32

    def ask(worker: int) -> None:
        for email in range(worker, 1000, 32):
            granted[worker] += quota.reserve(f"email.send:{email}", 1, "transactional").held

    run_workers(32, ask)
    assert sum(granted) == 300
    assert daily_use(sql) == {DAY: (0, 300, 300)}
    assert sql.execute("select count(*) from email_quota_reservations where held = 1").fetchone() == (300,)


def test_campaigns_never_touch_the_reserve_and_replies_still_fit(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    set_clock(sql, phoenix(DAY, 10))
    quota = EmailQuota(db, settings)
    campaign_granted = [0] * 32

    def push_campaigns(worker: int) -> None:
        for n in range(10):
            campaign_granted[worker] += quota.reserve(f"campaign:{worker}:{n}", 7, "campaign").held

    run_workers(32, push_campaigns)
    assert sum(campaign_granted) == 270  # 2,240 asked for; the reserve of 30 is not theirs
    assert sum(quota.reserve(f"reply:{n}", 1, "transactional").held for n in range(40)) == 30

    # the next day, campaigns and replies race each other: the reserve holds either way
    set_clock(sql, phoenix(DAY + timedelta(days=1), 10))
    granted: dict[str, list[int]] = {"campaign": [0] * 32, "transactional": [0] * 32}

    def race(worker: int) -> None:
        purpose = "campaign" if worker % 2 else "transactional"
        for n in range(20):
            granted[purpose][worker] += quota.reserve(f"{purpose}:{worker}:{n}", 7 if worker % 2 else 1, purpose).held

    run_workers(32, race)
    campaigns, replies = sum(granted["campaign"]), sum(granted["transactional"])
    assert campaigns <= 270 and replies >= 30 and campaigns + replies == 300
    assert daily_use(sql)[DAY + timedelta(days=1)] == (campaigns, replies, 300)


def test_a_retry_counts_once_and_a_release_gives_the_emails_back(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    quota = EmailQuota(db, settings)
    first = quota.reserve("campaign:x:1", 5, "campaign")
    again = quota.reserve("campaign:x:1", 5, "campaign")
    assert (first.held, first.duplicate, again.held, again.duplicate, again.used) == (5, False, 5, True, 5)
    assert quota.release(first, 2) == 2 and quota.release(first) == 3
    assert quota.outlook()["today"]["used"] == 0
    assert quota.reserve("campaign:x:1", 5, "campaign").duplicate is False  # given back: counted anew


def test_the_quota_day_is_the_phoenix_calendar_day(db: Database, settings: Settings, sql: psycopg.Connection) -> None:
    quota = EmailQuota(db, settings)
    set_clock(sql, phoenix(DAY, 23, 30))  # 06:30 UTC on the next day
    assert quota.reserve("late", 1, "transactional").day == DAY
    set_clock(sql, phoenix(DAY + timedelta(days=1), 0, 1))
    grant = quota.reserve("early", 1, "transactional")
    assert grant.day == DAY + timedelta(days=1) and 86_300 < grant.seconds_to_next_day <= 86_400 - 60
    utc = EmailQuota(db, settings.model_copy(update={"brevo_quota_timezone": "UTC"}))
    assert utc.reserve("utc", 1, "transactional").day == DAY + timedelta(days=1)


# --- campaigns ------------------------------------------------------------------------------------


def test_a_750_recipient_campaign_goes_out_on_three_phoenix_days_none_twice(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    queue = ApprovalQueue(db, mail_settings)
    submitted = queue.submit(campaign(750), actor="marketing")
    assert submitted.risk_tier is Tier.HIGH and submitted.status.value == "pending"
    assert executor.run_until_idle() == 0  # nothing goes out before a person approves
    queue.decide(submitted.id, DecisionRequest(decision="approve"), actor="owner", channel="link")
    executor.run_until_idle()

    assert action_status(sql, submitted.id) == "succeeded"  # one approval for every batch
    tomorrow, after = DAY + timedelta(days=1), DAY + timedelta(days=2)
    assert batches(sql, submitted.id) == [
        (1, DAY, "sent", 270),
        (2, tomorrow, "pending", 270),
        (3, after, "pending", 210),
    ]
    reply_id = queue.submit(reply(), actor="support").id  # the reserve keeps room for a reply today
    executor.run_until_idle()
    assert action_status(sql, reply_id) == "succeeded"

    assert daily_job(db, mail_settings, clients) == []  # batch 2 is not due yet
    for day in (tomorrow, after):
        set_clock(sql, phoenix(day, 9, 5))
        [outcome] = daily_job(db, mail_settings, clients)
        assert outcome["status"] == "sent" and outcome["send_on"] == day.isoformat()
    set_clock(sql, phoenix(after + timedelta(days=1), 9, 5))
    assert daily_job(db, mail_settings, clients) == []

    sent = Counter(email for email in brevo.delivered if email.startswith("customer"))
    assert len(sent) == 750 and set(sent.values()) == {1}
    assert recipient_states(sql, submitted.id) == {"sent": 750}
    assert daily_use(sql) == {DAY: (270, 1, 271), tomorrow: (270, 0, 270), after: (210, 0, 210)}
    campaign_requests = [r.json() for r in brevo.requests if r.json().get("messageVersions")]
    assert [len(body["messageVersions"]) for body in campaign_requests] == [270, 270, 210]
    assert all(len(version["to"]) == 1 for body in campaign_requests for version in body["messageVersions"])
    assert len({body["headers"]["idempotencyKey"] for body in campaign_requests}) == 3
    assert sql.execute("select count(*) from campaign_recipients where message_id is null").fetchone() == (0,)


def test_a_full_day_is_skipped_and_a_day_filled_later_moves_the_batch(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    sql: psycopg.Connection,
) -> None:
    day = [DAY + timedelta(days=n) for n in range(6)]
    set_clock(sql, phoenix(DAY, 14))
    sql.execute("insert into email_quota_days (day, used, updated_at) values (%s, 300, now())", (day[1],))
    campaign_id = approve(db, mail_settings, campaign(750))
    executor.run_until_idle()
    assert batches(sql, campaign_id) == [
        (1, day[0], "sent", 270),
        (2, day[2], "pending", 270),
        (3, day[3], "pending", 210),
    ]

    # on day 2, replies use 200 before the job runs: campaigns may use only 70 more that day
    set_clock(sql, phoenix(day[2], 8))
    quota = EmailQuota(db, mail_settings)
    assert sum(quota.reserve(f"reply:{n}", 1, "transactional").held for n in range(200)) == 200
    for when in day[2:]:
        set_clock(sql, phoenix(when, 9, 5))
        daily_job(db, mail_settings, clients)

    assert batches(sql, campaign_id) == [
        (1, day[0], "sent", 270),
        (2, day[2], "sent", 70),  # what day 2 could still take
        (3, day[3], "sent", 210),
        (4, day[3], "sent", 60),  # the rest of batch 2, on the next day with room
        (5, day[4], "sent", 140),
    ]
    sent = Counter(email for email in brevo.delivered)
    assert len(sent) == 750 and set(sent.values()) == {1}
    use = daily_use(sql)
    assert use[day[1]] == (0, 0, 300)  # nothing went out on the day that was already full
    assert all(c <= 270 and used <= 300 for c, _, used in use.values())
    assert use[day[2]] == (70, 200, 270) and use[day[3]] == (270, 0, 270)


def test_a_crash_between_brevo_accepting_and_our_record_leaves_the_batch_unknown(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    database_url: str,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    campaign_id = approve(db, mail_settings, campaign(600))
    brevo.hold = True  # Brevo accepts the request; its answer never reaches the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.brevo_worker", database_url, brevo.url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    # the request reached the fake before the kill and was accepted (not only received)
    assert brevo.accepted_one.wait(30)
    worker.kill()
    worker.communicate(timeout=10)
    brevo.hold = False
    assert len(brevo.delivered) == 270

    advance_clock(sql, 61)  # the worker's leases run out
    executor.run_until_idle()
    assert action_status(sql, campaign_id) == "unknown"
    daily_job(db, mail_settings, clients)
    assert batches(sql, campaign_id)[0] == (1, DAY, "unknown", 270)
    assert recipient_states(sql, campaign_id) == {"unknown": 270, "pending": 330}
    assert len(brevo.requests) == 1  # never re-sent by a machine

    set_clock(sql, phoenix(DAY + timedelta(days=1), 9, 5))
    daily_job(db, mail_settings, clients)
    set_clock(sql, phoenix(DAY + timedelta(days=2), 9, 5))
    daily_job(db, mail_settings, clients)
    assert Counter(brevo.delivered).most_common(1)[0][1] == 1 and len(brevo.delivered) == 600
    assert batches(sql, campaign_id)[0][2] == "unknown"

    settled = CampaignSender(db, mail_settings, clients, worker_id="cli").settle(
        campaign_id, 1, "sent", actor="owner", reason="Brevo's log lists all 270"
    )
    assert settled["status"] == "sent" and recipient_states(sql, campaign_id) == {"sent": 600}


def test_a_lease_lost_before_any_request_is_sent_again(
    db: Database, mail_settings: Settings, brevo: FakeBrevo, clients: Clients, sql: psycopg.Connection
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    campaign_id = approve(db, mail_settings, campaign(30))  # planned here; no executor runs in this test
    CampaignSender(db, mail_settings, clients, worker_id="w").plan(
        campaign_id, [Address(email=f"customer{n:04d}@example.com") for n in range(30)]
    )
    [claimed] = db.call(
        "claim_campaign_batches",
        worker="lost",
        lease_seconds=60,
        limit=5,
        time_zone="America/Phoenix",
        campaign_id=None,
    )
    assert claimed["batch_no"] == 1
    assert daily_job(db, mail_settings, clients) == []  # still leased to the lost worker
    advance_clock(sql, 61)
    [outcome] = daily_job(db, mail_settings, clients)
    assert outcome["status"] == "sent" and len(brevo.delivered) == 30


def test_402_closes_the_day_and_the_batch_waits_for_the_next(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    brevo.script = [Reply(402, {"code": "not_enough_credits", "message": "Not enough credits"})]
    campaign_id = approve(db, mail_settings, campaign(100))
    executor.run_until_idle()
    tomorrow = DAY + timedelta(days=1)
    assert batches(sql, campaign_id) == [(1, tomorrow, "pending", 100)]
    assert recipient_states(sql, campaign_id) == {"pending": 100}
    outlook = EmailQuota(db, mail_settings).outlook()
    assert outlook["today"]["used"] == 0 and outlook["today"]["closed_reason"] is not None
    assert outlook["today"]["remaining"] == 0 and outlook["scheduled"] == [
        {"day": tomorrow.isoformat(), "batches": 1, "recipients": 100}
    ]
    assert daily_job(db, mail_settings, clients) == []
    set_clock(sql, phoenix(tomorrow, 9, 5))
    [outcome] = daily_job(db, mail_settings, clients)
    assert outcome["sent"] == 100 and len(brevo.requests) == 2


def test_invalid_addresses_are_refused_per_recipient(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    brevo.invalid = {"customer0007@example.com", "customer0031@example.com"}
    campaign_id = approve(db, mail_settings, campaign(40))
    executor.run_until_idle()
    assert recipient_states(sql, campaign_id) == {"sent": 38, "refused": 2}
    refused = sql.execute(
        "select email, error_code from campaign_recipients where status = 'refused' order by email"
    ).fetchall()
    assert refused == [
        ("customer0007@example.com", "invalid_parameter"),
        ("customer0031@example.com", "invalid_parameter"),
    ]
    assert batches(sql, campaign_id) == [(1, DAY, "sent", 40)]
    assert daily_use(sql) == {DAY: (38, 0, 38)}  # the refused two were given back
    assert sorted(brevo.delivered) == sorted(f"customer{n:04d}@example.com" for n in range(40) if n not in (7, 31))


def test_a_400_that_blames_no_address_stops_the_batch_and_refuses_nobody(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    brevo.script = [Reply(400, {"code": "invalid_parameter", "message": "params.name is not valid"})] * 10
    campaign_id = approve(db, mail_settings, campaign(40))
    executor.run_until_idle()
    status, error = sql.execute("select status, last_error from actions where id = %s", (campaign_id,)).fetchone()
    assert status == "failed" and "params.name is not valid" in error
    assert batches(sql, campaign_id) == [(1, DAY, "failed", 40)]
    assert recipient_states(sql, campaign_id) == {"pending": 40}  # none of them is to blame
    assert len(brevo.requests) == 1 and daily_use(sql)[DAY] == (0, 0, 0)  # not split; quota given back
    set_clock(sql, phoenix(DAY + timedelta(days=1), 9, 5))
    assert daily_job(db, mail_settings, clients) == [] and len(brevo.requests) == 1


def test_a_refused_content_stops_every_later_batch_of_the_campaign(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    brevo.script = [Reply(400, {"code": "invalid_parameter", "message": "params.name is not valid"})]
    campaign_id = approve(db, mail_settings, campaign(750))  # batches on three days
    executor.run_until_idle()
    assert [status for _, _, status, _ in batches(sql, campaign_id)] == ["failed", "failed", "failed"]
    for day in (1, 2):  # the sender was fixed meanwhile: still nothing goes out under a failed action
        set_clock(sql, phoenix(DAY + timedelta(days=day), 9, 5))
        assert daily_job(db, mail_settings, clients) == []
    assert len(brevo.requests) == 1 and brevo.delivered == []


def test_a_batch_lease_renewed_before_each_request_outlasts_its_term(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    brevo.invalid = {"customer0007@example.com", "customer0031@example.com"}  # the batch is split ~10 times
    rescued: list[Any] = []

    def slow_brevo(_: Recorded) -> None:  # 40 s per request, while another worker rescues lost leases
        advance_clock(sql, 40)
        rescued.extend(db.call("recover_expired_leases", actor="rescue", limit=10)["recovered"])
        rescued.extend(
            db.call(
                "recover_campaign_batches",
                actor="rescue",
                limit=10,
                daily_limit=300,
                reserve=30,
                time_zone="America/Phoenix",
            )["recovered"]
        )

    brevo.on_request = slow_brevo
    campaign_id = approve(db, mail_settings, campaign(40))
    executor.run_until_idle()
    assert len(brevo.requests) > 3 and rescued == []
    assert action_status(sql, campaign_id) == "succeeded"
    assert recipient_states(sql, campaign_id) == {"sent": 38, "refused": 2}


def test_a_stale_batch_attempt_cannot_renew_its_lease(
    db: Database, mail_settings: Settings, clients: Clients, sql: psycopg.Connection
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    campaign_id = approve(db, mail_settings, campaign(30))
    CampaignSender(db, mail_settings, clients, worker_id="w").plan(
        campaign_id, [Address(email=f"customer{n:04d}@example.com") for n in range(30)]
    )
    [claimed] = db.call(
        "claim_campaign_batches", worker="w", lease_seconds=60, limit=5, time_zone="America/Phoenix", campaign_id=None
    )
    key = {"campaign_id": campaign_id, "batch_no": 1, "attempt_token": claimed["attempt_token"]}
    advance_clock(sql, 50)
    db.call("renew_campaign_batch_lease", **key, lease_seconds=60)
    advance_clock(sql, 50)  # past the first term, within the renewed one
    recover = {"actor": "rescue", "limit": 10, "daily_limit": 300, "reserve": 30, "time_zone": "America/Phoenix"}
    assert db.call("recover_campaign_batches", **recover)["recovered"] == []
    advance_clock(sql, 11)
    assert len(db.call("recover_campaign_batches", **recover)["recovered"]) == 1
    with pytest.raises(StaleAttempt):
        db.call("renew_campaign_batch_lease", **key, lease_seconds=60)


def test_a_transient_failure_puts_the_batch_off_and_a_later_run_sends_it(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    brevo.script = [
        Reply(429, {"code": "too_many_requests", "message": "x"}, headers={"x-sib-ratelimit-reset": "1800"})
    ]
    campaign_id = approve(db, mail_settings, campaign(20))
    executor.run_until_idle()
    assert action_status(sql, campaign_id) == "succeeded"
    assert batches(sql, campaign_id) == [(1, DAY, "pending", 20)] and daily_use(sql)[DAY][2] == 0
    assert daily_job(db, mail_settings, clients) == []  # waits for Brevo's reset
    advance_clock(sql, 1801)
    [outcome] = daily_job(db, mail_settings, clients)
    assert outcome["sent"] == 20 and len(brevo.delivered) == 20


def test_dry_run_sends_nothing_and_records_what_would_have_gone(
    db: Database,
    database_url: str,
    brevo: FakeBrevo,
    sql: psycopg.Connection,
    sleeps: list[float],
) -> None:
    settings = make_settings(database_url=database_url, brevo_dry_run=True)
    set_clock(sql, phoenix(DAY, 14))
    campaign_id = approve(db, settings, campaign(400))
    dry_clients = Clients(settings, sleep=sleeps.append)
    Executor(db, settings, worker_id="w", clients=dry_clients).run_until_idle()
    set_clock(sql, phoenix(DAY + timedelta(days=1), 9, 5))
    daily_job(db, settings, dry_clients)
    assert recipient_states(sql, campaign_id) == {"dry_run": 400}
    assert [b[2] for b in batches(sql, campaign_id)] == ["sent", "sent"]
    assert brevo.requests == [] and sql.execute("select count(*) from email_quota_reservations").fetchone() == (0,)


def test_a_campaign_list_must_be_clean_and_its_recipients_cannot_be_edited(
    db: Database,
    mail_settings: Settings,
) -> None:
    queue = ApprovalQueue(db, mail_settings)
    twice = campaign(3)
    twice.payload["recipients"].append({"email": "CUSTOMER0001@example.com"})
    twice.impact = Impact(recipients=4)
    with pytest.raises(InvalidInput):
        queue.submit(twice, actor="t")
    short = campaign(3)
    short.impact = Impact(recipients=2)
    with pytest.raises(InvalidInput):
        queue.submit(short, actor="t")
    submitted = queue.submit(campaign(60), actor="t")
    with pytest.raises(InvalidInput, match="does not allow editing recipients"):
        queue.decide(
            submitted.id,
            DecisionRequest(decision="modify", modifications={"recipients": []}),
            actor="o",
            channel="link",
        )
    edited = queue.decide(
        submitted.id, DecisionRequest(decision="modify", modifications={"subject": "New"}), actor="o", channel="link"
    )
    assert edited.requested_action["subject"] == "New"


def test_a_batch_brevo_may_have_taken_is_unknown_and_never_resent(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    clients: Clients,
    sql: psycopg.Connection,
) -> None:
    set_clock(sql, phoenix(DAY, 14))
    brevo.script = [Reply(500, {"code": "internal_error", "message": "try later"})] * 3
    campaign_id = approve(db, mail_settings, campaign(60))
    executor.run_until_idle()
    assert action_status(sql, campaign_id) == "unknown"
    assert batches(sql, campaign_id) == [(1, DAY, "unknown", 60)]
    assert daily_use(sql)[DAY] == (60, 0, 60)  # it may have gone out, so it stays counted
    set_clock(sql, phoenix(DAY + timedelta(days=1), 9, 5))
    assert daily_job(db, mail_settings, clients) == [] and len(brevo.requests) == 3


def test_the_cli_sends_what_is_due_and_the_schedule_has_the_job(
    db: Database,
    database_url: str,
    sql: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agents import REGISTRY
    from app.schedule.scheduler import build_scheduler
    from scheduler import main

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "DATABASE_URL": database_url,
        "OPS_API_TOKEN": "cli-test-token-0123456789",
        "APPROVAL_LINK_SECRET": "cli-test-link-secret-0123",
        "BREVO_DRY_RUN": "true",
    }.items():
        monkeypatch.setenv(name, value)
    settings = make_settings(database_url=database_url, brevo_dry_run=True)
    set_clock(sql, phoenix(DAY, 14))
    campaign_id = approve(db, settings, campaign(280))
    db.call(
        "plan_email_campaign",
        campaign_id=campaign_id,
        recipients=[{"email": f"customer{n:04d}@example.com"} for n in range(280)],
        batch_size=300,
        daily_limit=300,
        reserve=30,
        time_zone="America/Phoenix",
    )
    with pytest.raises(SystemExit) as exited:
        main(["brevo", "send-due"])
    assert exited.value.code == 0
    assert '"status": "sent"' in capsys.readouterr().out
    assert recipient_states(sql, campaign_id) == {"dry_run": 270, "pending": 10}

    job = build_scheduler(ApprovalQueue(db, settings), agents=REGISTRY).get_job("campaign_batches")
    assert str(job.trigger.timezone) == "America/Phoenix" and "hour='9-23'" in str(job.trigger)
