"""Discord notifications end to end on real PostgreSQL and a fake Discord: the outbox, its trigger,
reminders, outcome edits, outages, rate limits and crashes between the post and its record."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import httpx
import psycopg
import pytest

from agents import REGISTRY
from app.approvals.links import LinkSigner
from app.approvals.queue import ApprovalQueue
from app.core.config_check import check
from app.core.database import Database
from app.core.models import ActionRequest, DecisionRequest, Impact
from app.core.settings import Settings
from app.notifications.messages import Notification, post_message
from app.notifications.sender import NotificationSender
from app.schedule.scheduler import build_scheduler
from integrations.discord import DiscordClient, DiscordConfig
from integrations.discord_text import ZWSP
from integrations.resilience import CircuitBreaker
from tests.conftest import advance_clock, make_settings
from tests.fake_discord import (
    UNKNOWN_WEBHOOK,
    Answer,
    FakeDiscord,
    Request,
    gateway_error,
    limit_violations,
    no_answer,
    rate_limited,
)

ROLE = "112233445566778899"
BASE = "https://ops.example.com"
HOUR = 3600.0
IMPACTS = {
    "LOW": Impact(),
    "MEDIUM": Impact(recipients=100),
    "HIGH": Impact(recipients=1000),
    "CRITICAL": Impact(cost_usd=Decimal(500)),
}


class Clocks:
    """The database clock and the circuit breaker's clock, moved together instead of sleeping."""

    def __init__(self, sql: psycopg.Connection) -> None:
        self.sql = sql
        self.monotonic = 0.0

    def __call__(self) -> float:
        return self.monotonic

    def tick(self, seconds: float) -> None:
        advance_clock(self.sql, seconds)
        self.monotonic += seconds


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def nsettings(database_url: str, discord: FakeDiscord, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        public_base_url=BASE,
        discord_webhook_url=discord.webhook_url,
        discord_escalation_role_id=ROLE,
    )


@pytest.fixture
def clocks(sql: psycopg.Connection) -> Clocks:
    return Clocks(sql)


@pytest.fixture
def sleeps() -> list[float]:
    return []


SenderFactory = Callable[..., NotificationSender]


@pytest.fixture
def sender_for(db: Database, sleeps: list[float], clocks: Clocks) -> Iterator[SenderFactory]:
    made: list[NotificationSender] = []

    def make(
        settings: Settings,
        worker: str = "s1",
        transport: httpx.BaseTransport | None = None,
        breaker_threshold: int = 5,
        timeout: float = 5,
    ) -> NotificationSender:
        assert settings.discord_webhook_url is not None
        breaker = CircuitBreaker("discord", failure_threshold=breaker_threshold, clock=clocks)
        client = DiscordClient(
            DiscordConfig(webhook_url=settings.discord_webhook_url, timeout_seconds=timeout),
            sleep=sleeps.append,
            clock=clocks,
            breaker=breaker,
            transport=transport,
        )
        sender = NotificationSender(db, settings, client=client, worker_id=worker, rng=lambda: 1.0)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


@pytest.fixture
def sender(sender_for: SenderFactory, nsettings: Settings) -> NotificationSender:
    return sender_for(nsettings)


@pytest.fixture
def queue(db: Database, nsettings: Settings) -> ApprovalQueue:
    return ApprovalQueue(db, nsettings)


def submit(queue: ApprovalQueue, tier: str, **fields: Any) -> UUID:
    values: dict[str, Any] = {
        "agent": "marketing",
        "kind": "note.record",
        "summary": f"{tier} note",
        "reasoning": "the customer asked",
        "payload": {"body": "Hello"},
        "impact": IMPACTS[tier],
        **fields,
    }
    return queue.submit(ActionRequest(**values), actor="test").id


def outbox(sql: psycopg.Connection, action_id: UUID) -> list[tuple[str, str, int]]:
    return sql.execute(
        "select kind, status, episode from discord_notifications where action_id = %s order by id", (action_id,)
    ).fetchall()


def text(request: Request) -> str:
    return json.dumps(request.body, ensure_ascii=False)


def about(message: Request | dict[str, Any]) -> str:
    """The action id in the footer of a request's or a stored message's embed."""
    body = message.body if isinstance(message, Request) else message
    return body["embeds"][0]["footer"]["text"].split("action ")[1].split(" ")[0]


