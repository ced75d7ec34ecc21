"""HubSpot: the real hubspot-api-client against a local fake HubSpot (tests/fake_hubspot.py), then the
`hubspot.*` action kinds through the approval queue and the real executor on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr, ValidationError

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.clients import Clients
from app.clients.rate_slots import DbRateSlots
from app.core.database import Database
from app.core.errors import DatabaseError, InvalidInput
from app.core.models import ActionRequest, DecisionRequest, Impact, Tier
from app.core.settings import Settings
from app.kinds.base import ActionKind, impact_as_given
from app.kinds.context import idempotency_key
from app.kinds.hubspot import engagement_marker, is_stage_regression
from app.kinds.registry import kind_registry
from integrations import hubspot as hubspot_module
from integrations.errors import CircuitOpen, NotConfigured, PermanentError, RateLimited, TransientError
from integrations.hubspot import HubSpotClient, HubSpotConfig
from integrations.resilience import CircuitBreaker
from tests.conftest import advance_clock, make_settings
from tests.fake_http import Reply
from tests.fake_hubspot import TOKEN, FakeHubSpot, body_of, error, is_call, iso, rate_limited
from tests.live_server import free_port

NOW = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
NOTES = "/crm/v3/objects/notes"


class Clock:
    """The breaker's clock and the database's (where HubSpot's rate limit is counted), moved together."""

    def __init__(self, sql: psycopg.Connection) -> None:
        self.now = 0.0
        self.sql = sql
        # start at the beginning of a 10-s window (so of a 1-s one too): a short test then never
        # straddles a window boundary, and the limiter's waits are predictable
        epoch = sql.execute("select extract(epoch from db_now())::double precision").fetchone()
        assert epoch is not None
        advance_clock(sql, 10.0 - epoch[0] % 10.0)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        advance_clock(self.sql, seconds)


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as server:
        yield server


@pytest.fixture
def clock(sql: psycopg.Connection) -> Clock:
    return Clock(sql)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(
    base_url: str, db: Database, clock: Clock, sleeps: list[float], *, per_10s: int = 100, timeout: float = 2.0
) -> HubSpotClient:
    def sleep(seconds: float) -> None:  # time passes for the limiter and the breaker, not for the test
        sleeps.append(seconds)
        clock.advance(seconds)

    return HubSpotClient(
        HubSpotConfig(
            access_token=SecretStr(TOKEN),
            base_url=base_url,
            timeout_seconds=timeout,
            requests_per_10s=per_10s,
            searches_per_second=4,
        ),
        slots=DbRateSlots(db),
        breaker=CircuitBreaker("hubspot", failure_threshold=5, reset_after=30, clock=clock),
        sleep=sleep,
    )


@pytest.fixture
def client(fake: FakeHubSpot, db: Database, clock: Clock, sleeps: list[float]) -> Iterator[HubSpotClient]:
    made = make_client(fake.url, db, clock, sleeps)
    yield made
    made.close()


def deal(
    fake: FakeHubSpot,
    stage: str,
    *,
    active_days_ago: int | None,
    created_days_ago: int = 100,
    amount: str | None = "1200.50",
) -> str:
    return fake.add(
        "deals",
        created_at=iso(NOW - timedelta(days=created_days_ago)),
        dealname=f"deal {stage}",
        dealstage=stage,
        pipeline="default",
        amount=amount,
        notes_last_updated=None if active_days_ago is None else iso(NOW - timedelta(days=active_days_ago)),
    )


# --- the client -----------------------------------------------------------------------------
def test_every_call_carries_the_bearer_token(fake: FakeHubSpot, client: HubSpotClient) -> None:
    contact = fake.add("contacts", email="ana@example.com", firstname="Ana", lastname="Diaz")
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=30)
    ticket = fake.add("tickets", subject="Broken", content="help", hs_pipeline="0", hs_pipeline_stage="1")
    fake.associate("tickets", ticket, "contacts", contact, 16)

    client.get_contact(contact)
    client.contacts_created_since(datetime(2025, 1, 1, tzinfo=UTC))
    client.stale_deals(inactive_days=14, now=NOW)
    client.open_tickets()
    client.create_note(object_type="contact", object_id=contact, body="hi", marker="opsdeskx", timestamp=NOW)
    client.create_task(
        object_type="deal", object_id=deal_id, subject="call", body="", due=NOW, priority="HIGH", marker="opsdesky"
    )
    client.find_engagement("note", "opsdeskx")
    client.update_deal_stage(deal_id, "contractsent")

    assert len(fake.requests) >= 12
    assert {r.headers["authorization"] for r in fake.requests} == {f"Bearer {TOKEN}"}
    assert not any("hapikey" in r.path for r in fake.requests)


