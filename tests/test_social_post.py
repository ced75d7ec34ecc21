"""The `social.post` kind through the approval queue and the executor, against the fake Buffer: its
tier, the per-network text limit on submission and on an edit, the time read in CRON_TIMEZONE, and
a post whose answer was lost never made twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime
from typing import Any

import psycopg
import pytest

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.core.database import Database
from app.core.errors import InvalidInput
from app.core.models import ActionRequest, DecisionRequest, Tier
from app.core.settings import Settings
from integrations.buffer_models import PostRequest
from tests.conftest import advance_clock, make_settings
from tests.fake_buffer import API_KEY, FakeBuffer, Fault
from tests.fake_http import Reply


@pytest.fixture
def buffer(database_url: str) -> Iterator[FakeBuffer]:
    """The fake keeps the database's time, so `createdAt` and the recorded attempt agree."""
    with psycopg.connect(database_url, autocommit=True) as conn:

        def db_now() -> datetime:
            row = conn.execute("select db_now()").fetchone()
            assert row is not None
            return row[0]

        with FakeBuffer(clock=db_now) as fake:
            yield fake
        assert fake.internal_errors == []


@pytest.fixture
def settings(database_url: str, buffer: FakeBuffer) -> Settings:
    return make_settings(
        database_url=database_url,
        buffer_api_key=API_KEY,
        buffer_api_url=buffer.api_url,
        buffer_timeout_seconds=10,
    )


@pytest.fixture
def run(db: Database, settings: Settings) -> Iterator[Callable[[], int]]:
    executor = Executor(
        db, settings, worker_id="w1", clients=Clients(settings, db, sleep=lambda _: None), rng=lambda: 1.0
    )
    yield executor.run_until_idle
    executor.close()


def payload(buffer: FakeBuffer, service: str = "linkedin", **fields: Any) -> dict[str, Any]:
    channel = buffer.channel(service)
    return {"channel_id": channel.id, "network": service, "channel_name": channel.name, "text": "Hello", **fields}


def submit(db: Database, settings: Settings, body: dict[str, Any]) -> Any:
    return ApprovalQueue(db, settings).submit(
        ActionRequest(agent="marketing", kind="social.post", summary="post", payload=body), actor="test"
    )


def approve(db: Database, settings: Settings, action_id: uuid.UUID, **modifications: Any) -> None:
    ApprovalQueue(db, settings).decide(
        action_id,
        DecisionRequest(
            decision="modify" if modifications else "approve", modifications=modifications or None, decided_by="owner"
        ),
        actor="owner",
        channel="link",
    )


def row(sql: psycopg.Connection, action_id: uuid.UUID) -> dict[str, Any]:
    found = sql.execute("select status, result, last_error from actions where id = %s", (action_id,)).fetchone()
    assert found is not None
    return dict(zip(("status", "result", "last_error"), found, strict=True))


def test_a_post_is_at_least_medium_and_posting_now_is_high(
    db: Database, settings: Settings, buffer: FakeBuffer
) -> None:
    assert submit(db, settings, payload(buffer)).risk_tier is Tier.MEDIUM
    assert submit(db, settings, payload(buffer, when="now")).risk_tier is Tier.HIGH


def test_an_approved_post_goes_to_the_queue_once_with_its_link_and_image(
    db: Database, settings: Settings, buffer: FakeBuffer, sql: psycopg.Connection, run: Callable[[], int]
) -> None:
    body = payload(buffer, link="https://example.com/blog/launch", image_url="https://cdn.example.com/launch.png")
    action = submit(db, settings, body)
    assert run() == 0  # MEDIUM waits for a person
    approve(db, settings, action.id)
    assert run() == 1
    done = row(sql, action.id)
    [post] = buffer.created_posts()
    assert done["status"] == "succeeded" and done["result"]["post_id"] == post.id
    assert done["result"]["found_after_lost_answer"] is False and done["result"]["status"] == "scheduled"
    assert post.text == "Hello\n\nhttps://example.com/blog/launch" and post.mode == "addToQueue"
    assert [a["source"] for a in post.assets] == ["https://cdn.example.com/launch.png"]
    assert run() == 0 and len(buffer.calls("createPost")) == 1