def assert_safe(request: Request) -> None:
    """What every request must be, whatever it says."""
    assert limit_violations(request.body) == []
    allowed = request.body["allowed_mentions"]
    assert allowed["parse"] == [] and allowed.get("roles", [ROLE]) == [ROLE]
    assert "http" not in request.body["content"]
    assert all("url" not in embed for embed in request.body["embeds"])


# --- announce ----------------------------------------------------------------------------------------
def test_a_pending_action_is_announced_once_with_link_buttons(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    nsettings: Settings,
) -> None:
    action_id = submit(queue, "MEDIUM")
    assert outbox(sql, action_id) == [("announce", "queued", 1)]  # queued with the submit itself
    assert sender.run_until_idle() == 1
    [post] = discord.requests
    assert post.method == "POST" and post.query == {"wait": ["true"], "with_components": ["true"]}
    assert_safe(post)
    assert post.body["allowed_mentions"] == {"parse": []}
    [embed] = post.body["embeds"]
    assert embed["color"] == 0xF1C40F and embed["title"] == "MEDIUM note"
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["Agent"] == "marketing" and fields["Recipients"] == "100" and fields["Public"] == "no"
    assert fields["Expires"].startswith("<t:") and "Draft" in fields and "Why this tier" in fields
    [row] = post.body["components"]
    buttons = row["components"]
    assert [(b["type"], b["style"], b["label"]) for b in buttons] == [
        (2, 5, "Review"),
        (2, 5, "Approve"),
        (2, 5, "Reject"),
    ]
    action = queue.get(action_id)
    signer = LinkSigner(nsettings)
    for button, purpose in zip(buttons, ("review", "approve", "reject"), strict=True):
        assert button["url"].startswith(f"{BASE}/approvals/{action_id}?t=")
        token = parse_qs(urlsplit(button["url"]).query)["t"][0]
        assert signer.verify(token, action_id=action_id, draft_hash=action["draft_hash"]).p == purpose
    message_id = sql.execute("select message_id from discord_messages where action_id = %s", (action_id,)).fetchone()[0]
    assert message_id in discord.messages
    assert outbox(sql, action_id) == [("announce", "sent", 1)]
    assert sender.run_until_idle() == 0 and len(discord.requests) == 1
    assert [
        e for (e,) in sql.execute("select event from audit_log where action_id = %s order by id", (action_id,))
    ] == ["submitted", "notified"]


def test_an_auto_run_low_action_is_never_announced(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
) -> None:
    action_id = submit(queue, "LOW")
    assert outbox(sql, action_id) == [("announce", "cancelled", 1)]
    assert sender.run_until_idle() == 0 and discord.requests == []


def test_tiers_have_their_colours_and_critical_mentions_the_escalation_role(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
) -> None:
    for tier in ("HIGH", "CRITICAL"):
        submit(queue, tier)
    sender.run_until_idle()
    high, critical = discord.posts()
    assert high.body["embeds"][0]["color"] == 0xE67E22 and "<@&" not in high.body["content"]
    assert high.body["allowed_mentions"] == {"parse": []}
    assert critical.body["embeds"][0]["color"] == 0xE74C3C
    assert critical.body["content"].startswith(f"<@&{ROLE}> ")
    assert critical.body["allowed_mentions"] == {"parse": [], "roles": [ROLE]}


def test_without_an_escalation_role_critical_pings_nobody(
    db: Database,
    database_url: str,
    discord: FakeDiscord,
    sender_for: SenderFactory,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        database_url=database_url, opsdesk_data_dir=tmp_path, discord_webhook_url=discord.webhook_url
    )
    submit(ApprovalQueue(db, settings), "CRITICAL")
    sender_for(settings).run_until_idle()
    [post] = discord.posts()
    assert post.body["allowed_mentions"] == {"parse": []} and "<@" not in post.body["content"]


