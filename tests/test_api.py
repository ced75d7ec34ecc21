"""The HTTP API over real HTTP (uvicorn on 127.0.0.1): the contract and every kind of bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.core.database import SCHEMA_VERSION, Database
from app.core.settings import Settings
from app.web import create_app
from tests.conftest import API_TOKEN, advance_clock, make_settings
from tests.live_server import serve

ACTION: dict[str, Any] = {
    "agent": "sales",
    "kind": "note.record",
    "summary": "Log the follow-up",
    "reasoning": "the deal went quiet",
    "payload": {"body": "Followed up with ACME"},
    "impact": {"recipients": 120, "cost_usd": 0, "public": False, "reversible": True},
}


@pytest.fixture
def api(settings: Settings, db: Database) -> Iterator[httpx.Client]:
    with (
        serve(create_app(settings, db)) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client,
    ):
        yield client


def counts(sql: psycopg.Connection) -> tuple[int, int]:
    return (
        sql.execute("select count(*) from actions").fetchone()[0],
        sql.execute("select count(*) from audit_log").fetchone()[0],
    )


def test_healthz_is_ok_without_a_token_and_shows_counts_only_with_it(api: httpx.Client) -> None:
    response = httpx.get(f"{api.base_url}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == {"ok": True, "mode": "postgres"}
    assert body["integrations"]["discord"] == "not_configured"
    detailed = api.get("/healthz").json()  # the client sends the API token
    assert detailed["database"]["schema_version"] == SCHEMA_VERSION and detailed["database"]["pending"] == 0
    assert "unknown" in detailed["database"]
    wrong = httpx.get(f"{api.base_url}/healthz", headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 401 and "pending" not in wrong.text


def test_submit_list_and_decide(api: httpx.Client, sql: psycopg.Connection) -> None:
    created = api.post("/actions", json=ACTION)
    assert created.status_code == 201
    body = created.json()
    assert set(body) >= {"id", "status", "risk_tier", "reasons"}
    assert body["status"] == "pending" and body["risk_tier"] == "MEDIUM"
    assert body["reasons"][0]["dimension"] == "recipients"

    listed = api.get("/approvals", params={"status": "pending", "tier": "MEDIUM", "agent": "sales"}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == body["id"]

    decided = api.post(
        f"/approvals/{body['id']}/decision",
        json={"decision": "modify", "modifications": {"body": "Called ACME"}, "decided_by": "ann"},
        headers={"X-Request-ID": "req-42"},
    )
    assert decided.status_code == 200 and decided.json()["decision"] == "modified"
    assert decided.headers["x-request-id"] == "req-42"
    assert sql.execute("select request_id from audit_log where event = 'decided'").fetchone() == ("req-42",)

    again = api.post(f"/approvals/{body['id']}/decision", json={"decision": "approve", "decided_by": "bob"})
    assert again.status_code == 409
    error = again.json()["error"]
    # the name is the caller's word: the record says it came with the API token
    assert error["code"] == "conflict" and "decided by api:ann" in error["message"] and error["request_id"]
    assert error["details"]["decided_by"] == "api:ann"


def test_unknown_action_is_404_and_bad_uuid_is_422(api: httpx.Client) -> None:
    missing = api.post(
        "/approvals/00000000-0000-0000-0000-000000000000/decision", json={"decision": "approve", "decided_by": "ann"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert api.get("/approvals/not-a-uuid").status_code == 422


def test_decision_needs_a_name(api: httpx.Client) -> None:
    created = api.post("/actions", json=ACTION).json()
    response = api.post(f"/approvals/{created['id']}/decision", json={"decision": "approve"})
    assert response.status_code == 422 and "decided_by" in response.json()["error"]["message"]


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "malformed JSON",
        {"content": b'{"agent": "sales", ', "headers": {"Content-Type": "application/json"}},
        400,
        "malformed_json",
    ),
    ("unknown kind", {"json": {**ACTION, "kind": "email.blast_everyone"}}, 422, "invalid_input"),
    (
        "negative recipients",
        {"json": {**ACTION, "impact": {**ACTION["impact"], "recipients": -5}}},
        422,
        "invalid_input",
    ),
    ("extra field", {"json": {**ACTION, "risk_tier": "LOW"}}, 422, "invalid_input"),
    ("missing payload", {"json": {k: v for k, v in ACTION.items() if k != "payload"}}, 422, "invalid_input"),
    ("payload of the wrong shape", {"json": {**ACTION, "payload": {"text": 1}}}, 422, "invalid_input"),
    (
        "10 MB body",
        {"content": b'{"pad": "' + b"a" * 10_000_000 + b'"}', "headers": {"Content-Type": "application/json"}},
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(("case", "request_kwargs", "status", "code"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    api: httpx.Client, sql: psycopg.Connection, case: str, request_kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = api.post("/actions", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["request_id"]
    assert counts(sql) == (0, 0)


def test_a_chunked_10_mb_body_is_refused_too(api: httpx.Client, sql: psycopg.Connection) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(100):
            yield b"a" * 100_000
        yield b'"}'

    response = api.post("/actions", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert counts(sql) == (0, 0)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-wrong-token", "Basic abc", "Bearer"])
def test_missing_or_wrong_token_is_401_and_writes_nothing(
    api: httpx.Client, sql: psycopg.Connection, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=api.base_url, headers=headers) as anonymous:
        for method, path in (
            ("POST", "/actions"),
            ("GET", "/approvals"),
            ("POST", "/approvals/00000000-0000-0000-0000-000000000000/decision"),
        ):
            response = anonymous.request(method, path, json=ACTION)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    assert counts(sql) == (0, 0)


def test_database_outage_degrades_healthz_and_its_error_text_needs_the_token(settings: Settings, db: Database) -> None:
    with serve(create_app(settings, db)) as url:
        db.close()
        response = httpx.get(f"{url}/healthz", timeout=30)
        detailed = httpx.get(f"{url}/healthz", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30)
    assert response.status_code == 503
    assert response.json()["status"] == "degraded" and response.json()["database"] == {"ok": False, "mode": "postgres"}
    assert detailed.status_code == 503 and detailed.json()["database"]["error"]


def test_an_expired_action_is_410_before_and_after_the_sweep(
    api: httpx.Client, db: Database, sql: psycopg.Connection
) -> None:
    created = api.post("/actions", json=ACTION).json()
    advance_clock(sql, 73 * 3600)
    decision = {"decision": "approve", "decided_by": "ann"}
    before = api.post(f"/approvals/{created['id']}/decision", json=decision)
    assert before.status_code == 410 and before.json()["error"]["code"] == "expired"
    db.call("expire_pending", actor="expiry", limit=10)
    after = api.post(f"/approvals/{created['id']}/decision", json=decision)
    assert after.status_code == 410 and after.json()["error"]["code"] == "expired"
    assert after.json()["error"]["details"]["status"] == "expired"


CRITICAL = {**ACTION, "impact": {**ACTION["impact"], "cost_usd": 500}}


@pytest.fixture
def pin_api(database_url: str, db: Database, tmp_path: Path) -> Iterator[httpx.Client]:
    settings = make_settings(
        database_url=database_url, opsdesk_data_dir=tmp_path, approval_pin="4321", approval_pin_max_tries=3
    )
    with (
        serve(create_app(settings, db)) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client,
    ):
        yield client


def audit(sql: psycopg.Connection, action_id: str) -> list[tuple[str, str]]:
    return sql.execute("select event, actor from audit_log where action_id = %s order by id", (action_id,)).fetchall()


def test_the_api_token_approves_critical_only_with_the_pin(pin_api: httpx.Client, sql: psycopg.Connection) -> None:
    critical = pin_api.post("/actions", json=CRITICAL).json()
    assert critical["risk_tier"] == "CRITICAL"
    url = f"/approvals/{critical['id']}/decision"
    missing = pin_api.post(url, json={"decision": "approve", "decided_by": "ann"})
    assert missing.status_code == 403 and missing.json()["error"]["details"] == {"locked": False, "remaining": 2}
    wrong = pin_api.post(
        url, json={"decision": "modify", "modifications": {"body": "x"}, "decided_by": "ann", "pin": "0000"}
    )
    assert wrong.status_code == 403 and "1 tries left" in wrong.json()["error"]["message"]
    assert sql.execute("select status from actions where id = %s", (critical["id"],)).fetchone() == ("pending",)
    right = pin_api.post(url, json={"decision": "approve", "decided_by": "ann", "pin": "4321"})
    assert right.status_code == 200 and right.json()["decided_by"] == "api:ann"
    assert audit(sql, critical["id"]) == [
        ("submitted", "api"),
        ("pin_failed", "api:ann"),
        ("pin_failed", "api:ann"),
        ("decided", "api:ann"),
    ]
    assert "4321" not in json.dumps(sql.execute("select jsonb_agg(a) from audit_log a").fetchone()[0])
    medium = pin_api.post("/actions", json=ACTION).json()  # below CRITICAL the token is enough
    assert (
        pin_api.post(
            f"/approvals/{medium['id']}/decision", json={"decision": "approve", "decided_by": "bob"}
        ).status_code
        == 200
    )


def test_wrong_pins_over_the_api_lock_approval_but_not_rejection(
    pin_api: httpx.Client, sql: psycopg.Connection
) -> None:
    critical = pin_api.post("/actions", json=CRITICAL).json()
    url = f"/approvals/{critical['id']}/decision"
    for guess in ("0000", "1111", "2222"):
        assert pin_api.post(url, json={"decision": "approve", "decided_by": "eve", "pin": guess}).status_code == 403
    locked = pin_api.post(url, json={"decision": "approve", "decided_by": "eve", "pin": "4321"})
    assert locked.status_code == 403 and locked.json()["error"]["details"]["locked"] is True
    assert sql.execute("select failures from approval_pin_failures").fetchone() == (3,)  # the page's own count
    rejected = pin_api.post(url, json={"decision": "reject", "reason": "not now", "decided_by": "ann"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"


def test_openapi_is_served(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    assert {"/healthz", "/approvals", "/actions", "/approvals/{action_id}/decision"} <= set(schema["paths"])
