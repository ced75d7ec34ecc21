"""The real sib-api-v3-sdk against a fake Brevo on 127.0.0.1: request shape, faults, and the
`email.send` handler through the executor."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from uuid import UUID

import psycopg
import pytest
from pydantic import SecretStr

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.errors import InvalidInput
from app.core.models import ActionRequest, Impact
from app.core.settings import Settings
from app.kinds.context import idempotency_key
from integrations.brevo import (
    DEFAULT_BASE_URL,
    Address,
    BrevoClient,
    BrevoConfig,
    BrevoRefused,
    CreditsExhausted,
    Message,
    OutcomeUncertain,
)
from integrations.errors import CircuitOpen, RateLimited, TransientError
from integrations.resilience import CircuitBreaker
from tests.conftest import advance_clock, make_settings
from tests.fake_brevo import API_KEY, SENDER, FakeBrevo
from tests.fake_http import Recorded, Reply

KEY = "0b8e5f0e-3a52-5d7c-9a3e-4f1d2c3b4a59"


@pytest.fixture
def brevo() -> Iterator[FakeBrevo]:
    with FakeBrevo() as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(
    url: str, sleeps: list[float], *, timeout: float = 5.0, breaker: CircuitBreaker | None = None
) -> BrevoClient:
    config = BrevoConfig(
        api_key=SecretStr(API_KEY), sender=Address(email=SENDER, name="Ops"), base_url=url, timeout_seconds=timeout
    )
    return BrevoClient(config, sleep=sleeps.append, breaker=breaker)


def reply_to(email: str = "ann@example.com") -> Message:
    return Message(subject="Your order", html="<p>Shipped</p>", text="Shipped", to=Address(email=email, name="Ann"))


def test_one_email_carries_the_api_key_and_an_idempotency_key(brevo: FakeBrevo, sleeps: list[float]) -> None:
    ids = client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)
    [request] = brevo.requests
    assert request.method == "POST" and request.path == "/v3/smtp/email"
    assert request.headers["api-key"] == API_KEY
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "sender": {"email": SENDER, "name": "Ops"},
        "to": [{"email": "ann@example.com", "name": "Ann"}],
        "subject": "Your order",
        "htmlContent": "<p>Shipped</p>",
        "textContent": "Shipped",
        "headers": {"idempotencyKey": KEY},
    }
    assert ids == brevo.accepted[KEY] and len(ids) == 1


def test_versions_are_camel_case_dicts_with_one_recipient_each(brevo: FakeBrevo, sleeps: list[float]) -> None:
    message = Message(
        subject="News",
        html="<p>Hi {{params.name}}</p>",
        tags=["campaign-1"],
        versions=[Address(email="a@example.com", name="A"), Address(email="b@example.com")],
    )
    ids = client(brevo.url, sleeps).send(message, idempotency_key=KEY)
    body = brevo.requests[0].json()
    assert "to" not in body and body["tags"] == ["campaign-1"]
    assert body["messageVersions"] == [
        {"to": [{"email": "a@example.com", "name": "A"}], "params": {"name": "A"}},
        {"to": [{"email": "b@example.com"}], "params": {"name": ""}},
    ]
    assert len(ids) == 2


def test_the_default_host_is_brevo_not_sendinblue() -> None:
    built = BrevoClient(BrevoConfig(api_key=SecretStr(API_KEY), sender=Address(email=SENDER)))
    assert built._api.api_client.configuration.host == DEFAULT_BASE_URL == "https://api.brevo.com/v3"


def test_429_waits_for_x_sib_ratelimit_reset_and_resends_the_same_key(brevo: FakeBrevo, sleeps: list[float]) -> None:
    brevo.script = [
        Reply(
            429,
            {"code": "too_many_requests", "message": "slow down"},
            headers={"x-sib-ratelimit-limit": "1000", "x-sib-ratelimit-remaining": "0", "x-sib-ratelimit-reset": "7"},
        )
    ]
    ids = client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)
    assert sleeps == [7.0] and len(ids) == 1
    assert [r.json()["headers"]["idempotencyKey"] for r in brevo.requests] == [KEY, KEY]


def test_a_long_429_is_left_to_the_caller(brevo: FakeBrevo, sleeps: list[float]) -> None:
    brevo.script = [
        Reply(429, {"code": "too_many_requests", "message": "x"}, headers={"x-sib-ratelimit-reset": "3600"})
    ]
    with pytest.raises(RateLimited) as raised:
        client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)
    assert raised.value.retry_after == 3600 and sleeps == [] and len(brevo.requests) == 1


def test_500_then_success(brevo: FakeBrevo, sleeps: list[float]) -> None:
    brevo.script = [Reply(500, {"code": "internal_error", "message": "oops"})]
    assert len(client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)) == 1
    assert len(brevo.requests) == 2 and len(sleeps) == 1 and brevo.delivered == ["ann@example.com"]


def test_persistent_5xx_is_an_uncertain_outcome(brevo: FakeBrevo, sleeps: list[float]) -> None:
    brevo.script = [Reply(502, "bad gateway")] * 3
    with pytest.raises(OutcomeUncertain):
        client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)
    assert len(brevo.requests) == 3


def test_a_refusal_after_a_5xx_is_still_an_uncertain_outcome(brevo: FakeBrevo, sleeps: list[float]) -> None:
    # the 5xx may have come after the email went out: the 402 that follows says nothing about it
    brevo.script = [Reply(502, "bad gateway"), Reply(402, {"code": "not_enough_credits", "message": "x"})]
    with pytest.raises(OutcomeUncertain, match="may have been sent"):
        client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)
    assert len(brevo.requests) == 2


def test_a_timeout_is_retried_with_the_same_key(brevo: FakeBrevo, sleeps: list[float]) -> None:
    def no_answer(_: Recorded) -> Reply:
        brevo.server.release.wait(30)
        return Reply(201, {"messageId": "<late@x>"})

    brevo.script = [no_answer]
    ids = client(brevo.url, sleeps, timeout=0.3).send(reply_to(), idempotency_key=KEY)
    assert len(ids) == 1 and len(brevo.requests) == 2 and len(sleeps) == 1
    assert {r.json()["headers"]["idempotencyKey"] for r in brevo.requests} == {KEY}


def test_no_connection_is_transient_and_nothing_could_have_gone_out(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError) as raised:
        client(f"http://127.0.0.1:{port}/v3", sleeps).send(reply_to(), idempotency_key=KEY)
    assert not isinstance(raised.value, OutcomeUncertain) and raised.value.details["reached"] is False
    assert len(sleeps) == 2  # our three attempts, not urllib3's hidden ones on top


def test_402_is_credits_exhausted_and_never_retried(brevo: FakeBrevo, sleeps: list[float]) -> None:
    brevo.script = [Reply(402, {"code": "not_enough_credits", "message": "Not enough credits"})]
    with pytest.raises(CreditsExhausted) as raised:
        client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)
    assert raised.value.brevo_code == "not_enough_credits" and raised.value.status == 402
    assert len(brevo.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("status", "code", "message", "blames"),
    [
        (400, "invalid_parameter", "email is not valid in to", True),
        (400, "invalid_parameter", "Invalid email address", True),
        (400, "invalid_parameter", "bad@example.com is not a valid address", True),  # quotes a recipient
        (400, "invalid_parameter", "params.name is not valid", False),  # the content: nobody's address
        (400, "invalid_parameter", "sender email is not valid", False),
        (400, "missing_parameter", "subject is missing", False),
        (401, "unauthorized", "email is not valid in to", False),
    ],
)
def test_only_a_400_about_an_address_blames_a_recipient(status: int, code: str, message: str, blames: bool) -> None:
    refused = BrevoRefused(f"HTTP {status} {code}: {message}", status=status, brevo_code=code, brevo_message=message)
    assert refused.blames_recipient(["bad@example.com", "good@example.com"]) is blames


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_parameter"), (401, "unauthorized")])
def test_refusals_are_not_retried(brevo: FakeBrevo, sleeps: list[float], status: int, code: str) -> None:
    brevo.script = [Reply(status, {"code": code, "message": "no"})]
    with pytest.raises(BrevoRefused) as raised:
        client(brevo.url, sleeps).send(reply_to(), idempotency_key=KEY)
    assert (raised.value.status, raised.value.brevo_code) == (status, code)
    assert len(brevo.requests) == 1 and sleeps == []


def test_the_breaker_opens_after_repeated_failures_and_closes_again(brevo: FakeBrevo, sleeps: list[float]) -> None:
    now = [0.0]
    breaker = CircuitBreaker("brevo", failure_threshold=3, reset_after=30, clock=lambda: now[0])
    brevo_client = client(brevo.url, sleeps, breaker=breaker)
    brevo.script = [Reply(503, "down")] * 3
    with pytest.raises(OutcomeUncertain):
        brevo_client.send(reply_to(), idempotency_key=KEY)
    with pytest.raises(CircuitOpen):
        brevo_client.send(reply_to(), idempotency_key=KEY)
    assert len(brevo.requests) == 3 and breaker.state == "open"
    now[0] = 31.0
    assert len(brevo_client.send(reply_to(), idempotency_key=KEY)) == 1
    assert breaker.state == "closed"


# --- email.send through the executor -------------------------------------------------------------


@pytest.fixture
def mail_settings(database_url: str, brevo: FakeBrevo) -> Settings:
    return make_settings(
        database_url=database_url,
        brevo_api_key=API_KEY,
        brevo_sender_email=SENDER,
        brevo_base_url=brevo.url,
        executor_max_attempts=3,
    )


@pytest.fixture
def executor(db: Database, mail_settings: Settings, sleeps: list[float]) -> Iterator[Executor]:
    made = Executor(
        db, mail_settings, worker_id="w1", clients=Clients(mail_settings, sleep=sleeps.append), rng=lambda: 1.0
    )
    yield made
    made.close()


def email_send(to: str = "ann@example.com", recipients: int = 1) -> ActionRequest:
    return ActionRequest(
        agent="support",
        kind="email.send",
        summary="reply to a ticket",
        payload={
            "to": {"email": to, "name": "Ann"},
            "subject": "Re: your ticket",
            "html": "<p>Fixed</p>",
            "text": "Fixed",
        },
        impact=Impact(recipients=recipients),
    )


def action_row(sql: psycopg.Connection, action_id: UUID) -> tuple[str, dict | None, str | None]:
    return sql.execute("select status, result, last_error from actions where id = %s", (action_id,)).fetchone()


def quota_used(sql: psycopg.Connection) -> int:
    return sql.execute("select coalesce(sum(used), 0) from email_quota_days").fetchone()[0]


def test_email_send_runs_once_with_the_action_s_key(
    db: Database, mail_settings: Settings, brevo: FakeBrevo, executor: Executor, sql: psycopg.Connection
) -> None:
    action = ApprovalQueue(db, mail_settings).submit(email_send(" Ann@Example.com "), actor="t")
    assert action.risk_tier.value == "LOW"
    executor.run_until_idle()
    status, result, _ = action_row(sql, action.id)
    [request] = brevo.requests
    assert status == "succeeded" and result["message_id"] == brevo.accepted[idempotency_key(action.id)][0]
    assert request.json()["to"] == [{"email": "ann@example.com", "name": "Ann"}]
    assert request.json()["headers"]["idempotencyKey"] == idempotency_key(action.id)
    assert quota_used(sql) == 1


def test_email_send_needs_the_true_recipient_count(db: Database, mail_settings: Settings) -> None:
    with pytest.raises(InvalidInput, match=r"impact\.recipients is 0"):
        ApprovalQueue(db, mail_settings).submit(email_send(recipients=0), actor="t")
    with pytest.raises(InvalidInput):
        ApprovalQueue(db, mail_settings).submit(email_send("not-an-address"), actor="t")


def test_email_send_uncertain_then_retried_counts_once(
    db: Database, mail_settings: Settings, brevo: FakeBrevo, executor: Executor, sql: psycopg.Connection
) -> None:
    brevo.script = [Reply(500, "oops")] * 3
    action = ApprovalQueue(db, mail_settings).submit(email_send(), actor="t")
    executor.run_until_idle()
    assert action_row(sql, action.id)[0] == "approved"  # rescheduled in the database
    advance_clock(sql, 60)
    executor.run_until_idle()
    assert action_row(sql, action.id)[0] == "succeeded"
    assert quota_used(sql) == 1  # the second attempt reused the first one's reservation
    assert {r.json()["headers"]["idempotencyKey"] for r in brevo.requests} == {idempotency_key(action.id)}


def test_an_uncertain_send_whose_retry_would_miss_brevo_s_window_is_unknown(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    sql: psycopg.Connection,
) -> None:
    # a 5xx (it may have gone out), then a 429 asking for an hour: Brevo no longer dedupes by then
    brevo.script = [
        Reply(500, {"code": "internal_error", "message": "oops"}),
        Reply(429, {"code": "too_many_requests", "message": "x"}, headers={"x-sib-ratelimit-reset": "3600"}),
    ]
    action = ApprovalQueue(db, mail_settings).submit(email_send(), actor="t")
    executor.run_until_idle()
    status, _, error = action_row(sql, action.id)
    assert status == "unknown" and "30 minutes" in error
    advance_clock(sql, 3601)
    executor.run_until_idle()
    assert len(brevo.requests) == 2 and quota_used(sql) == 1  # never re-sent; it stays counted


def test_giving_up_after_a_send_that_may_have_gone_out_is_unknown_not_failed(
    db: Database,
    database_url: str,
    brevo: FakeBrevo,
    sleeps: list[float],
    sql: psycopg.Connection,
) -> None:
    settings = make_settings(
        database_url=database_url,
        brevo_api_key=API_KEY,
        brevo_sender_email=SENDER,
        brevo_base_url=brevo.url,
        executor_max_attempts=1,
    )
    brevo.script = [Reply(500, "oops")] * 3
    action = ApprovalQueue(db, settings).submit(email_send(), actor="t")
    executor = Executor(db, settings, worker_id="w1", clients=Clients(settings, sleep=sleeps.append), rng=lambda: 1.0)
    executor.run_until_idle()
    executor.close()
    status, _, error = action_row(sql, action.id)
    assert status == "unknown" and "may have gone out" in error  # never "failed": that reads as not sent


@pytest.mark.parametrize(("late", "outcome"), [(1400, "succeeded"), (1600, "unknown")])
def test_a_retry_after_an_uncertain_send_goes_out_only_within_the_window(
    db: Database,
    mail_settings: Settings,
    brevo: FakeBrevo,
    executor: Executor,
    sql: psycopg.Connection,
    late: float,
    outcome: str,
) -> None:
    brevo.script = [Reply(500, "oops")] * 3
    action = ApprovalQueue(db, mail_settings).submit(email_send(), actor="t")
    executor.run_until_idle()
    assert action_row(sql, action.id)[0] == "approved"  # retried in a second or so...
    advance_clock(sql, late)  # ...but the executor was stopped, or behind a backlog
    executor.run_until_idle()
    assert action_row(sql, action.id)[0] == outcome
    assert len(brevo.requests) == (4 if outcome == "succeeded" else 3)
    assert {r.json()["headers"]["idempotencyKey"] for r in brevo.requests} == {idempotency_key(action.id)}


def test_an_invalid_address_fails_and_gives_its_quota_back(
    db: Database, mail_settings: Settings, brevo: FakeBrevo, executor: Executor, sql: psycopg.Connection
) -> None:
    brevo.invalid = {"gone@example.com"}
    action = ApprovalQueue(db, mail_settings).submit(email_send("gone@example.com"), actor="t")
    executor.run_until_idle()
    status, _, error = action_row(sql, action.id)
    assert status == "failed" and "invalid_parameter" in error and len(brevo.requests) == 1
    assert quota_used(sql) == 0


def test_402_stops_the_day_s_sending(
    db: Database, mail_settings: Settings, brevo: FakeBrevo, executor: Executor, sql: psycopg.Connection
) -> None:
    brevo.script = [Reply(402, {"code": "not_enough_credits", "message": "Not enough credits"})]
    queue = ApprovalQueue(db, mail_settings)
    first = queue.submit(email_send("a@example.com"), actor="t")
    executor.run_until_idle()
    assert sql.execute("select used, closed_reason is not null from email_quota_days").fetchone() == (0, True)
    later = queue.submit(email_send("b@example.com"), actor="t")
    executor.run_until_idle()
    for action_id in (first.id, later.id):  # the email that met the 402 waits like the ones after it
        status, _, error = action_row(sql, action_id)
        wait, attempts = sql.execute(
            "select extract(epoch from run_after - db_now()), attempts from actions where id = %s", (action_id,)
        ).fetchone()
        assert status == "approved" and "credits spent" in error and 0 < float(wait) <= 86_400
        assert attempts == 0  # waiting for the quota uses up no attempt
    assert len(brevo.requests) == 1  # nothing more was tried today

    advance_clock(sql, 86_400)  # the next quota day
    executor.run_until_idle()
    assert [action_row(sql, action_id)[0] for action_id in (first.id, later.id)] == ["succeeded", "succeeded"]
    assert sorted(brevo.delivered) == ["a@example.com", "b@example.com"]


def test_dry_run_sends_nothing_and_records_the_email(
    db: Database, database_url: str, brevo: FakeBrevo, sql: psycopg.Connection, sleeps: list[float]
) -> None:
    settings = make_settings(database_url=database_url, brevo_dry_run=True)  # no API key needed
    runner = Executor(db, settings, worker_id="w1", clients=Clients(settings, sleep=sleeps.append))
    action = ApprovalQueue(db, settings).submit(email_send(), actor="t")
    runner.run_until_idle()
    runner.close()
    status, result, _ = action_row(sql, action.id)
    assert status == "succeeded" and result["dry_run"] is True
    assert result["would_send"]["to"] == {"email": "ann@example.com", "name": "Ann"}
    assert brevo.requests == [] and quota_used(sql) == 0


def test_missing_configuration_fails_before_any_quota_is_taken(
    db: Database, settings: Settings, sql: psycopg.Connection
) -> None:
    action = ApprovalQueue(db, settings).submit(email_send(), actor="t")
    runner = Executor(db, settings, worker_id="w2")
    runner.run_until_idle()
    runner.close()
    status, _, error = action_row(sql, action.id)
    assert status == "failed" and "BREVO_API_KEY" in error and quota_used(sql) == 0
