"""Reaching Supabase, each failure told apart, with its own message and exit code: a refused key
(which key is expected), an unreachable or wrong URL, the schema missing, the schema too old.

Against a fake answering as Supabase does (tests/test_supabase_transport.py's FakePostgrest: the
gateway's refusal `{"message": "Invalid API key", ...}`, PostgREST's PGRST301 and PGRST202), and
against the REST stand-in on a Supabase-shaped database, where the anon key really reaches
PostgreSQL as `anon` and is refused with 42501."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.database import SCHEMA_VERSION, Database, SupabaseTransport
from app.core.errors import DatabaseAuthRefused, DatabaseUnreachable, SchemaMissing, SchemaOutdated
from tests.cli_support import clean_env, run
from tests.conftest import API_TOKEN, make_settings
from tests.postgrest_on_supabase import ANON_KEY, INVALID_KEY, SERVICE_KEY, PostgrestOnSupabase
from tests.supabase_shape import BASE, SupabaseShape
from tests.test_supabase_transport import KEY, FakePostgrest, closed_port

EXPECTED = "must be the project's secret key (sb_secret_…) or its legacy service_role key"


def jwt(role: str) -> str:
    """A legacy Supabase key's shape: header.payload.signature, the payload naming the role."""

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'iss': 'supabase', 'role': role})}.c2lnbmF0dXJl"


@pytest.fixture
def fake() -> Iterator[FakePostgrest]:
    server = FakePostgrest()
    yield server
    server.close()


def check(url: str, key: str = KEY) -> None:
    database = Database(SupabaseTransport(url, key, timeout=5))
    try:
        database.check_schema()
    finally:
        database.close()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, INVALID_KEY),  # the gateway: a key it does not know
        (401, {"code": "PGRST301", "details": None, "hint": None, "message": "Expected 3 parts in JWT; got 1"}),
        (401, b""),  # an empty body, as a new secret key refused by the Data API was seen to answer
        (403, {"message": "Forbidden use of secret API key in browser"}),
    ],
    ids=["gateway", "jwt", "empty", "forbidden"],
)
def test_a_refused_key_says_which_key_is_expected(fake: FakePostgrest, status: int, body: object) -> None:
    fake.answer(status, body)
    with pytest.raises(DatabaseAuthRefused, match=re.escape(EXPECTED)) as caught:
        check(fake.url)
    assert f"HTTP {status}" in caught.value.message and KEY not in caught.value.message


def test_the_anon_key_reaches_the_database_as_anon_and_is_refused(supabase: SupabaseShape, supabase_db: str) -> None:
    standin = PostgrestOnSupabase(supabase.authenticator_uri(supabase_db))
    try:
        with pytest.raises(DatabaseAuthRefused, match=re.escape(EXPECTED)) as caught:
            check(standin.url, ANON_KEY)
        assert "permission denied for function schema_version" in caught.value.message
        check(standin.url, SERVICE_KEY)  # the service role's key: the schema is there and current
    finally:
        standin.close()


def test_an_unreachable_or_wrong_url_is_named(fake: FakePostgrest) -> None:
    with pytest.raises(DatabaseUnreachable, match="unreachable at SUPABASE_URL"):
        check(f"http://127.0.0.1:{closed_port()}")
    fake.answer(404, b"<html>Not Found</html>", "text/html")  # a web site, not a project's API
    with pytest.raises(DatabaseUnreachable, match=r"HTTP 404.*https://<project-ref>\.supabase\.co"):
        check(fake.url)


def test_a_missing_schema_is_named_on_a_real_supabase_shaped_database(supabase: SupabaseShape) -> None:
    name = supabase.clone(BASE)  # a project where schema.sql was never applied
    standin = PostgrestOnSupabase(supabase.authenticator_uri(name))
    try:
        with pytest.raises(SchemaMissing, match=r"not applied.*opsdesk db init"):
            check(standin.url, SERVICE_KEY)
    finally:
        standin.close()
        supabase.drop(name)


def test_an_older_schema_says_to_apply_the_new_one(fake: FakePostgrest) -> None:
    fake.answer(200, SCHEMA_VERSION - 1)
    with pytest.raises(SchemaOutdated, match=r"older than this opsdesk.*safe to apply again"):
        check(fake.url)


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "words"),
    [
        (401, INVALID_KEY, 5, EXPECTED),
        (None, None, 11, "unreachable at SUPABASE_URL"),
        (
            404,
            {
                "code": "PGRST202",
                "details": None,
                "hint": None,
                "message": "Could not find the function public.schema_version without parameters in the schema cache",
            },
            3,
            "not applied",
        ),
        (200, SCHEMA_VERSION - 1, 12, "older than this opsdesk"),
    ],
    ids=["refused-key", "unreachable", "schema-missing", "schema-too-old"],
)
def test_each_failure_has_its_own_exit_code(
    fake: FakePostgrest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    status: int | None,
    body: object,
    exit_code: int,
    words: str,
) -> None:
    clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("SUPABASE_URL", fake.url if status is not None else f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", KEY)
    monkeypatch.setenv("OPS_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("APPROVAL_LINK_SECRET", "test-link-secret-0123456789")
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "none")
    if status is not None:
        fake.answer(status, body)
    assert run("approvals", "list") == exit_code
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("key", ["sb_publishable_abc0123456789", jwt("anon"), jwt("authenticated")])
def test_a_client_side_key_is_refused_before_any_call(key: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(EXPECTED)):
        make_settings(supabase_url="https://abc.supabase.co", supabase_service_role_key=key)
    assert (
        make_settings(
            supabase_url="https://abc.supabase.co", supabase_service_role_key=jwt("service_role")
        ).database_mode
        == "supabase"
    )


@pytest.mark.parametrize(
    ("key", "kind", "code"),
    [
        (KEY, "a secret key (sb_secret_…)", 0),
        (jwt("service_role"), "a legacy service_role key (JWT)", 0),
        ("sb_publishable_abc0123456789", "the publishable key (sb_publishable_…)", 1),
    ],
)
def test_config_check_says_which_supabase_key_it_sees(
    key: str,
    kind: str,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("SUPABASE_URL", "https://abcdefghijklmnop.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", key)
    monkeypatch.setenv("OPS_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("APPROVAL_LINK_SECRET", "test-link-secret-0123456789")
    assert run("config", "check") == code
    out = capsys.readouterr().out
    assert kind in out and key not in out
