"""Issue 12, finding 6: a client's mistake is a clear 4xx naming the field, never a 5xx, and
nothing is written. Over real HTTP (uvicorn on 127.0.0.1) with raw bodies, as an attacker sends
them: NUL and half surrogate pairs in every kind of input (JSON value and key, query, form field
and name, path), NaN and Infinity anywhere in JSON (refused, never stored as null), nesting no
parser survives, and a validation error whose input cannot be serialised."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from app.core.database import Database
from tests.conftest import API_TOKEN
from tests.link_support import Site, running_site, token_of
from tests.test_api import ACTION, counts


@pytest.fixture
def site(db: Database, database_url: str) -> Iterator[Site]:
    with running_site(db, database_url) as running:
        running.http.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield running


def raw(**changes: Any) -> dict[str, Any]:
    return {**ACTION, **changes}


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# each: (what, raw JSON body for POST /actions, the field the answer must name)
JSON_BODIES: list[tuple[str, str, str]] = [
    ("NUL in a text field", json.dumps(raw(summary="Log\x00 it")), "summary"),
    ("NUL in a payload value", json.dumps(raw(payload={"body": "Followed up\x00"})), "payload.body"),
    ("NUL in a payload key", json.dumps(raw(payload={"body": "x", "metadata": {"k\x00ey": 1}})), "payload.metadata"),
    ("half a surrogate pair", json.dumps(raw(summary="Log \ud800 it")), "summary"),
    ("a surrogate in a key", json.dumps(raw(payload={"body": "x", "metadata": {"\udfff": 1}})), "payload.metadata"),
    ("NaN money", json.dumps(raw(impact={**ACTION["impact"], "cost_usd": float("nan")})), "impact.cost_usd"),
    (
        "Infinity in the payload",
        json.dumps(raw(payload={"body": "x", "metadata": {"n": float("inf")}})),
        "payload.metadata.n",
    ),
    (
        "-Infinity in the payload",
        json.dumps(raw(payload={"body": "x", "metadata": {"n": float("-inf")}})),
        "payload.metadata.n",
    ),
    (
        "a number too big for a float",
        json.dumps(raw(payload={"body": "x", "metadata": {"n": 1}})).replace('"n": 1', '"n": 1e999'),
        "payload.metadata.n",
    ),
    (
        "NaN where the validation error echoes the input",
        json.dumps(raw(payload={"body": float("nan")})),
        "payload.body",
    ),
    (
        "nesting no parser survives",
        json.dumps(raw(payload={"body": "x"})).replace('"payload"', f'"deep": {deep(50_000)}, "payload"'),
        "nests",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), JSON_BODIES, ids=[case[0] for case in JSON_BODIES])
def test_json_a_database_cannot_keep_is_a_4xx_naming_the_field(
    site: Site, sql: psycopg.Connection, case: str, body: str, field: str
) -> None:
    response = site.http.post("/actions", content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and field in error["message"], error
    assert counts(sql) == (0, 0)


def test_json_decisions_are_checked_the_same_way(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    before = counts(sql)
    for body in (
        '{"decision": "approve", "decided_by": "ann\\u0000"}',
        '{"decision": "reject", "reason": "no\\ud800", "decided_by": "ann"}',
        '{"decision": "modify", "modifications": {"body": NaN}, "decided_by": "ann"}',
    ):
        response = site.http.post(
            f"/approvals/{action.id}/decision", content=body.encode(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
    assert counts(sql) == before and site.action(action.id).status.value == "pending"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/approvals?agent=sa%00les", "agent"),
        ("/approvals?agent=%ED%A0%80", None),  # not UTF-8: read as U+FFFD, a name no action has
        ("/approvals?status=pend%00ing", "status"),
        ("/approvals?x%00y=1", "x"),
        ("/memory/search?q=ref%00und", "q"),
        ("/reports/daily?date=2026-01-0%00", "date"),
        ("/approvals/%00", "action_id"),
    ],
)
def test_queries_and_paths_with_a_nul_are_a_4xx(site: Site, path: str, field: str | None) -> None:
    response = site.http.get(path)
    if field is None:
        assert response.status_code == 200 and response.json()["items"] == []
        return
    assert 400 <= response.status_code < 500, response.text
    assert field in response.json()["error"]["message"] + json.dumps(response.json()["error"].get("details"))


def test_the_review_form_with_a_nul_is_a_4xx_page_and_decides_nothing(site: Site, sql: psycopg.Connection) -> None:
    action = site.submit()
    token = token_of(site.link(action))
    before = counts(sql)
    # (a form cannot carry half a surrogate pair: its bytes are not UTF-8, and are read as U+FFFD)
    for form, field in (
        ({"t": token, "decision": "reject", "reviewer": "ann", "reason": "wrong\x00"}, "reason"),
        ({"t": token, "decision": "approve", "reviewer": "an\x00n"}, "reviewer"),
        ({"t": token, "decision": "modify", "reviewer": "ann", "edit.bo\x00dy": "x"}, "edit.bo"),
    ):
        response = httpx.post(f"{site.url}/approvals/{action.id}/decision", data=form, timeout=30)
        assert response.status_code == 422, response.text
        assert "text/html" in response.headers["content-type"] and field in response.text and "NUL" in response.text
    inbox = token_of(site.inbox_link())
    response = httpx.post(
        f"{site.url}/approvals/inbox",
        data={"t": inbox, "decision": "reject", "reviewer": "ann", "reason": "no\x00", "items": ["x"]},
        timeout=30,
    )
    assert response.status_code == 422 and "reason" in response.text
    assert counts(sql) == before and site.action(action.id).status.value == "pending"
