"""The Supabase REST transport with the real supabase-py client, against a fake PostgREST on
127.0.0.1: what goes on the wire, and how PostgREST's answers and failures come back."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.core.database import SCHEMA_VERSION, Database, SupabaseTransport
from app.core.errors import (
    Conflict,
    DatabaseError,
    DatabaseUnreachable,
    Gone,
    InvalidInput,
    NotFound,
    OpsdeskError,
    SchemaMismatch,
    StaleAttempt,
)
from app.runtime.database import open_database
from tests.conftest import make_settings

KEY = "sb_secret_test-service-role-key-0123456789"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakePostgrest:
    """A PostgREST stand-in: records every request and answers with `status`/`body`.

    `body` is sent as JSON unless it is bytes. With `hold` set, a request waits on `release`
    (set at teardown) and then gets no answer at all.
    """

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.status = 200
        self.body: Any = None
        self.content_type = "application/json; charset=utf-8"
        self.hold = False
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake.requests.append(
                    Seen(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        self.rfile.read(length),
                    )
                )
                if fake.hold:
                    fake.release.wait()
                    self.close_connection = True
                    return
                payload = fake.body if isinstance(fake.body, bytes) else json.dumps(fake.body).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", fake.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # a short poll interval only makes shutdown() at teardown quick
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, status: int, body: Any, content_type: str | None = None) -> None:
        self.status, self.body = status, body
        if content_type is not None:
            self.content_type = content_type

    def error(self, status: int, code: str, message: str, details: str | None = None) -> None:
        """An error the way PostgREST sends one: the SQLSTATE and the raised message/detail."""
        self.answer(status, {"code": code, "message": message, "details": details, "hint": None})

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def fake() -> Iterator[FakePostgrest]:
    server = FakePostgrest()
    yield server
    server.close()


@pytest.fixture
def db(fake: FakePostgrest) -> Iterator[Database]:
    database = Database(SupabaseTransport(fake.url, KEY))
    yield database
    database.close()


def closed_port() -> int:
    """A loopback port nobody listens on: bound, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the request ----------------------------------------------------------------------------


def test_call_posts_p_prefixed_json_with_both_key_headers(fake: FakePostgrest, db: Database) -> None:
    action_id = uuid.uuid4()
    fake.answer(200, {"id": str(action_id), "status": "approved"})

    result = db.call(
        "decide_action",
        id=action_id,
        decision="approve",
        actor="ann",
        reason=None,
        modifications={"body": "x"},
        expected_hash=None,
        request_id="r1",
    )

    assert result == {"id": str(action_id), "status": "approved"}
    [seen] = fake.requests
    assert seen.method == "POST"
    assert seen.path == "/rest/v1/rpc/decide_action"
    assert seen.headers["apikey"] == KEY
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["content-type"].split(";")[0] == "application/json"
    assert seen.json() == {
        "p_id": str(action_id),
        "p_decision": "approve",
        "p_actor": "ann",
        "p_reason": None,
        "p_modifications": {"body": "x"},
        "p_expected_hash": None,
        "p_request_id": "r1",
    }


@pytest.mark.parametrize(
    "answer", [[{"id": 1}, {"id": 2}], [], 1, "text", None], ids=["array", "empty-array", "int", "string", "null"]
)
def test_call_returns_the_json_the_server_answered(fake: FakePostgrest, db: Database, answer: Any) -> None:
    fake.answer(200, answer)
    assert db.call("list_actions") == answer


def test_call_without_parameters_sends_an_empty_object(fake: FakePostgrest, db: Database) -> None:
    fake.answer(200, 1)
    assert db.call("schema_version") == 1
    assert fake.requests[0].path == "/rest/v1/rpc/schema_version"
    assert fake.requests[0].json() == {}


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("OD404", NotFound),
        ("OD409", Conflict),
        ("OD410", Gone),
        ("OD422", InvalidInput),
        ("OD499", StaleAttempt),
    ],
)
@pytest.mark.parametrize("status", [400, 409])
def test_our_sqlstates_become_their_exception_with_parsed_details(
    fake: FakePostgrest, db: Database, sqlstate: str, kind: type[OpsdeskError], status: int
) -> None:
    fake.error(status, sqlstate, "action already decided", details='{"status":"rejected","decided_by":"ann"}')

    with pytest.raises(kind) as caught:
        db.call("decide_action", id=uuid.uuid4(), decision="approve")

    assert type(caught.value) is kind
    assert caught.value.message == "action already decided"
    assert caught.value.details == {"status": "rejected", "decided_by": "ann"}
    assert caught.value.details["decided_by"] == "ann"


def test_error_without_details_has_empty_details(fake: FakePostgrest, db: Database) -> None:
    fake.error(400, "OD404", "no such action")
    with pytest.raises(NotFound) as caught:
        db.call("get_action", id=uuid.uuid4())
    assert caught.value.details == {}


def test_plain_text_details_are_kept_under_detail(fake: FakePostgrest, db: Database) -> None:
    fake.error(400, "OD422", "bad decision", details="decision must be approve or reject")
    with pytest.raises(InvalidInput) as caught:
        db.call("decide_action", id=uuid.uuid4(), decision="maybe")
    assert caught.value.details == {"detail": "decision must be approve or reject"}