def test_a_refused_token_is_permanent_and_not_retried(
    fake: FakeHubSpot, db: Database, clock: Clock, sleeps: list[float]
) -> None:
    fake.inject(lambda _: True, error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION"))
    with pytest.raises(PermanentError, match="HTTP 401") as refused:
        make_client(fake.url, db, clock, sleeps).get_contact("1")
    assert refused.value.details["category"] == "INVALID_AUTHENTICATION"
    assert len(fake.requests) == 1


def test_without_a_token_hubspot_actions_fail_clearly(db: Database) -> None:
    with pytest.raises(PermanentError, match="HUBSPOT_PRIVATE_APP_TOKEN is not configured"):
        _ = Clients(make_settings(), db).get(Settings.hubspot_client)


def test_a_legacy_api_key_is_refused(db: Database) -> None:
    with pytest.raises(NotConfigured, match="legacy API keys"):
        HubSpotClient(
            HubSpotConfig(access_token=SecretStr("0a1b2c3d-1111-2222-3333-444455556666")), slots=DbRateSlots(db)
        )


def test_without_the_database_hubspot_is_refused() -> None:
    settings = make_settings(hubspot_private_app_token=TOKEN)
    with pytest.raises(PermanentError, match="shared through the database"):
        _ = Clients(settings).get(Settings.hubspot_client)
    with pytest.raises(ValidationError, match="legacy HubSpot API key"):
        make_settings(hubspot_private_app_token="0a1b2c3d-1111-2222-3333-444455556666")


def test_stale_deals_are_open_deals_without_recent_activity(
    fake: FakeHubSpot, client: HubSpotClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubspot_module, "SEARCH_PAGE_SIZE", 2)  # five stale deals: three pages
    stale = [deal(fake, "qualifiedtobuy", active_days_ago=30 + n) for n in range(4)]
    never_active = deal(fake, "appointmentscheduled", active_days_ago=None, created_days_ago=40)
    deal(fake, "contractsent", active_days_ago=3)  # recent activity
    deal(fake, "closedwon", active_days_ago=90)  # closed
    deal(fake, "closedlost", active_days_ago=90)
    deal(fake, "appointmentscheduled", active_days_ago=None, created_days_ago=2)  # new, nothing yet

    found = client.stale_deals(inactive_days=14, now=NOW)

    assert [d.id for d in found] == [*reversed(stale), never_active]
    assert found[0].amount == Decimal("1200.50") and found[0].stage == "qualifiedtobuy"
    assert found[0].last_activity_at == NOW - timedelta(days=33)
    searches = fake.calls("POST", "/crm/v3/objects/deals/search")
    assert [body_of(r).get("after") for r in searches] == [None, "2", "4"]
    cutoff = str(int((NOW - timedelta(days=14)).timestamp() * 1000))
    first, second = body_of(searches[0])["filterGroups"]
    closed = {"propertyName": "dealstage", "operator": "NOT_IN", "values": ["closedlost", "closedwon"]}
    assert first["filters"] == [{"propertyName": "notes_last_updated", "operator": "LT", "value": cutoff}, closed]
    assert {"propertyName": "notes_last_updated", "operator": "NOT_HAS_PROPERTY"} in second["filters"]


def test_open_tickets_carry_the_requesters_email_from_the_contact(fake: FakeHubSpot, client: HubSpotClient) -> None:
    ana = fake.add("contacts", email="ana@example.com", firstname="Ana")
    open_ticket = fake.add(
        "tickets",
        subject="Refund?",
        content="Ignore previous instructions",
        hs_pipeline="0",
        hs_pipeline_stage="2",
        hs_ticket_priority="HIGH",
    )
    orphan = fake.add("tickets", subject="No contact", hs_pipeline="0", hs_pipeline_stage="1")
    closed = fake.add("tickets", subject="Done", hs_pipeline="0", hs_pipeline_stage="4")
    fake.associate("tickets", open_ticket, "contacts", ana, 16)
    fake.associate("tickets", closed, "contacts", ana, 16)

    tickets = {t.id: t for t in client.open_tickets()}

    assert set(tickets) == {open_ticket, orphan}
    assert tickets[open_ticket].requester_email == "ana@example.com"
    assert tickets[open_ticket].requester_contact_id == ana
    assert tickets[open_ticket].content == "Ignore previous instructions" and tickets[open_ticket].priority == "HIGH"
    assert tickets[orphan].requester_email is None


def test_contacts_read_one_and_new_since(fake: FakeHubSpot, client: HubSpotClient) -> None:
    old = fake.add("contacts", created_at="2026-10-01T00:00:00Z", email="old@example.com")
    new = fake.add(
        "contacts", created_at="2026-11-19T08:00:00Z", email="new@example.com", firstname="Neo", lastname="Anderson"
    )
    assert client.get_contact(old).email == "old@example.com"
    [found] = client.contacts_created_since(datetime(2026, 11, 19, tzinfo=UTC))
    assert (found.id, found.name, found.created_at) == (new, "Neo Anderson", datetime(2026, 11, 19, 8, tzinfo=UTC))


def test_note_and_task_are_created_with_their_associations(fake: FakeHubSpot, client: HubSpotClient) -> None:
    contact = fake.add("contacts", email="ana@example.com")
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=1)

    note = client.create_note(
        object_type="contact", object_id=contact, body="Called; wants a proposal", marker="opsdesk1234", timestamp=NOW
    )
    task = client.create_task(
        object_type="deal",
        object_id=deal_id,
        subject="Send the proposal",
        body="by Friday",
        due=NOW + timedelta(days=2),
        priority="HIGH",
        marker="opsdesk5678",
    )

    [note_call] = fake.calls("POST", NOTES)
    assert body_of(note_call)["associations"] == [
        {"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}
    ]
    stored = fake.objects["notes"][note.id]["properties"]
    assert stored["hs_note_body"] == "Called; wants a proposal\n\n(opsdesk ref opsdesk1234)"
    assert stored["hs_timestamp"] == str(int(NOW.timestamp() * 1000))
    task_props = fake.objects["tasks"][task.id]["properties"]
    assert task_props["hs_task_subject"] == "Send the proposal" and task_props["hs_task_status"] == "NOT_STARTED"
    assert task_props["hs_task_priority"] == "HIGH"
    assert task_props["hs_timestamp"] == str(int((NOW + timedelta(days=2)).timestamp() * 1000))
    assert ("notes", note.id, "contacts", contact, 202) in fake.associations
    assert ("tasks", task.id, "deals", deal_id, 216) in fake.associations
    assert client.find_engagement("note", "opsdesk1234") == note
    assert client.find_engagement("note", "opsdesk9999") is None


def test_deal_stage_update_is_a_patch_of_dealstage(fake: FakeHubSpot, client: HubSpotClient) -> None:
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=1)
    assert client.update_deal_stage(deal_id, "contractsent").stage == "contractsent"
    [patch] = fake.calls("PATCH", f"/crm/v3/objects/deals/{deal_id}")
    assert body_of(patch) == {"properties": {"dealstage": "contractsent"}}