def test_everyone_never_pings(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
) -> None:
    ping = "@everyone @here <@123456789012345678> <@&112233445566778899> <@!1>"
    action_id = submit(
        queue, "CRITICAL", summary=f"Sale {ping}", reasoning=f"Because {ping}", payload={"body": f"Hi {ping}"}
    )
    sender.run_until_idle()
    queue.decide(
        action_id, DecisionRequest(decision="reject", reason=f"no {ping}"), actor=f"ann {ping}", channel="link"
    )
    sender.run_until_idle()
    assert [r.method for r in discord.requests] == ["POST", "PATCH"]
    for request in discord.requests:
        assert_safe(request)
        body = text(request)
        for raw in ("@everyone", "@here", "<@1", "<@&1", "<@!"):
            assert raw not in body.replace(f"<@&{ROLE}> ", "", 1)
        assert f"@{ZWSP}everyone" in body
    # the only mention left is the one opsdesk put first in the content itself
    assert discord.requests[0].body["content"].startswith(f"<@&{ROLE}> ")
    assert discord.requests[1].body["allowed_mentions"] == {"parse": []}


def test_a_huge_draft_respects_every_discord_limit(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
) -> None:
    words = "Profit \U0001f4b0 caf\u00e9 e\u0301 \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1fa\U0001f1f8 "
    submit(
        queue,
        "CRITICAL",
        summary=(words * 100)[:1000],
        reasoning=(words * 1000)[:20_000],
        payload={"body": (words * 1000)[:20_000], "metadata": {f"k{n}": words * 10 for n in range(50)}},
    )
    sender.run_until_idle()
    [post] = discord.posts()  # a Discord that checks limits accepted it the first time
    assert_safe(post)
    embed = post.body["embeds"][0]
    assert embed["title"].endswith("\u2026") and embed["description"].endswith("\u2026")
    assert len(post.body["content"]) <= 2000


# --- rate limits, errors, outages ---------------------------------------------------------------------
def test_429_retry_after_is_honoured_by_the_injected_sleep(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sleeps: list[float],
    sql: psycopg.Connection,
) -> None:
    discord.script(rate_limited(1.25, header="2"))
    action_id = submit(queue, "MEDIUM")
    sender.run_until_idle()
    assert sleeps == [1.25] and len(discord.posts()) == 2 and len(discord.messages) == 1
    assert sql.execute(
        "select status, attempts from discord_notifications where action_id = %s", (action_id,)
    ).fetchone() == ("sent", 1)


