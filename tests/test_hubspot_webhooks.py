"""`POST /webhooks/hubspot` over real HTTP (uvicorn on 127.0.0.1) on PostgreSQL: HubSpot's v3
signature, the 5-minute window on the database clock, replays, malformed bodies; every refusal
records nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from hubspot.utils.signature import Signature

from app.core.database import Database
from app.core.settings import Settings
from app.web import create_app
from app.web.routes.webhooks import MAX_BODY_BYTES
from integrations.hubspot_webhooks import delivery_hash, v3_signature
from tests.conftest import advance_clock, make_settings
from tests.live_server import serve

SECRET = "test-hubspot-client-secret-0123"
PUBLIC = "https://opsdesk.example.com"
URI = f"{PUBLIC}/webhooks/hubspot"


def event(event_id: int, kind: str = "contact.creation", object_id: int = 501) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 99,
        "occurredAt": 1763650000000,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeFlag": "NEW",
        "changeSource": "CRM",
    }


def test_signature_matches_hubspots_test_vector() -> None:
    args = (
        "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
        "POST",
        "https://www.example.com/webhook_uri",
        b"{'example_field':'example_value'}",
        "1693657560000",
    )
    assert v3_signature(*args) == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    assert v3_signature(*args) == Signature.get_signature(
        args[0], args[3].decode(), "v3", http_uri=args[2], http_method="POST", timestamp=args[4]
    )
    assert delivery_hash("sig", "1") != delivery_hash("sig", "2")


@pytest.fixture
def hook_settings(database_url: str) -> Settings:
    return make_settings(database_url=database_url, hubspot_client_secret=SECRET, public_base_url=PUBLIC)


@pytest.fixture
def base_url(hook_settings: Settings, db: Database) -> Iterator[str]:
    with serve(create_app(hook_settings, db)) as url:
        yield url


def db_now_ms(db: Database) -> int:
    return int(datetime.fromisoformat(db.call("health")["now"]).timestamp() * 1000)


def signed(body: bytes, timestamp: int, *, uri: str = URI, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-HubSpot-Signature-v3": v3_signature(secret, "POST", uri, body, str(timestamp)),
        "X-HubSpot-Request-Timestamp": str(timestamp),
        "Content-Type": "application/json",
        "X-Request-ID": "hook-test-1",
    }


def post(base_url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base_url}/webhooks/hubspot", content=body, headers=headers, timeout=30)


def recorded(sql: psycopg.Connection) -> tuple[int, int]:
    return (
        sql.execute("select count(*) from hubspot_events").fetchone()[0],
        sql.execute("select count(*) from hubspot_webhook_deliveries").fetchone()[0],
    )


def test_a_signed_delivery_is_recorded_once_per_event(base_url: str, db: Database, sql: psycopg.Connection) -> None:
    body = json.dumps([event(1), event(2, "deal.propertyChange", 900)]).encode()
    answer = post(base_url, body, signed(body, db_now_ms(db)))
    assert answer.status_code == 200 and answer.json() == {"received": 2, "recorded": 2}
    rows = sql.execute(
        "select event_id, subscription_type, object_id, portal_id, payload->>'changeSource' "
        "from hubspot_events order by event_id"
    ).fetchall()
    assert rows == [(1, "contact.creation", 501, 62515, "CRM"), (2, "deal.propertyChange", 900, 62515, "CRM")]

    # HubSpot redelivers with a fresh timestamp and signature: accepted, nothing recorded twice
    again = json.dumps([event(2, "deal.propertyChange", 900), event(3)]).encode()
    answer = post(base_url, again, signed(again, db_now_ms(db) + 1))
    assert answer.status_code == 200 and answer.json() == {"received": 2, "recorded": 1}
    assert recorded(sql) == (3, 2)


def test_the_signed_uri_includes_the_query_string(base_url: str, db: Database, sql: psycopg.Connection) -> None:
    body = json.dumps([event(1)]).encode()
    headers = signed(body, db_now_ms(db), uri=f"{URI}?portal=62515")
    answer = httpx.post(f"{base_url}/webhooks/hubspot?portal=62515", content=body, headers=headers, timeout=30)
    assert answer.status_code == 200 and recorded(sql) == (1, 1)


def refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json() == {
        "error": {"code": code, "message": answer.json()["error"]["message"], "request_id": "hook-test-1"}
    }


def test_a_bad_signature_is_refused_and_records_nothing(base_url: str, db: Database, sql: psycopg.Connection) -> None:
    body = json.dumps([event(1)]).encode()
    now = db_now_ms(db)
    tampered = json.dumps([event(1, object_id=666)]).encode()
    refused(post(base_url, tampered, signed(body, now)), 401, "bad_signature")
    refused(post(base_url, body, signed(body, now, secret="another-secret-0123456")), 401, "bad_signature")
    refused(
        post(base_url, body, {**signed(body, now), "X-HubSpot-Request-Timestamp": str(now + 1)}), 401, "bad_signature"
    )
    # signed for the address the request reached (the Host header), not the public one
    refused(post(base_url, body, signed(body, now, uri=f"{base_url}/webhooks/hubspot")), 401, "bad_signature")
    refused(
        post(base_url, body, {"Content-Type": "application/json", "X-Request-ID": "hook-test-1"}), 401, "bad_signature"
    )
    assert recorded(sql) == (0, 0)


def test_an_old_timestamp_is_refused_and_records_nothing(base_url: str, db: Database, sql: psycopg.Connection) -> None:
    body = json.dumps([event(1)]).encode()
    refused(post(base_url, body, signed(body, db_now_ms(db) - 301_000)), 401, "stale_timestamp")
    fresh = signed(body, db_now_ms(db))
    advance_clock(sql, 301)  # the same request arriving more than five minutes late
    refused(post(base_url, body, fresh), 401, "stale_timestamp")
    assert recorded(sql) == (0, 0)


def test_a_replayed_delivery_is_refused_the_second_time(base_url: str, db: Database, sql: psycopg.Connection) -> None:
    body = json.dumps([event(1)]).encode()
    headers = signed(body, db_now_ms(db))
    assert post(base_url, body, headers).status_code == 200
    refused(post(base_url, body, headers), 409, "replayed")
    assert recorded(sql) == (1, 1)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"eventId": 1}',
        b"[]",
        json.dumps([{"subscriptionType": "contact.creation"}]).encode(),
        json.dumps([{**event(1), "eventId": "1"}]).encode(),
        json.dumps([{**event(1), "occurredAt": 1.5}]).encode(),
    ],
)
def test_a_malformed_body_is_refused_and_records_nothing(
    base_url: str, db: Database, sql: psycopg.Connection, body: bytes
) -> None:
    refused(post(base_url, body, signed(body, db_now_ms(db))), 400, "malformed_body")
    assert recorded(sql) == (0, 0)


def test_without_a_client_secret_webhooks_are_off(settings: Settings, db: Database, sql: psycopg.Connection) -> None:
    body = json.dumps([event(1)]).encode()
    with serve(create_app(settings, db)) as url:
        refused(post(url, body, signed(body, db_now_ms(db))), 503, "not_configured")
    assert recorded(sql) == (0, 0)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_webhook_cap_is_refused_before_it_is_read(
    base_url: str, db: Database, sql: psycopg.Connection, chunked: bool
) -> None:
    body = json.dumps([event(n) for n in range(3000)]).encode()  # signed, but no HubSpot delivery is this big
    assert MAX_BODY_BYTES < len(body) < make_settings().max_request_bytes  # under the API-wide limit
    headers = signed(body, db_now_ms(db))
    content: bytes | Iterator[bytes] = body
    if chunked:  # no Content-Length: the cap holds while the body streams in
        content = iter([body[start : start + 65_536] for start in range(0, len(body), 65_536)])
    answer = httpx.post(f"{base_url}/webhooks/hubspot", content=content, headers=headers, timeout=30)
    refused(answer, 413, "payload_too_large")
    assert recorded(sql) == (0, 0)


# --- issue 12: hostile events in a signed delivery ----------------------------------------------
def set_aside_rows(sql: psycopg.Connection) -> list[tuple[int, str]]:
    return sql.execute("select position, reason from hubspot_events_set_aside order by position").fetchall()


def test_a_hostile_event_is_set_aside_and_the_rest_of_the_batch_recorded(
    base_url: str, db: Database, sql: psycopg.Connection
) -> None:
    """A NUL is cleaned and the event kept; NaN, Infinity and 50,000-deep nesting set that one event
    aside (kept, with the reason); the delivery answers 200, so HubSpot does not retry the batch."""
    nested = "[" * 50_000 + "]" * 50_000
    body = (
        "["
        + ", ".join(
            [
                json.dumps({**event(1), "propertyValue": "Ann\u0000 Lee \ud800", "prop\u0000erty": "x"}),
                json.dumps({**event(2), "propertyValue": float("nan")}),
                json.dumps(event(3)).replace('"changeFlag"', f'"deep": {nested}, "changeFlag"'),
                json.dumps({**event(4), "objectId": float("inf")}),
                json.dumps(event(5)),
            ]
        )
        + "]"
    ).encode()
    answer = post(base_url, body, signed(body, db_now_ms(db)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["received"] == 5 and answer.json()["recorded"] == 2
    assert [aside["index"] for aside in answer.json()["set_aside"]] == [1, 2, 3]
    kept = sql.execute(
        "select event_id, payload->>'propertyValue', payload ? 'property' from hubspot_events order by event_id"
    ).fetchall()
    assert kept == [(1, "Ann Lee \ufffd", True), (5, None, False)]
    reasons = dict(set_aside_rows(sql))
    assert "NaN" in reasons[1] and "16 deep" in reasons[2] and "inf" in reasons[3]
    assert recorded(sql) == (2, 1) and len(set_aside_rows(sql)) == 3


def test_a_delivery_with_no_usable_event_is_a_400_hubspot_does_not_retry(
    base_url: str, db: Database, sql: psycopg.Connection
) -> None:
    body = ("[" + json.dumps({**event(2), "propertyValue": float("nan")}) + "]").encode()
    refused(post(base_url, body, signed(body, db_now_ms(db))), 400, "malformed_body")
    deep = ("[" + "[" * 50_000 + "]" * 50_000 + "]").encode()
    refused(post(base_url, deep, signed(deep, db_now_ms(db))), 400, "malformed_body")
    assert recorded(sql) == (0, 0) and set_aside_rows(sql) == []
