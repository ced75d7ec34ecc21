"""Shared fixtures: one embedded PostgreSQL (with pgvector) per test session, a template database
with schema.sql applied, and a fresh clone of it for every test that touches the database.

Production parity, made once per session when a test asks for it: a Supabase-shaped set of roles
and template databases (`supabase`, tests/supabase_shape.py) with a clone per test
(`supabase_db`), and Debian's pgbouncer in transaction mode in front of the server (`pgbouncer`)."""

from __future__ import annotations

import os

# The CLI's Rich consoles are made when app.cli is imported and read COLUMNS then: render them
# wide in every worker, so a message (or a leaked secret) is never wrapped out of an assertion.
os.environ["COLUMNS"] = "200"

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.core.database import Database, PostgresTransport, schema_sql
from app.core.database_setup import start_embedded
from app.core.settings import Settings
from tests.pgbouncer import Pgbouncer, pgbouncer_binary
from tests.supabase_shape import TEMPLATE as SUPABASE_TEMPLATE
from tests.supabase_shape import SupabaseShape

TEMPLATE = "opsdesk_template"
API_TOKEN = "test-api-token-0123456789"


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: never read the developer's `.env`."""
    values: dict[str, Any] = {
        "ops_api_token": API_TOKEN,
        "approval_link_secret": "test-link-secret-0123456789",
        "executor_backoff_base_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    # a short path: the server's unix socket lives in the data folder
    folder = Path(tempfile.mkdtemp(prefix="odpg", dir="/tmp"))
    server = start_embedded(folder)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"drop database if exists {TEMPLATE}")
        conn.execute(f"create database {TEMPLATE}")
    with psycopg.connect(server.get_uri(TEMPLATE), autocommit=True) as conn:
        conn.execute(schema_sql().encode())
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(pg_server: Any) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"create database {name} template {TEMPLATE}")
    yield pg_server.get_uri(name)
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, opsdesk_data_dir=tmp_path)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(PostgresTransport(database_url, max_size=40))
    yield database
    database.close()


@pytest.fixture
def sql(database_url: str) -> Iterator[psycopg.Connection]:
    """A raw connection for assertions and for moving the database clock."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def advance_clock(conn: psycopg.Connection, seconds: float) -> None:
    """Move the database's clock forward instead of sleeping."""
    conn.execute("update clock_offset set offset_interval = offset_interval + make_interval(secs => %s)", (seconds,))


@pytest.fixture(scope="session")
def supabase(pg_server: Any) -> Iterator[SupabaseShape]:
    folder = Path(tempfile.mkdtemp(prefix="odsb", dir="/tmp"))
    try:
        yield SupabaseShape(pg_server, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def supabase_db(supabase: SupabaseShape) -> Iterator[str]:
    """A database shaped like a Supabase project's, with schema.sql applied by its owner."""
    name = supabase.clone(SUPABASE_TEMPLATE)
    yield name
    supabase.drop(name)


@pytest.fixture(scope="session")
def pgbouncer(pg_server: Any) -> Iterator[Pgbouncer]:
    binary = pgbouncer_binary()
    if binary is None:
        pytest.fail("pgbouncer is not installed: Debian's package `pgbouncer` (scripts/test installs it)")
    bouncer = Pgbouncer(pg_server, binary)
    yield bouncer
    bouncer.stop()