def test_a_long_429_reschedules_in_the_database_without_using_an_attempt(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sleeps: list[float],
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    discord.script(rate_limited(120.0))
    action_id = submit(queue, "MEDIUM")
    sender.run_until_idle()
    status, attempts, wait = sql.execute(
        "select status, attempts, extract(epoch from run_after - db_now()) from discord_notifications "
        "where action_id = %s",
        (action_id,),
    ).fetchone()
    assert (status, attempts) == ("queued", 0) and 115 < float(wait) <= 120 and sleeps == []
    assert sender.run_until_idle() == 0  # not due yet
    clocks.tick(121)
    sender.run_until_idle()
    assert len(discord.messages) == 1 and outbox(sql, action_id) == [("announce", "sent", 1)]


def test_a_5xx_to_a_post_is_posted_again_only_with_a_flag(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sleeps: list[float],
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    discord.script(gateway_error(502, landed=True))  # Discord posted it; its gateway answered 502
    action_id = submit(queue, "HIGH")
    sender.run_until_idle()
    assert len(discord.posts()) == 1 and sleeps == []  # not re-posted blindly in the same breath
    assert outbox(sql, action_id) == [("announce", "queued", 1)]
    clocks.tick(HOUR)
    sender.run_until_idle()
    first, second = sorted(discord.messages.values(), key=lambda message: int(message["id"]))
    assert "Sent again" not in first["content"] and "Sent again after an interrupted attempt" in second["content"]
    assert first["embeds"][0]["footer"] == second["embeds"][0]["footer"]  # same ref: a reader can match them
    assert outbox(sql, action_id) == [("announce", "sent", 1)]
    notified = sql.execute(
        "select details from audit_log where action_id = %s and event = 'notified'", (action_id,)
    ).fetchone()[0]
    assert notified["possible_repeat"] is True


def test_a_ten_minute_outage_then_recovery_posts_every_notification_exactly_once(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    discord.down()  # connection refused: no request reaches Discord
    ids = [submit(queue, tier) for tier in ("MEDIUM", "HIGH", "CRITICAL", "MEDIUM")]
    for _ in range(20):  # ten minutes of database time, the scheduler's job running every 30 s
        sender.run_until_idle()
        clocks.tick(30)
    assert discord.requests == []
    # nothing given up: after the first failures the open circuit stops calls without using attempts
    assert {s for (s,) in sql.execute("select status from discord_notifications")} == {"queued"}
    discord.up()
    clocks.tick(600)  # the longest backoff
    sender.run_until_idle()
    assert sorted(about(post) for post in discord.posts()) == sorted(str(i) for i in ids)
    assert all("Sent again" not in post.body["content"] for post in discord.posts())
    clocks.tick(3600)
    sender.run_until_idle()
    assert len(discord.posts()) == len(ids)


def test_an_outage_of_timeouts_and_gateway_errors_posts_each_once_or_visibly_marked(
    queue: ApprovalQueue,
    sender_for: SenderFactory,
    nsettings: Settings,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    """Ten minutes of a sick gateway: posts time out or get a 5xx, and some of them were posted all
    the same. Afterwards every notification is out, and any second copy says it may be one."""
    discord.script(
        no_answer(landed=True),
        gateway_error(502, landed=True),
        no_answer(landed=False),
        gateway_error(504, landed=False),
        no_answer(landed=True),
        gateway_error(500, landed=False),
        gateway_error(504, landed=True),
        no_answer(landed=False),
    )
    sender = sender_for(nsettings, timeout=0.3)  # a short read timeout: the silent answers cost little
    ids = [submit(queue, tier) for tier in ("MEDIUM", "HIGH", "CRITICAL", "MEDIUM")]
    for _ in range(20):  # the scheduler's job every 30 s of database time
        sender.run_until_idle()
        clocks.tick(30)
    clocks.tick(600)  # the longest backoff
    sender.run_until_idle()
    assert discord.scripted == []  # the whole outage was met
    assert {status for (status,) in sql.execute("select status from discord_notifications")} == {"sent"}
    by_action: dict[str, list[dict[str, Any]]] = {}
    for message in sorted(discord.messages.values(), key=lambda message: int(message["id"])):
        by_action.setdefault(about(message), []).append(message)
    assert sorted(by_action) == sorted(str(i) for i in ids)
    for copies in by_action.values():
        unmarked = [m for m in copies if "Sent again after an interrupted attempt" not in m["content"]]
        assert len(unmarked) <= 1, copies  # never two copies a reader could take for two approvals
    assert any(len(copies) > 1 for copies in by_action.values())  # the outage did leave copies
    clocks.tick(HOUR)
    posted = len(discord.posts())
    sender.run_until_idle()
    assert len(discord.posts()) == posted  # nothing more once all is recorded


def test_an_outage_of_503s_then_recovery_posts_each_once(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    discord.script(*[Answer(503)] * 7)
    ids = [submit(queue, "MEDIUM") for _ in range(3)]
    for _ in range(20):
        sender.run_until_idle()
        clocks.tick(30)
    sender.run_until_idle()
    assert sorted(about(message) for message in discord.messages.values()) == sorted(str(i) for i in ids)
    assert len(discord.posts()) == 7 + 3
    assert {status for (status,) in sql.execute("select status from discord_notifications")} == {"sent"}


def test_the_webhook_gone_stops_all_calls_and_keeps_the_notifications(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    discord.script(UNKNOWN_WEBHOOK)
    ids = [submit(queue, "MEDIUM") for _ in range(2)]
    sender.run_until_idle()
    assert sender.disabled is not None and "DISCORD_WEBHOOK_URL" in sender.disabled
    assert len(discord.requests) == 1
    clocks.tick(HOUR)
    assert sender.run_until_idle() == 0 and len(discord.requests) == 1
    rows = sql.execute(
        "select status, attempts from discord_notifications where action_id = any(%s)", (ids,)
    ).fetchall()
    assert sorted(rows) == [("queued", 0), ("queued", 0)]


def test_a_refused_payload_fails_that_notification_only_and_is_audited(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
) -> None:
    discord.script(Answer(400, {"message": "Invalid Form Body", "code": 50035}))
    first, second = submit(queue, "MEDIUM"), submit(queue, "MEDIUM")
    sender.run_until_idle()
    assert outbox(sql, first) == [("announce", "failed", 1)] and outbox(sql, second) == [("announce", "sent", 1)]
    assert (
        sql.execute("select reason from audit_log where action_id = %s and event = 'notification_failed'", (first,))
        .fetchone()[0]
        .startswith("discord: HTTP 400")
    )


def test_persistent_failure_gives_up_after_max_attempts(
    db: Database,
    database_url: str,
    discord: FakeDiscord,
    sender_for: SenderFactory,
    sql: psycopg.Connection,
    clocks: Clocks,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        discord_webhook_url=discord.webhook_url,
        discord_max_attempts=2,
    )
    action_id = submit(ApprovalQueue(db, settings), "MEDIUM")
    discord.script(*[Answer(500)] * 6)
    sender = sender_for(settings, breaker_threshold=100)  # an open circuit would not use attempts up
    for _ in range(3):
        sender.run_until_idle()
        clocks.tick(HOUR)
    row = sql.execute(
        "select status, attempts, last_error from discord_notifications where action_id = %s", (action_id,)
    ).fetchone()
    assert row[0] == "failed" and row[1] == 2 and row[2].startswith("gave up after 2 attempts")
    assert discord.messages == {} and len(discord.requests) == 2  # a 5xx'd post is not retried in-process


# --- outcomes ---------------------------------------------------------------------------------------
def test_a_decision_edits_the_right_message_and_drops_its_buttons(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
) -> None:
    decided, other = submit(queue, "MEDIUM"), submit(queue, "HIGH")
    sender.run_until_idle()
    ids = dict(sql.execute("select action_id::text, message_id from discord_messages").fetchall())
    queue.decide(decided, DecisionRequest(decision="reject", reason="wrong audience"), actor="ann", channel="link")
    sender.run_until_idle()
    [edit] = discord.edits()
    assert edit.message_id == ids[str(decided)] and edit.query == {"with_components": ["true"]}
    assert_safe(edit)
    assert edit.body["components"] == [] and "Rejected" in edit.body["content"] and "ann" in edit.body["content"]
    fields = {field["name"]: field["value"] for field in edit.body["embeds"][0]["fields"]}
    assert fields["Reason"] == "wrong audience" and "<t:" in fields["Outcome"]
    assert discord.messages[ids[str(decided)]]["components"] == []
    assert discord.messages[ids[str(other)]]["components"] != []  # the other message is untouched
    assert outbox(sql, decided) == [("announce", "sent", 1), ("outcome", "sent", 1)]


def test_expiry_and_an_edit_then_approve_are_shown(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    expiring, edited = submit(queue, "MEDIUM"), submit(queue, "MEDIUM")
    sender.run_until_idle()
    queue.decide(
        edited, DecisionRequest(decision="modify", modifications={"body": "Hello there"}), actor="bo", channel="link"
    )
    clocks.tick(73 * HOUR)
    queue.expire_due()
    sender.run_until_idle()
    contents = {about(edit): edit.body["content"] for edit in discord.edits()}
    assert "Edited and approved" in contents[str(edited)] and "bo" in contents[str(edited)]
    assert "Expired" in contents[str(expiring)]


def test_a_decision_before_the_announce_went_out_posts_nothing(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
) -> None:
    action_id = submit(queue, "MEDIUM")
    queue.decide(action_id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    sender.run_until_idle()
    assert discord.requests == [] and outbox(sql, action_id) == [("announce", "cancelled", 1)]


def test_a_decision_while_the_announce_is_in_flight_edits_it_once_posted(
    db: Database,
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
) -> None:
    action_id = submit(queue, "MEDIUM")
    [claimed] = db.call("claim_notifications", worker="s1", lease_seconds=150, limit=1)
    queue.decide(action_id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    assert sender.run_until_idle() == 0  # the outcome waits for the post in flight
    sender.deliver(Notification.model_validate(claimed))
    sender.run_until_idle()
    [edit] = discord.edits()
    assert len(discord.posts()) == 1
    assert edit.message_id == sql.execute("select message_id from discord_messages").fetchone()[0]
    assert "Approved" in edit.body["content"] and edit.body["components"] == []


def test_an_action_back_in_pending_is_announced_again(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
) -> None:
    action_id = submit(queue, "MEDIUM")
    sender.run_until_idle()
    queue.decide(action_id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    sender.run_until_idle()
    sql.execute("update actions set status = 'pending', decision = null where id = %s", (action_id,))
    sender.run_until_idle()
    assert [r.method for r in discord.requests] == ["POST", "PATCH", "POST"]
    assert "Back for approval" in discord.requests[2].body["content"]
    assert outbox(sql, action_id) == [("announce", "sent", 1), ("outcome", "sent", 1), ("announce", "sent", 2)]


# --- reminders ------------------------------------------------------------------------------------
def test_reminder_and_critical_escalation_enqueue_once_each_at_the_right_time(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    critical, medium = submit(queue, "CRITICAL"), submit(queue, "MEDIUM")
    sender.run_until_idle()  # announced now; both expire in 72 h
    clocks.tick(24 * HOUR - 60)
    assert sender.enqueue_reminders() == {"reminders": 0, "escalations": 0}
    clocks.tick(60)
    assert sender.enqueue_reminders() == {"reminders": 2, "escalations": 0}
    assert sender.enqueue_reminders() == {"reminders": 0, "escalations": 0}
    sender.run_until_idle()
    clocks.tick(36 * HOUR - 60)  # 60 h after the announce = 12 h before expiry
    assert sender.enqueue_reminders() == {"reminders": 0, "escalations": 0}
    clocks.tick(60)
    assert sender.enqueue_reminders() == {"reminders": 0, "escalations": 1}
    assert sender.enqueue_reminders() == {"reminders": 0, "escalations": 0}
    sender.run_until_idle()
    kinds = [(r.body["embeds"][0]["footer"]["text"], r.body["content"]) for r in discord.posts()]
    assert len(kinds) == 5
    assert sum("Reminder" in content for _, content in kinds) == 2
    [escalation] = [content for _, content in kinds if "Escalation" in content]
    assert escalation.startswith(f"<@&{ROLE}> ")
    assert outbox(sql, medium) == [("announce", "sent", 1), ("reminder", "sent", 1)]
    assert [kind for kind, _, _ in outbox(sql, critical)] == ["announce", "reminder", "escalation"]
    # the decision edits all three messages of the critical action
    queue.decide(critical, DecisionRequest(decision="approve"), actor="ann", channel="link")
    sender.run_until_idle()
    assert sorted(edit.message_id for edit in discord.edits()) == sorted(
        m for (m,) in sql.execute("select message_id from discord_messages where action_id = %s", (critical,))
    )
    assert len(discord.edits()) == 3


def test_no_reminder_for_what_was_decided_or_never_announced(
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    clocks: Clocks,
) -> None:
    decided = submit(queue, "MEDIUM")
    sender.run_until_idle()
    queue.decide(decided, DecisionRequest(decision="approve"), actor="ann", channel="link")
    discord.down()
    submit(queue, "MEDIUM")  # never reaches Discord
    sender.run_until_idle()
    clocks.tick(30 * HOUR)
    assert sender.enqueue_reminders() == {"reminders": 0, "escalations": 0}


# --- crashes -----------------------------------------------------------------------------------------
def test_a_crash_before_the_post_left_reposts_without_a_flag(
    db: Database,
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    action_id = submit(queue, "MEDIUM")
    db.call("claim_notifications", worker="crashed", lease_seconds=150, limit=1)  # then the process died
    assert sender.run_until_idle() == 0  # the lease still holds
    clocks.tick(151)
    sender.run_until_idle()
    [post] = discord.posts()
    assert "Sent again" not in post.body["content"]
    assert sql.execute(
        "select count(*) from audit_log where action_id = %s and event = 'notification_uncertain'", (action_id,)
    ).fetchone() == (0,)


def test_a_crash_after_the_post_left_is_reposted_only_with_a_flag(
    db: Database,
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    action_id = submit(queue, "MEDIUM")
    [row] = db.call("claim_notifications", worker="crashed", lease_seconds=150, limit=1)
    claimed = Notification.model_validate(row)
    db.call("mark_notification_dispatched", id=claimed.id, attempt_token=claimed.attempt_token)
    # the crashed worker's post reached Discord...
    sender.client.execute(post_message(claimed, sender.signer, sender.settings))
    # ...and then it died before recording it
    clocks.tick(151)
    sender.run_until_idle()
    first, second = discord.posts()
    assert "Sent again" not in first.body["content"]
    assert "Sent again after an interrupted attempt" in second.body["content"]
    assert first.body["embeds"][0]["footer"] == second.body["embeds"][0]["footer"]  # same ref: a reader can match
    assert sql.execute(
        "select count(*) from audit_log where action_id = %s and event = 'notification_uncertain'", (action_id,)
    ).fetchone() == (1,)
    notified = sql.execute(
        "select details from audit_log where action_id = %s and event = 'notified'", (action_id,)
    ).fetchone()[0]
    assert notified["possible_repeat"] is True


def test_a_late_answer_from_a_stalled_sender_settles_the_row_without_a_repost(
    db: Database,
    queue: ApprovalQueue,
    sender: NotificationSender,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    action_id = submit(queue, "MEDIUM")
    [row] = db.call("claim_notifications", worker="stalled", lease_seconds=150, limit=1)
    claimed = Notification.model_validate(row)
    db.call("mark_notification_dispatched", id=claimed.id, attempt_token=claimed.attempt_token)
    clocks.tick(151)
    db.call("recover_notification_leases", actor="other", limit=10)  # taken over: queued for a flagged repost
    message_id = sender.client.execute(post_message(claimed, sender.signer, sender.settings))
    late = db.call(
        "record_notification_sent", id=claimed.id, attempt_token=claimed.attempt_token, message_id=message_id
    )
    assert late["late"] is True and late["status"] == "sent"
    sender.run_until_idle()
    assert len(discord.posts()) == 1  # no repost: the late answer proved the first one landed
    queue.decide(action_id, DecisionRequest(decision="approve"), actor="ann", channel="link")
    sender.run_until_idle()
    assert [edit.message_id for edit in discord.edits()] == [message_id]


class _AnswerLost(httpx.HTTPTransport):
    """Delivers the first POST, then loses Discord's answer, as a timeout after sending would."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and self.lost == 0:
            self.lost += 1
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_a_lost_answer_is_never_reposted_silently(
    queue: ApprovalQueue,
    sender_for: SenderFactory,
    nsettings: Settings,
    discord: FakeDiscord,
    sql: psycopg.Connection,
    clocks: Clocks,
) -> None:
    action_id = submit(queue, "MEDIUM")
    sender = sender_for(nsettings, transport=_AnswerLost())
    sender.run_until_idle()
    assert len(discord.messages) == 1 and outbox(sql, action_id) == [("announce", "queued", 1)]
    clocks.tick(HOUR)
    sender.run_until_idle()
    first, second = discord.posts()
    assert "Sent again" in second.body["content"] and "Sent again" not in first.body["content"]


def test_two_senders_at_once_post_each_notification_once(
    queue: ApprovalQueue,
    sender_for: SenderFactory,
    nsettings: Settings,
    discord: FakeDiscord,
) -> None:
    ids = [submit(queue, "MEDIUM") for _ in range(12)]
    senders = [sender_for(nsettings, worker=f"s{n}") for n in range(3)]
    threads = [threading.Thread(target=s.run_until_idle) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(about(post) for post in discord.posts()) == sorted(str(i) for i in ids)


# --- wiring -----------------------------------------------------------------------------------------
def test_the_scheduler_drains_the_outbox_and_queues_reminders(
    queue: ApprovalQueue,
    sender: NotificationSender,
) -> None:
    jobs = {job.id for job in build_scheduler(queue, sender, agents=REGISTRY).get_jobs()}
    assert {"expire_approvals", "discord_outbox", "discord_reminders"} <= jobs
    assert "discord_outbox" not in {job.id for job in build_scheduler(queue, agents=REGISTRY).get_jobs()}


def test_config_check_reports_a_bad_escalation_role() -> None:
    report = check(
        _env_file=None,
        discord_webhook_url="http://127.0.0.1:9/api/webhooks/1/t",
        discord_escalation_role_id="@everyone",
    )
    discord = next(part for part in report.parts if part.name == "discord")
    assert discord.state == "malformed"
    assert any(row.setting == "DISCORD_ESCALATION_ROLE_ID" and row.state == "malformed" for row in discord.rows)