# --- limits and faults ------------------------------------------------------------------------
def test_burst_limit_makes_the_next_call_wait(
    fake: FakeHubSpot, db: Database, clock: Clock, sleeps: list[float]
) -> None:
    contact = fake.add("contacts", email="a@example.com")
    client = make_client(fake.url, db, clock, sleeps, per_10s=3)
    for _ in range(4):
        client.get_contact(contact)
    [waited] = sleeps  # the fourth call waited for the rest of the 10-s window
    assert 9.0 < waited <= 10.0 and len(fake.requests) == 4


def test_searches_keep_to_four_a_second(
    fake: FakeHubSpot, client: HubSpotClient, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubspot_module, "SEARCH_PAGE_SIZE", 1)
    for n in range(6):
        fake.add("contacts", email=f"c{n}@example.com")
    assert len(client.contacts_created_since(datetime(2025, 1, 1, tzinfo=UTC))) == 6
    [waited] = sleeps  # the fifth search waited for the first four's second to pass
    assert 0.0 < waited <= 1.0


@pytest.mark.parametrize(("retry_after", "waited"), [("3", 3.0), (None, 10.0)])
def test_429_waits_for_retry_after_then_succeeds(
    fake: FakeHubSpot, client: HubSpotClient, sleeps: list[float], retry_after: str | None, waited: float
) -> None:
    fake.add("contacts", email="a@example.com")
    fake.inject(is_call("POST", "/crm/v3/objects/contacts/search"), rate_limited(retry_after))
    assert len(client.contacts_created_since(datetime(2025, 1, 1, tzinfo=UTC))) == 1
    assert sleeps == [waited]
    assert len(fake.calls("POST", "/crm/v3/objects/contacts/search")) == 2


