"""The daily report on real PostgreSQL: every number against a seeded day where each count is
known, the chart PNG, the Discord post (multipart, the chart attached and shown in the first embed,
within Discord's limits, posted once even when instances race or Discord fails), the API (JSON,
HTML, chart) and `opsdesk report`."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from apscheduler.triggers.cron import CronTrigger

from app.approvals.links import LinkSigner
from app.approvals.queue import ApprovalQueue
from app.core.cron import parse_crontab
from app.core.database import Database
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.models import DecisionRequest, Tier
from app.core.settings import Settings
from app.memory.store import MemoryStore
from app.reports.build import DailyReports
from app.reports.chart import render_chart
from app.reports.delivery import ReportSender, report_message
from app.reports.model import Failure
from app.schedule.jobs import ReportJob
from app.schedule.runs import Firing, Job, Schedule
from app.web import create_app
from integrations.discord import Attachment, DiscordClient, DiscordConfig, WebhookMessage, render
from integrations.errors import TransientError
from integrations.resilience import CircuitBreaker
from tests.conftest import API_TOKEN
from tests.fake_discord import Answer, FakeDiscord, limit_violations
from tests.live_server import serve
from tests.report_seed import DAY, EXPECTED_ROWS, EXPECTED_TOTALS, NEXT, Seeded, seed, seed_settings
from tests.schedule_support import MINUTE, SimClock, job_runs, phoenix, run_minutes, set_db_clock

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COUNTS = ("drafted", "auto_run", "approved", "modified", "rejected", "expired", "succeeded", "failed", "unknown")


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height from the IHDR chunk, after checking the signature and the chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    chunk = data[16 : 16 + length]
    assert struct.unpack(">I", data[16 + length : 20 + length])[0] == zlib.crc32(kind + chunk)
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return struct.unpack(">II", chunk[:8])


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def rsettings(database_url: str, discord: FakeDiscord, tmp_path: Path) -> Settings:
    return seed_settings(
        database_url,
        opsdesk_data_dir=tmp_path,
        discord_webhook_url=discord.webhook_url,
        public_base_url="https://ops.example.com",
    )


@pytest.fixture
def seeded(db: Database, sql: psycopg.Connection, rsettings: Settings) -> Seeded:
    return seed(db, sql, rsettings)


@pytest.fixture
def reports(db: Database, rsettings: Settings) -> DailyReports:
    return DailyReports(db, rsettings)


def reports_trigger(reports: DailyReports) -> CronTrigger:
    return parse_crontab(reports.settings.report_cron, reports.settings.time_zone)


def quiet_sender(reports: DailyReports, worker: str = "test") -> ReportSender:
    """A sender whose Discord client never waits on the wall clock between retries."""
    url = reports.settings.discord_webhook_url
    assert url is not None
    return ReportSender(
        reports,
        worker_id=worker,
        client_factory=lambda: DiscordClient(
            DiscordConfig(webhook_url=url, timeout_seconds=5),
            sleep=lambda _: None,
            breaker=CircuitBreaker("discord", clock=lambda: 0.0),
        ),
    )


# --- the numbers ---------------------------------------------------------------------------------
def test_every_number_matches_the_seeded_day(
    db: Database, sql: psycopg.Connection, seeded: Seeded, reports: DailyReports, rsettings: Settings
) -> None:
    report = reports.build(DAY)
    assert (report.day, report.time_zone) == (DAY, "America/Phoenix")
    assert report.totals.model_dump() == {key: EXPECTED_TOTALS.get(key, 0) for key in COUNTS}
    assert [row.model_dump(mode="json") for row in report.by_agent_and_tier] == [
        {key: row.get(key, 0) for key in COUNTS} | {"agent": row["agent"], "tier": row["tier"]} for row in EXPECTED_ROWS
    ]

    assert [run.model_dump(mode="json") for run in report.agent_runs] == [
        {
            "agent": "marketing",
            "runs": 1,
            "ok": 0,
            "failed": 1,
            "running": 0,
            "proposals": 0,
            "tokens": 3000,
            "cost_usd": "0.10",
        },
        {
            "agent": "sales",
            "runs": 2,
            "ok": 1,
            "failed": 0,
            "running": 1,
            "proposals": 7,
            "tokens": 12000,
            "cost_usd": "0.42",
        },
    ]

    emails = report.emails
    assert (emails.sent, emails.daily_limit, emails.reserve, emails.closed_reason) == (125, 300, 30, None)
    assert (emails.today_used, emails.today_remaining, emails.unknown_batches) == (9, 291, 0)
    waiting_recipients = sql.execute("select count(*) from campaign_recipients where status = 'pending'").fetchone()[0]
    assert waiting_recipients == 400 and sum(item.recipients for item in emails.scheduled) == 400
    assert emails.scheduled[0].day == NEXT and sum(item.batches for item in emails.scheduled) >= 2

    assert [item.id for item in report.waiting] == seeded.waiting and report.waiting_total == 3
    assert [item.tier for item in report.waiting] == [Tier.HIGH, Tier.HIGH, Tier.CRITICAL]
    signer = LinkSigner(rsettings)
    for item in report.waiting:
        assert item.review_url is not None and item.review_url.startswith("https://ops.example.com/approvals/")
        action = db.call("get_action", id=item.id)
        token = httpx.URL(item.review_url).params["t"]
        assert signer.verify(token, action_id=item.id, draft_hash=action["draft_hash"]).p == "review"
    assert report.inbox_url is not None and "/approvals/inbox?t=" in report.inbox_url

    llm = report.llm
    assert (llm.spent_usd, llm.budget_usd, llm.calls, llm.refused, llm.failed) == (
        Decimal("0.05"),
        Decimal("5"),
        2,
        1,
        0,
    )
    assert (llm.input_tokens, llm.output_tokens, llm.cache_read_input_tokens, llm.tokens) == (3000, 600, 300, 3900)

    assert report.failures_total == 5
    assert sorted((item.source, item.status) for item in report.failures) == [
        ("action", "failed"),
        ("action", "unknown"),
        ("agent_run", "failed"),
        ("job", "failed"),
        ("notification", "failed"),
    ]
    [failed_run] = [item for item in report.failures if item.source == "agent_run"]
    assert (failed_run.title, failed_run.error) == ("marketing agent run (schedule)", "model answer did not fit")
    refs = {item.ref for item in report.failures if item.source == "action"}
    assert refs == {str(seeded.failed_action), str(seeded.unknown_action)}

    history = {day.day: day for day in report.history}
    assert len(report.history) == 14 and report.history[0].day == DAY - timedelta(days=13)
    assert history[DAY].model_dump(exclude={"day"}) == {
        "succeeded": 3,
        "failed": 1,
        "unknown": 1,
        "rejected": 1,
        "expired": 1,
        "emails_used": 125,
    }
    assert history[DAY - timedelta(days=1)].model_dump(exclude={"day"}) == {
        "succeeded": 0,
        "failed": 0,
        "unknown": 0,
        "rejected": 1,
        "expired": 0,
        "emails_used": 7,
    }
    assert all(not any(day.model_dump(exclude={"day"}).values()) for day in report.history[:-2])


def test_an_empty_day_is_all_zeros(db: Database, sql: psycopg.Connection, reports: DailyReports) -> None:
    set_db_clock(sql, phoenix(NEXT, 9))
    report = reports.build(DAY)
    assert not any(report.totals.model_dump().values())
    assert (report.by_agent_and_tier, report.agent_runs, report.waiting, report.failures) == ([], [], [], [])
    assert (report.emails.sent, report.llm.spent_usd, report.waiting_total, report.failures_total) == (0, 0, 0, 0)


def test_a_day_that_is_not_over_is_refused(sql: psycopg.Connection, reports: DailyReports) -> None:
    set_db_clock(sql, phoenix(NEXT, 9))
    with pytest.raises(InvalidInput, match="built once that day is over"):
        reports.build(NEXT)
    assert reports.yesterday() == DAY
    set_db_clock(sql, phoenix(NEXT, 0, 0, 1))  # just after midnight in Phoenix (07:00 UTC)
    assert reports.yesterday() == DAY


def test_agent_runs_are_started_and_finished_once(db: Database) -> None:
    run = db.call("start_agent_run", agent="sales", trigger="schedule")
    assert run["outcome"] == "running"
    with pytest.raises(InvalidInput):
        db.call("finish_agent_run", id=run["id"], outcome="great", proposals=0, tokens=0, cost_usd="0", error=None)
    with pytest.raises(InvalidInput):
        db.call("finish_agent_run", id=run["id"], outcome="ok", proposals=-1, tokens=0, cost_usd="0", error=None)
    done = db.call("finish_agent_run", id=run["id"], outcome="ok", proposals=2, tokens=10, cost_usd="0.5", error=None)
    assert (done["outcome"], done["proposals"], done["cost_usd"]) == ("ok", 2, "0.5")
    with pytest.raises(Conflict):
        db.call("finish_agent_run", id=run["id"], outcome="failed", proposals=0, tokens=0, cost_usd="0", error="x")
    with pytest.raises(NotFound):
        db.call(
            "finish_agent_run",
            id="00000000-0000-0000-0000-000000000000",
            outcome="ok",
            proposals=0,
            tokens=0,
            cost_usd="0",
            error=None,
        )
    with pytest.raises(InvalidInput):
        db.call("start_agent_run", agent=" ", trigger="schedule")


# --- the chart -------------------------------------------------------------------------------------
def test_the_chart_is_a_valid_png(seeded: Seeded, reports: DailyReports) -> None:
    chart = render_chart(reports.build(DAY))
    assert png_size(chart) == (960, 600)
    assert len(chart) > 10_000  # two drawn panels, not an empty canvas


# --- Discord -------------------------------------------------------------------------------------
def texts_of(body: dict[str, Any]) -> list[str]:
    found = [body.get("content", "")]
    for embed in body.get("embeds", []):
        found += [embed.get("title", ""), embed.get("description", ""), (embed.get("footer") or {}).get("text", "")]
        found += [text for field in embed.get("fields", []) for text in (field["name"], field["value"])]
    return found


def test_the_report_is_posted_once_with_the_chart_attached(
    db: Database,
    seeded: Seeded,
    reports: DailyReports,
    discord: FakeDiscord,
) -> None:
    job = ReportJob(reports, quiet_sender(reports))
    result = job(Firing("daily_report", phoenix(NEXT, 9), attempt=1))
    assert result.note["posted_now"] is True and result.note["day"] == str(DAY)

    [post] = discord.posts()
    assert post.content_type.startswith("multipart/form-data")
    upload = post.files["files[0]"]
    assert (upload.filename, upload.content_type) == ("chart.png", "image/png")
    stored = reports.load(DAY, with_chart=True)
    assert stored is not None and stored.status == "sent" and upload.content == stored.chart
    assert png_size(upload.content) == (960, 600)
    body = post.body
    assert body["attachments"] == [{"id": 0, "filename": "chart.png"}]
    assert body["embeds"][0]["image"] == {"url": "attachment://chart.png"}
    assert body["allowed_mentions"] == {"parse": []}
    assert limit_violations(body) == []
    assert not any("http" in text for text in texts_of(body))  # links only in buttons
    buttons = [button for row in body["components"] for button in row["components"]]
    assert buttons[0]["label"] == "Open the approval inbox"
    assert [button["url"] for button in buttons[1:]] == [item.review_url for item in stored.report.waiting]
    assert post.query["wait"] == ["true"] and stored.discord_message_id in discord.messages
    fields = {field["name"]: field["value"] for field in body["embeds"][0]["fields"]}
    assert (fields["Drafted"], fields["Auto-run"], fields["Edited"], fields["Unknown"]) == ("10", "3", "1", "1")
    assert "Failures worth a look (5)" in [embed["title"] for embed in body["embeds"]]

    again = job(Firing("daily_report", phoenix(NEXT, 9), attempt=2))
    assert (again.note["posted_now"], again.note["sent"]) == (False, True)
    assert len(discord.posts()) == 1


def test_two_instances_racing_post_the_report_once(
    db: Database,
    seeded: Seeded,
    rsettings: Settings,
    discord: FakeDiscord,
) -> None:
    barrier = threading.Barrier(3)
    outcomes: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def instance(n: int) -> None:
        reports = DailyReports(db, rsettings)
        job = ReportJob(reports, quiet_sender(reports, f"instance-{n}"))
        barrier.wait()
        try:
            outcomes.append(job(Firing("daily_report", phoenix(NEXT, 9), attempt=1)).note)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=instance, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(discord.posts()) == 1
    assert sorted(outcome["posted_now"] for outcome in outcomes) == [False, False, True]


def test_a_post_that_may_have_gone_out_is_posted_again_marked_as_a_possible_repeat(
    db: Database,
    sql: psycopg.Connection,
    seeded: Seeded,
    reports: DailyReports,
    discord: FakeDiscord,
) -> None:
    reports.build_and_store(DAY)
    claim = db.call("claim_daily_report_send", day=DAY, worker="crashed", lease_seconds=60)
    db.call("mark_daily_report_dispatched", day=DAY, attempt_token=claim["attempt_token"])  # ... then it died
    assert quiet_sender(reports).send(DAY).status == "sending"  # its lease still holds
    set_db_clock(sql, phoenix(NEXT, 9, 2))
    outcome = quiet_sender(reports).send(DAY)
    assert outcome.posted_now
    [post] = discord.posts()
    assert "an earlier copy of this report may exist" in post.body["content"]


def test_discord_down_at_9_the_report_is_posted_on_a_retry(
    db: Database,
    sql: psycopg.Connection,
    seeded: Seeded,
    reports: DailyReports,
    discord: FakeDiscord,
) -> None:
    discord.script(Answer(502, {}))  # a 5xx to a post may come after the post: not retried in-process
    job = Job(
        "daily_report",
        reports_trigger(reports),
        ReportJob(reports, quiet_sender(reports)),
        grace=timedelta(hours=6),
        lease=timedelta(minutes=15),
        description="report",
    )
    clock = SimClock(phoenix(NEXT, 9))
    schedule = Schedule(db, [job], instance="a", clock=clock)
    run_minutes(schedule, clock, sql, phoenix(NEXT, 9), phoenix(NEXT, 9, 1))
    [run] = job_runs(db, "daily_report")
    assert run["outcome"] == "retry" and "may or may not have been posted" in run["error"]
    stored = reports.load(DAY)
    assert stored is not None and (stored.status, stored.maybe_posted) == ("built", True)
    assert "HTTP 502" in (stored.last_error or "")
    run_minutes(schedule, clock, sql, phoenix(NEXT, 9, 1), phoenix(NEXT, 9, 3))  # retried after a minute
    [run] = job_runs(db, "daily_report")
    assert (run["outcome"], run["attempts"]) == ("ok", 2)
    assert len(discord.posts()) == 2 and len(discord.messages) == 1
    assert "an earlier copy of this report may exist" in discord.posts()[1].body["content"]


def test_a_huge_report_still_fits_discords_limits(seeded: Seeded, reports: DailyReports) -> None:
    report = reports.build(DAY)
    long = "x" * 3000
    waiting = report.waiting[0]
    huge = report.model_copy(
        update={
            "waiting": [waiting.model_copy(update={"summary": long}) for _ in range(25)],
            "waiting_total": 140,
            "failures": [
                Failure(source="job", ref="1", title=long, status="failed", error=long, at=report.generated_at)
                for _ in range(25)
            ],
            "failures_total": 90,
            "by_agent_and_tier": report.by_agent_and_tier * 30,
        }
    )
    body = render(report_message(huge, with_chart=True, maybe_posted=True))
    assert limit_violations(body) == []
    assert "\u2026 and 130 more in the inbox" in body["embeds"][3]["description"]


def test_the_discord_client_sends_files_as_multipart_and_json_without(discord: FakeDiscord) -> None:
    client = DiscordClient(DiscordConfig(webhook_url=discord.webhook_url, timeout_seconds=5), sleep=lambda _: None)
    try:
        client.execute(WebhookMessage(content="plain"))
        client.execute(
            WebhookMessage(content="with a file"),
            [Attachment(filename="a.txt", content=b"\x00\r\n1", content_type="text/plain")],
        )
    finally:
        client.close()
    plain, with_file = discord.posts()
    assert plain.content_type == "application/json" and plain.files == {}
    assert with_file.body["attachments"] == [{"id": 0, "filename": "a.txt"}]
    assert with_file.files["files[0]"].content == b"\x00\r\n1"


# --- the API ---------------------------------------------------------------------------------------
def test_the_api_serves_the_report_as_json_html_and_png(
    db: Database,
    seeded: Seeded,
    reports: DailyReports,
    rsettings: Settings,
) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with serve(create_app(rsettings, db)) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/reports/daily", params={"date": str(DAY)}).status_code == 401
        answer = http.get("/reports/daily", params={"date": str(DAY)}, headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["stored"], body["sent_at"]) == (False, None)  # built for this request
        assert body["report"]["totals"]["drafted"] == 10
        assert body["chart_url"] == "https://ops.example.com/reports/daily/chart.png?date=2027-01-20"
        assert reports.load(DAY) is None  # a GET stores nothing

        quiet_sender(reports).send(reports.build_and_store(DAY).day)
        stored = http.get("/reports/daily", headers=auth).json()  # no date: yesterday in Phoenix
        assert (stored["stored"], stored["report"]["day"]) == (True, str(DAY))
        assert stored["discord_message_id"] is not None and stored["sent_at"] is not None

        page = http.get(
            "/reports/daily",
            params={"date": str(DAY)},
            headers={**auth, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        )
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
        assert "data:image/png;base64," in page.text and "Daily report for Wednesday 20 January 2027" in page.text

        chart = http.get("/reports/daily/chart.png", params={"date": str(DAY)}, headers=auth)
        assert chart.headers["content-type"] == "image/png" and png_size(chart.content) == (960, 600)

        early = http.get("/reports/daily", params={"date": str(NEXT)}, headers=auth)
        assert early.status_code == 422 and "built once that day is over" in early.json()["error"]["message"]
        assert http.get("/reports/daily", params={"date": "2027-13-01"}, headers=auth).status_code == 422


def test_opsdesk_report_builds_stores_and_sends_once(
    db: Database,
    database_url: str,
    seeded: Seeded,
    discord: FakeDiscord,
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
        "DISCORD_WEBHOOK_URL": discord.webhook_url,
        "APPROVAL_TTL_HOURS_MEDIUM": "2",
        "COLUMNS": "200",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(["report", "--date", str(DAY)])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Daily report for Wednesday 20 January 2027" in out and "waiting for approval: 3" in out
    assert discord.posts() == []

    with pytest.raises(SystemExit) as exited:
        main(["report", "--date", str(DAY), "--send", "--chart", str(tmp_path / "chart.png")])
    assert exited.value.code == 0 and "posted to Discord" in capsys.readouterr().out
    assert png_size((tmp_path / "chart.png").read_bytes()) == (960, 600)
    with pytest.raises(SystemExit):
        main(["report", "--date", str(DAY), "--send"])
    assert "already posted to Discord" in capsys.readouterr().out
    assert len(discord.posts()) == 1

    with pytest.raises(SystemExit) as exited:
        main(["report", "--date", str(NEXT)])
    assert exited.value.code == 4 and "built once that day is over" in capsys.readouterr().err


def test_the_scheduled_report_job_covers_the_day_before_its_firing(
    db: Database,
    sql: psycopg.Connection,
    seeded: Seeded,
    reports: DailyReports,
    discord: FakeDiscord,
) -> None:
    job = Job(
        "daily_report",
        reports_trigger(reports),
        ReportJob(reports, quiet_sender(reports)),
        grace=timedelta(hours=6),
        lease=timedelta(minutes=15),
        description="report",
    )
    clock = SimClock(phoenix(NEXT, 8, 58))
    schedule = Schedule(db, [job], instance="a", clock=clock)
    run_minutes(schedule, clock, sql, phoenix(NEXT, 8, 58), phoenix(NEXT, 9) + 2 * MINUTE)
    [run] = job_runs(db, "daily_report")
    assert run["note"]["day"] == str(DAY) and run["outcome"] == "ok"
    assert len(discord.posts()) == 1


def test_without_discord_the_report_is_stored_and_the_run_says_why(
    db: Database,
    sql: psycopg.Connection,
    seeded: Seeded,
    database_url: str,
    tmp_path: Path,
) -> None:
    from tests.report_seed import seed_settings as settings_for

    settings = settings_for(database_url, opsdesk_data_dir=tmp_path)
    reports = DailyReports(db, settings)
    note = ReportJob.from_settings(reports, settings, worker_id="w")(
        Firing("daily_report", phoenix(NEXT, 9), attempt=1)
    ).note
    assert note == {"day": DAY, "stored": True, "sent": False, "reason": "DISCORD_WEBHOOK_URL is not set"}
    stored = reports.load(DAY)
    assert stored is not None and stored.status == "built" and stored.has_chart
    with pytest.raises(TransientError):  # the sender refuses the unreachable webhook as a transient failure
        ReportSender(
            reports,
            worker_id="w",
            client_factory=lambda: DiscordClient(
                DiscordConfig(webhook_url="http://127.0.0.1:9/api/webhooks/1/t", timeout_seconds=1),
                sleep=lambda _: None,
            ),
        ).send(DAY)


# --- memory ----------------------------------------------------------------------------------------
def test_a_stored_report_is_found_in_memory_and_rebuilding_it_updates_one_row(
    db: Database,
    sql: psycopg.Connection,
    seeded: Seeded,
    reports: DailyReports,
    rsettings: Settings,
) -> None:
    reports.build_and_store(DAY)
    store = MemoryStore(db, rsettings)
    [hit] = store.search("support broke", mode="fts", kinds=["report"], include_content=True).results
    assert (hit.source, hit.source_id, hit.title) == ("report", str(DAY), f"Daily report {DAY}")
    assert hit.occurred_at == phoenix(DAY, 0)
    assert hit.content is not None and "Waiting for approval: 3" in hit.content and "buy ads" in hit.content
    assert "https://" not in hit.content  # signed review links stay out of memory

    ApprovalQueue(db, rsettings).decide(
        seeded.waiting[2], DecisionRequest(decision="reject", reason="no"), actor="owner", channel="link"
    )
    reports.build_and_store(DAY)  # rebuilt before it was sent: memory follows
    rows = sql.execute("select content from memory where kind = 'report'").fetchall()
    assert len(rows) == 1 and "Waiting for approval: 2" in rows[0][0] and "buy ads" not in rows[0][0]