def test_a_time_is_read_in_cron_timezone(
    db: Database, settings: Settings, buffer: FakeBuffer, run: Callable[[], int]
) -> None:
    action = submit(db, settings, payload(buffer, when="at", at="2030-01-15T09:30:00"))
    approve(db, settings, action.id)
    assert run() == 1
    [post] = buffer.created_posts()
    assert post.mode == "customScheduled" and post.due_at is not None
    assert post.due_at.isoformat() == "2030-01-15T16:30:00+00:00"  # America/Phoenix is UTC-7
    assert buffer.calls("createPost")[0]["input"]["dueAt"] == "2030-01-15T16:30:00.000Z"


def test_a_time_that_passed_goes_back_to_a_person(
    db: Database, settings: Settings, buffer: FakeBuffer, sql: psycopg.Connection, run: Callable[[], int]
) -> None:
    action = submit(db, settings, payload(buffer, when="at", at="2026-01-15T09:30:00"))
    approve(db, settings, action.id)
    assert run() == 1
    assert row(sql, action.id)["status"] == "pending" and buffer.created_posts() == []


@pytest.mark.parametrize(
    ("service", "limit"), [("twitter", 280), ("bluesky", 300), ("mastodon", 500), ("linkedin", 3000)]
)
def test_the_text_is_held_to_the_networks_limit_on_submission_and_on_an_edit(
    db: Database, settings: Settings, buffer: FakeBuffer, service: str, limit: int
) -> None:
    with pytest.raises(InvalidInput) as refused:
        submit(db, settings, payload(buffer, service, text="x" * (limit + 1)))
    assert f"at most {limit} characters" in str(refused.value.details)
    action = submit(db, settings, payload(buffer, service, text="x" * (limit - 30)))
    with pytest.raises(InvalidInput):  # the link is added to the text, and counts
        approve(db, settings, action.id, link="https://example.com/a/rather/long/path/to/a/post")
    with pytest.raises(InvalidInput, match="does not allow editing"):
        approve(db, settings, action.id, channel_id=buffer.channel("twitter").id)
    approve(db, settings, action.id, text="Short now")
    linked = submit(db, settings, payload(buffer, service, link="https://example.com/a"))
    approve(db, settings, linked.id, link="")  # an emptied box on the review page: no link
    stored = db.call("get_action", id=linked.id)
    assert stored["requested_action"]["link"] is None and stored["status"] == "approved"


def test_a_mastodon_servers_own_limit_is_used(db: Database, settings: Settings, buffer: FakeBuffer) -> None:
    with pytest.raises(InvalidInput):
        submit(db, settings, payload(buffer, "mastodon", max_characters=100, text="x" * 101))
    assert submit(db, settings, payload(buffer, "mastodon", max_characters=5000, text="x" * 4000)).risk_tier


@pytest.mark.parametrize("how", ["hold", "drop"])
def test_a_post_whose_answer_was_lost_is_found_not_posted_again(
    db: Database,
    settings: Settings,
    buffer: FakeBuffer,
    sql: psycopg.Connection,
    run: Callable[[], int],
    how: str,
) -> None:
    action = submit(db, settings, payload(buffer))
    approve(db, settings, action.id)
    buffer.inject(Fault("createPost", lost=how))  # type: ignore[arg-type]
    impatient = settings.model_copy(update={"buffer_timeout_seconds": 0.5})  # a held answer: waited for this long
    first = Executor(db, impatient, worker_id="w0", clients=Clients(impatient, db, sleep=lambda _: None))
    try:
        assert first.run_until_idle() == 1
    finally:
        first.close()
    assert row(sql, action.id)["status"] == "approved"  # a retry is scheduled, nothing re-sent
    assert run() == 0  # not before BUFFER_POST_RECHECK_SECONDS
    advance_clock(sql, 61)
    assert run() == 1
    done = row(sql, action.id)
    [post] = buffer.created_posts()
    assert done["status"] == "succeeded" and done["result"]["post_id"] == post.id
    assert done["result"]["found_after_lost_answer"] is True
    assert len(buffer.calls("createPost")) == 1