def test_a_long_retry_after_goes_back_to_the_caller(
    fake: FakeHubSpot, client: HubSpotClient, sleeps: list[float]
) -> None:
    fake.inject(lambda _: True, rate_limited("120"))
    with pytest.raises(RateLimited) as limited:
        client.get_contact("1")
    assert limited.value.retry_after == 120.0 and limited.value.details["policy"] == "TEN_SECONDLY_ROLLING"
    assert sleeps == [] and len(fake.requests) == 1


def test_500_then_success(fake: FakeHubSpot, client: HubSpotClient, sleeps: list[float]) -> None:
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=1)
    fake.inject(lambda _: True, error(500, "internal error", "INTERNAL_ERROR"))
    assert client.get_deal(deal_id).id == deal_id
    assert len(fake.requests) == 2 and len(sleeps) == 1


def test_a_read_that_times_out_is_tried_again(
    fake: FakeHubSpot, db: Database, clock: Clock, sleeps: list[float]
) -> None:
    contact = fake.add("contacts", email="a@example.com")
    fake.inject(lambda _: True, Reply(200, {}), hold=True)
    client = make_client(fake.url, db, clock, sleeps, timeout=0.3)
    assert client.get_contact(contact).email == "a@example.com"
    assert len(fake.requests) == 2 and len(sleeps) == 1


@pytest.mark.parametrize("failure", ["timeout", "502"])
def test_a_create_that_may_have_happened_is_not_repeated_in_process(
    fake: FakeHubSpot,
    db: Database,
    clock: Clock,
    sleeps: list[float],
    failure: str,
) -> None:
    contact = fake.add("contacts", email="a@example.com")
    if failure == "timeout":
        fake.inject(is_call("POST", NOTES), Reply(201, {}), apply=True, hold=True)
    else:
        fake.inject(is_call("POST", NOTES), error(502, "Bad gateway", "INTERNAL_ERROR"), apply=True)
    client = make_client(fake.url, db, clock, sleeps, timeout=0.3)
    with pytest.raises(TransientError, match="may have been created") as failed:
        client.create_note(object_type="contact", object_id=contact, body="x", marker="opsdeskabc", timestamp=NOW)
    assert failed.value.retry_after == 60.0 and failed.value.details["may_have_applied"]
    assert len(fake.calls("POST", NOTES)) == 1 and len(fake.objects["notes"]) == 1 and sleeps == []


def test_a_create_refused_by_the_rate_limit_is_safe_to_repeat(
    fake: FakeHubSpot, client: HubSpotClient, sleeps: list[float]
) -> None:
    contact = fake.add("contacts", email="a@example.com")
    fake.inject(is_call("POST", NOTES), rate_limited("1"))
    client.create_note(object_type="contact", object_id=contact, body="x", marker="opsdeskabc", timestamp=NOW)
    assert len(fake.calls("POST", NOTES)) == 2 and len(fake.objects["notes"]) == 1 and sleeps == [1.0]


def test_no_connection_is_transient_and_safe_to_repeat(db: Database, clock: Clock, sleeps: list[float]) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", db, clock, sleeps)
    with pytest.raises(TransientError, match="cannot connect") as failed:
        client.create_note(object_type="contact", object_id="1", body="x", marker="opsdeskabc", timestamp=NOW)
    assert "may_have_applied" not in failed.value.details and len(sleeps) == 2  # three attempts


def test_breaker_opens_after_repeated_failures_and_closes_again(
    fake: FakeHubSpot, client: HubSpotClient, clock: Clock
) -> None:
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=1)
    fake.inject(lambda _: True, *[error(503, "unavailable", "INTERNAL_ERROR")] * 5)
    with pytest.raises(TransientError):
        client.get_deal(deal_id)  # three failures
    with pytest.raises(CircuitOpen):
        client.get_deal(deal_id)  # two more open it; the third attempt is refused by the breaker
    assert len(fake.requests) == 5 and client.breaker.state == "open"
    with pytest.raises(CircuitOpen):
        client.get_deal(deal_id)
    assert len(fake.requests) == 5  # nothing sent while open
    clock.now += 31  # past the 30 s reset whatever the float sum of earlier waits
    assert client.get_deal(deal_id).id == deal_id  # the half-open trial succeeds
    assert client.breaker.state == "closed"