def test_details_sent_as_a_json_object_are_taken_as_is(fake: FakePostgrest, db: Database) -> None:
    fake.answer(400, {"code": "OD409", "message": "already decided", "hint": None, "details": {"decided_by": "ann"}})
    with pytest.raises(Conflict) as caught:
        db.call("decide_action", id=uuid.uuid4())
    assert caught.value.details == {"decided_by": "ann"}


def test_function_not_found_is_a_database_error(fake: FakePostgrest, db: Database) -> None:
    fake.answer(
        404,
        {
            "code": "PGRST202",
            "message": "Could not find the function public.decide_action(p_id) in the schema cache",
            "details": "Searched for the function public.decide_action with parameter p_id",
            "hint": None,
        },
    )
    with pytest.raises(DatabaseError) as caught:
        db.call("decide_action", id=uuid.uuid4())
    assert type(caught.value) is DatabaseError
    assert "Could not find the function" in str(caught.value)


@pytest.mark.parametrize("sqlstate", ["23505", "42501", "P0001"])
def test_other_sqlstates_are_database_errors(fake: FakePostgrest, db: Database, sqlstate: str) -> None:
    fake.error(409 if sqlstate == "23505" else 400, sqlstate, "boom", details="Key (id)=(1) exists.")
    with pytest.raises(DatabaseError) as caught:
        db.call("decide_action", id=uuid.uuid4())
    assert type(caught.value) is DatabaseError


def test_html_error_page_is_a_database_error(fake: FakePostgrest, db: Database) -> None:
    fake.answer(500, b"<html><body>Internal Server Error</body></html>", "text/html")
    with pytest.raises(DatabaseError) as caught:
        db.call("decide_action", id=uuid.uuid4())
    assert type(caught.value) is DatabaseError
    assert "HTTP 500" in str(caught.value)
    assert "<html>" not in str(caught.value)
    assert caught.value.details == {}
    assert KEY not in str(caught.value)


def test_refused_connection_is_a_database_error_without_the_key() -> None:
    database = Database(SupabaseTransport(f"http://127.0.0.1:{closed_port()}", KEY))
    try:
        with pytest.raises(DatabaseError) as caught:
            database.call("schema_version")
    finally:
        database.close()
    assert type(caught.value) is DatabaseUnreachable  # its own kind since issue 11 (exit code 11)
    assert "unreachable" in str(caught.value)
    assert KEY not in str(caught.value)


def test_server_that_never_answers_times_out_as_a_database_error(fake: FakePostgrest) -> None:
    fake.hold = True
    database = Database(SupabaseTransport(fake.url, KEY, timeout=0.5))
    try:
        with pytest.raises(DatabaseError) as caught:
            database.call("decide_action", id=uuid.uuid4(), decision="approve")
    finally:
        database.close()
    assert len(fake.requests) == 1  # reached the server, and a POST is never retried
    assert "did not answer within 0.5s" in str(caught.value)
    assert KEY not in str(caught.value)


def test_fractional_timeout_is_not_truncated_to_zero(fake: FakePostgrest) -> None:
    fake.answer(200, 1)
    database = Database(SupabaseTransport(fake.url, KEY, timeout=0.5))
    try:
        assert database.call("schema_version") == 1
    finally:
        database.close()


# --- schema check ---------------------------------------------------------------------------


def test_check_schema_passes_on_the_current_version(fake: FakePostgrest, db: Database) -> None:
    fake.answer(200, SCHEMA_VERSION)
    db.check_schema()
    assert fake.requests[0].path == "/rest/v1/rpc/schema_version"


def test_check_schema_rejects_another_version(fake: FakePostgrest, db: Database) -> None:
    fake.answer(200, SCHEMA_VERSION - 1)  # an outside database still on an older schema.sql
    with pytest.raises(SchemaMismatch, match=f"version {SCHEMA_VERSION - 1}, this opsdesk needs {SCHEMA_VERSION}"):
        db.check_schema()


def test_check_schema_rejects_a_missing_function(fake: FakePostgrest, db: Database) -> None:
    fake.answer(
        404,
        {
            "code": "PGRST202",
            "hint": None,
            "details": None,
            "message": "Could not find the function public.schema_version",
        },
    )
    with pytest.raises(SchemaMismatch, match="SQL editor"):
        db.check_schema()


# --- open_database --------------------------------------------------------------------------


def test_open_database_uses_supabase_when_configured(fake: FakePostgrest, tmp_path: Path) -> None:
    # no embeddings provider: start-up then has no memory model to check (tests/test_memory.py does)
    settings = make_settings(
        supabase_url=fake.url, supabase_service_role_key=KEY, opsdesk_data_dir=tmp_path, embeddings_provider="none"
    )
    assert settings.database_mode == "supabase"
    fake.answer(200, SCHEMA_VERSION)

    with open_database(settings) as database:
        assert isinstance(database.transport, SupabaseTransport)
        assert database.call("schema_version") == SCHEMA_VERSION

    assert [seen.path for seen in fake.requests] == ["/rest/v1/rpc/schema_version"] * 2
    assert fake.requests[0].headers["apikey"] == KEY


def test_open_database_refuses_init_schema_over_rest(fake: FakePostgrest, tmp_path: Path) -> None:
    settings = make_settings(supabase_url=fake.url, supabase_service_role_key=KEY, opsdesk_data_dir=tmp_path)
    with pytest.raises(DatabaseError, match="SQL editor"), open_database(settings, init_schema=True):
        pass
    assert fake.requests == []