def test_a_5xx_that_made_no_post_is_looked_for_then_posted_once(
    db: Database, settings: Settings, buffer: FakeBuffer, sql: psycopg.Connection, run: Callable[[], int]
) -> None:
    action = submit(db, settings, payload(buffer))
    approve(db, settings, action.id)
    buffer.inject(Fault("createPost", reply=Reply(503, b"<html>Service Unavailable</html>")))
    run()
    advance_clock(sql, 61)
    assert run() == 1
    done = row(sql, action.id)
    assert done["status"] == "succeeded" and done["result"]["found_after_lost_answer"] is False
    assert len(buffer.created_posts()) == 1 and len(buffer.calls("createPost")) == 2
    assert len(buffer.calls("posts")) == 1  # it looked before posting again


def test_when_the_lookup_fails_the_action_is_unknown_for_a_person(
    db: Database, settings: Settings, buffer: FakeBuffer, sql: psycopg.Connection, run: Callable[[], int]
) -> None:
    action = submit(db, settings, payload(buffer))
    approve(db, settings, action.id)
    buffer.inject(Fault("createPost", lost="drop"))
    run()
    advance_clock(sql, 61)
    buffer.inject(*[Fault("posts", reply=Reply(502, b"bad gateway")) for _ in range(3)])
    assert run() == 1
    done = row(sql, action.id)
    assert done["status"] == "unknown" and "could not be searched" in done["last_error"]
    assert len(buffer.created_posts()) == 1 and len(buffer.calls("createPost")) == 1


def test_a_refused_key_fails_the_post_and_says_why(
    db: Database, database_url: str, buffer: FakeBuffer, sql: psycopg.Connection
) -> None:
    settings = make_settings(database_url=database_url, buffer_api_key="buf_revoked", buffer_api_url=buffer.api_url)
    action = submit(db, settings, payload(buffer))
    approve(db, settings, action.id)
    executor = Executor(db, settings, worker_id="w1", clients=Clients(settings, db, sleep=lambda _: None))
    try:
        assert executor.run_until_idle() == 1
    finally:
        executor.close()
    done = row(sql, action.id)
    assert done["status"] == "failed" and "refused the credentials" in done["last_error"]
    assert buffer.created_posts() == []


def test_a_post_settled_as_retry_after_a_crash_is_looked_for_not_made_again(
    db: Database, settings: Settings, buffer: FakeBuffer, sql: psycopg.Connection, run: Callable[[], int]
) -> None:
    action = submit(db, settings, payload(buffer))
    approve(db, settings, action.id)
    # the post reached Buffer, then the worker died before recording it
    [claimed] = db.call("claim_actions", worker="w1", lease_seconds=60, limit=1)
    db.call("mark_dispatched", id=action.id, attempt_token=claimed["attempt_token"])
    with closing(Clients(settings, db)) as clients:
        clients.get(Settings.buffer_client).create_post(
            PostRequest(channel_id=buffer.channel("linkedin").id, text="Hello")
        )
    advance_clock(sql, 61)
    db.call("recover_expired_leases", actor="t", limit=10)
    assert row(sql, action.id)["status"] == "unknown"
    ApprovalQueue(db, settings).settle(action.id, "retry", actor="ann", reason="not sure it went")
    assert run() == 1
    done = row(sql, action.id)
    assert done["status"] == "succeeded" and done["result"]["found_after_lost_answer"] is True
    assert len(buffer.created_posts()) == 1 and len(buffer.calls("createPost")) == 1