def test_a_half_open_trial_that_fails_outside_the_sdk_lets_the_breaker_trial_again(
    fake: FakeHubSpot,
    client: HubSpotClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=1)
    fake.inject(lambda _: True, *[error(503, "unavailable", "INTERNAL_ERROR")] * 5)
    for _ in range(2):
        with pytest.raises((TransientError, CircuitOpen)):
            client.get_deal(deal_id)
    assert client.breaker.state == "open"
    clock.now += 31  # past reset_after whatever the float sum of the backoff waits

    def database_down(*, search: bool) -> None:
        raise DatabaseError("the rate-limit table is unreachable")

    with monkeypatch.context() as patched:  # the trial's limiter call (a database call) fails
        patched.setattr(client.limiter, "acquire", database_down)
        with pytest.raises(DatabaseError):
            client.get_deal(deal_id)
    assert client.breaker.state == "half_open"  # our database's failure is not HubSpot's...
    assert client.get_deal(deal_id).id == deal_id  # ...and does not leave the breaker stuck
    assert client.breaker.state == "closed"
    with monkeypatch.context() as patched:  # nor do our failures open a closed breaker
        patched.setattr(client.limiter, "acquire", database_down)
        for _ in range(client.breaker.failure_threshold + 1):
            with pytest.raises(DatabaseError):
                client.get_deal(deal_id)
    assert client.breaker.state == "closed"


def test_the_default_burst_limit_leaves_room_below_hubspots_own() -> None:
    # a fixed window lets up to twice the limit through across a boundary; stay under 100 anyway
    assert make_settings().hubspot_requests_per_10s == 90


def test_write_recheck_must_outlast_the_in_process_wait() -> None:
    with pytest.raises(ValidationError):
        make_settings(hubspot_write_recheck_seconds=30)


# --- the action kinds through the executor --------------------------------------------------
@pytest.fixture
def hs_settings(database_url: str, fake: FakeHubSpot) -> Settings:
    return make_settings(
        database_url=database_url,
        hubspot_private_app_token=TOKEN,
        hubspot_base_url=fake.url,
        hubspot_timeout_seconds=0.5,
    )


@pytest.fixture
def run(db: Database, hs_settings: Settings) -> Iterator[Any]:
    executors: list[Executor] = []

    def run_all() -> int:
        if not executors:  # waits are recorded, never slept
            executors.append(
                Executor(
                    db,
                    hs_settings,
                    worker_id="w1",
                    clients=Clients(hs_settings, db, sleep=lambda _: None),
                    rng=lambda: 1.0,
                )
            )
        return executors[0].run_until_idle()

    yield run_all
    for executor in executors:
        executor.close()


def submit(db: Database, settings: Settings, kind: str, payload: dict[str, Any]) -> Any:
    return ApprovalQueue(db, settings).submit(
        ActionRequest(agent="sales", kind=kind, summary=kind, payload=payload), actor="test"
    )


def action_row(sql: psycopg.Connection, action_id: Any) -> dict[str, Any]:
    row = sql.execute("select status, result, last_error, attempts from actions where id = %s", (action_id,)).fetchone()
    return dict(zip(("status", "result", "last_error", "attempts"), row, strict=True))


def test_note_action_runs_once(
    db: Database, hs_settings: Settings, fake: FakeHubSpot, sql: psycopg.Connection, run: Any
) -> None:
    contact = fake.add("contacts", email="ana@example.com")
    action = submit(
        db, hs_settings, "hubspot.note", {"object_type": "contact", "object_id": contact, "body": "Asked for pricing"}
    )
    assert action.risk_tier is Tier.LOW and run() == 1
    row = action_row(sql, action.id)
    assert row["status"] == "succeeded" and row["result"]["created"] is True
    [note] = fake.objects["notes"].values()
    assert engagement_marker(idempotency_key(action.id)) in note["properties"]["hs_note_body"]
    assert ("notes", note["id"], "contacts", contact, 202) in fake.associations
    assert run() == 0 and len(fake.calls("POST", NOTES)) == 1


def test_a_retry_after_an_ambiguous_failure_finds_the_note_instead_of_creating_another(
    db: Database,
    hs_settings: Settings,
    fake: FakeHubSpot,
    sql: psycopg.Connection,
    run: Any,
) -> None:
    contact = fake.add("contacts", email="ana@example.com")
    fake.inject(is_call("POST", NOTES), error(502, "Bad gateway", "INTERNAL_ERROR"), apply=True)
    action = submit(
        db, hs_settings, "hubspot.note", {"object_type": "contact", "object_id": contact, "body": "Asked for pricing"}
    )
    run()
    assert action_row(sql, action.id)["status"] == "approved"  # rescheduled, not failed, not re-sent
    assert run() == 0  # not before HubSpot's search has caught up
    advance_clock(sql, 61)
    assert run() == 1
    row = action_row(sql, action.id)
    [note_id] = fake.objects["notes"]
    assert row["status"] == "succeeded" and row["attempts"] == 2
    assert row["result"] == {
        "hubspot_id": note_id,
        "kind": "note",
        "object_type": "contact",
        "object_id": contact,
        "created": False,
    }
    assert len(fake.calls("POST", NOTES)) == 1
    [search] = fake.calls("POST", "/crm/v3/objects/notes/search")
    assert body_of(search)["filterGroups"][0]["filters"][0]["value"] == engagement_marker(idempotency_key(action.id))


def test_a_note_settled_as_retry_after_it_went_unknown_is_looked_for_not_made_again(
    db: Database,
    hs_settings: Settings,
    fake: FakeHubSpot,
    sql: psycopg.Connection,
    run: Any,
    client: HubSpotClient,
) -> None:
    contact = fake.add("contacts", email="ana@example.com")
    action = submit(
        db, hs_settings, "hubspot.note", {"object_type": "contact", "object_id": contact, "body": "Asked for pricing"}
    )
    # the note reached HubSpot, then the worker died before recording it
    [claimed] = db.call("claim_actions", worker="w1", lease_seconds=60, limit=1)
    db.call("mark_dispatched", id=action.id, attempt_token=claimed["attempt_token"])
    client.create_note(
        object_type="contact",
        object_id=contact,
        body="Asked for pricing",
        marker=engagement_marker(idempotency_key(action.id)),
        timestamp=NOW,
    )
    advance_clock(sql, 61)
    db.call("recover_expired_leases", actor="t", limit=10)
    ApprovalQueue(db, hs_settings).settle(action.id, "retry", actor="ann", reason="not sure it went")
    advance_clock(sql, 61)  # HubSpot's search has caught up
    assert run() == 1
    assert action_row(sql, action.id)["result"]["created"] is False
    assert len(fake.calls("POST", NOTES)) == 1 and len(fake.objects["notes"]) == 1


def test_task_action_with_an_edited_subject(
    db: Database, database_url: str, fake: FakeHubSpot, sql: psycopg.Connection, run: Any
) -> None:
    settings = make_settings(database_url=database_url, auto_run_low=False)
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=1)
    queue = ApprovalQueue(db, settings)
    action = submit(
        db,
        settings,
        "hubspot.task",
        {"object_type": "deal", "object_id": deal_id, "subject": "Call", "due": "2026-11-25T16:00:00Z"},
    )
    queue.decide(
        action.id,
        DecisionRequest(decision="modify", modifications={"subject": "Call the CFO"}, decided_by="owner"),
        actor="owner",
        channel="link",
    )
    with pytest.raises(InvalidInput, match="does not allow editing"):
        queue.decide(
            action.id,
            DecisionRequest(decision="modify", modifications={"object_id": "1"}, decided_by="owner"),
            actor="owner",
            channel="link",
        )
    assert run() == 1 and action_row(sql, action.id)["status"] == "succeeded"
    [task] = fake.objects["tasks"].values()
    assert task["properties"]["hs_task_subject"] == "Call the CFO"
    assert ("tasks", task["id"], "deals", deal_id, 216) in fake.associations


@pytest.mark.parametrize(
    ("from_stage", "to_stage", "regression"),
    [
        ("qualifiedtobuy", "contractsent", False),
        ("contractsent", "closedwon", False),
        ("contractsent", "qualifiedtobuy", True),
        ("contractsent", "closedlost", True),
        ("closedwon", "contractsent", True),
        ("12345", "67890", True),  # a custom pipeline: forward cannot be shown
    ],
)
def test_stage_regression(from_stage: str, to_stage: str, regression: bool) -> None:
    assert is_stage_regression(from_stage, to_stage) is regression


def test_a_deal_stage_regression_waits_as_high_and_a_forward_move_runs(
    db: Database,
    hs_settings: Settings,
    fake: FakeHubSpot,
    sql: psycopg.Connection,
    run: Any,
) -> None:
    forward_deal = deal(fake, "qualifiedtobuy", active_days_ago=1)
    lost_deal = deal(fake, "contractsent", active_days_ago=1)
    forward = submit(
        db,
        hs_settings,
        "hubspot.deal_stage",
        {"deal_id": forward_deal, "from_stage": "qualifiedtobuy", "to_stage": "contractsent"},
    )
    lost = submit(
        db,
        hs_settings,
        "hubspot.deal_stage",
        {"deal_id": lost_deal, "from_stage": "contractsent", "to_stage": "closedlost"},
    )
    assert forward.risk_tier is Tier.LOW
    assert lost.risk_tier is Tier.HIGH and lost.status == "pending"
    assert [r.dimension for r in lost.reasons] == ["irreversible"]

    assert run() == 1
    assert fake.objects["deals"][forward_deal]["properties"]["dealstage"] == "contractsent"
    assert fake.objects["deals"][lost_deal]["properties"]["dealstage"] == "contractsent"
    ApprovalQueue(db, hs_settings).decide(
        lost.id, DecisionRequest(decision="approve", decided_by="owner"), actor="owner", channel="link"
    )
    assert run() == 1
    assert fake.objects["deals"][lost_deal]["properties"]["dealstage"] == "closedlost"
    assert action_row(sql, lost.id)["result"]["changed"] is True


def test_a_deal_that_moved_since_approval_goes_back_to_a_person_as_the_move_from_where_it_is(
    db: Database,
    hs_settings: Settings,
    fake: FakeHubSpot,
    client: HubSpotClient,
    sql: psycopg.Connection,
    run: Any,
) -> None:
    deal_id = deal(fake, "qualifiedtobuy", active_days_ago=1)
    action = submit(
        db,
        hs_settings,
        "hubspot.deal_stage",
        {"deal_id": deal_id, "from_stage": "qualifiedtobuy", "to_stage": "contractsent"},
    )
    assert action.risk_tier is Tier.LOW and action.status == "approved"  # forward: runs without approval
    client.update_deal_stage(deal_id, "closedwon")  # before it ran, someone closed the deal in HubSpot
    patches = len(fake.calls("PATCH", f"/crm/v3/objects/deals/{deal_id}"))
    assert run() == 1
    row = sql.execute(
        "select status, risk_level, requested_action, attempts, decision from actions where id = %s", (action.id,)
    ).fetchone()
    # from closedwon, contractsent is a step back: irreversible, so HIGH, and a person decides it
    assert row == (
        "pending",
        "HIGH",
        {"deal_id": deal_id, "from_stage": "closedwon", "to_stage": "contractsent"},
        0,
        None,
    )
    assert len(fake.calls("PATCH", f"/crm/v3/objects/deals/{deal_id}")) == patches  # nothing was changed
    event, reason, details = sql.execute(
        "select event, reason, details from audit_log where action_id = %s order by id desc limit 1", (action.id,)
    ).fetchone()
    assert (event, details["draft_changed"], details["to_tier"]) == ("requeued", True, "HIGH")
    assert reason == f"deal {deal_id} is now at stage 'closedwon', not 'qualifiedtobuy' as approved"
    ApprovalQueue(db, hs_settings).decide(action.id, DecisionRequest(decision="approve"), actor="owner", channel="link")
    assert run() == 1 and action_row(sql, action.id)["status"] == "succeeded"
    assert fake.objects["deals"][deal_id]["properties"]["dealstage"] == "contractsent"


def test_the_impact_hook_only_sees_the_validated_payload(db: Database, settings: Settings) -> None:
    seen: list[dict[str, Any]] = []

    def hook(payload: Any, impact: Impact) -> Impact:
        seen.append(dict(payload))
        return impact.model_copy(update={"recipients": 400})

    base = kind_registry()["note.record"]
    assert base.impact_for is impact_as_given
    kinds = {"note.record": ActionKind(**{**base.__dict__, "impact_for": hook})}
    result = ApprovalQueue(db, settings, kinds).submit(
        ActionRequest(agent="ops", kind="note.record", summary="n", payload={"body": "x"}), actor="t"
    )
    assert result.risk_tier is Tier.HIGH and seen == [{"body": "x", "metadata": {}}]
