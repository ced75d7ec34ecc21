"""schema.sql on real PostgreSQL: idempotent, append-only audit, RLS and grants."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.core import database_setup
from app.core.database import SCHEMA_VERSION, schema_sql
from tests.conftest import make_settings
from tests.supabase_shape import BASE, SupabaseShape


def test_applies_twice_without_error(sql: psycopg.Connection) -> None:
    sql.execute(schema_sql().encode())
    sql.execute(schema_sql().encode())
    assert sql.execute("select health()->>'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert sql.execute("select extversion from pg_extension where extname = 'vector'").fetchone()[0] >= "0.8"


def test_audit_log_refuses_update_delete_and_truncate(sql: psycopg.Connection) -> None:
    sql.execute("insert into audit_log (actor, event) values ('t', 'test')")
    for statement in ("update audit_log set actor = 'x'", "delete from audit_log", "truncate audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            sql.execute(statement)
    assert sql.execute("select actor from audit_log").fetchall() == [("t",)]


def test_every_table_has_row_level_security(sql: psycopg.Connection) -> None:
    rows = sql.execute(
        "select relname, relrowsecurity from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r'"
    ).fetchall()
    assert rows and all(secured for _, secured in rows), rows


@pytest.fixture
def supabase_like(supabase: SupabaseShape) -> Iterator[psycopg.Connection]:
    """A Supabase-shaped database (tests/supabase_shape.py) with schema.sql applied twice by its
    owner, each time in a new session; the connection is the superuser's."""
    name = supabase.clone(BASE)
    try:
        for _ in range(2):
            with psycopg.connect(supabase.owner_uri(name), autocommit=True) as owner:
                owner.execute(schema_sql().encode())
        with psycopg.connect(supabase.superuser_uri(name), autocommit=True) as conn:
            yield conn
    finally:
        supabase.drop(name)


def test_supabase_roles_read_nothing_and_only_service_role_runs_functions(
    supabase_like: psycopg.Connection,
) -> None:
    conn = supabase_like
    conn.execute("insert into audit_log (actor, event) values ('t', 'secret')")
    for role in ("anon", "authenticated"):
        assert not conn.execute(
            "select has_function_privilege(%s, 'submit_action(jsonb,text,jsonb,boolean,"
            "double precision,integer,text,text)', 'execute')",
            (role,),
        ).fetchone()[0]
        assert not conn.execute("select has_table_privilege(%s, 'audit_log', 'select')", (role,)).fetchone()[0]
    assert conn.execute(
        "select has_function_privilege('service_role', 'decide_action(uuid,text,text,text,"
        "jsonb,text,text,bigint,text,text,jsonb,jsonb)', 'execute')"
    ).fetchone()[0]
    assert not conn.execute("select has_table_privilege('service_role', 'audit_log', 'update')").fetchone()[0]
    # even with a table grant, RLS with no policy shows anon nothing
    conn.execute("grant select on audit_log to anon")
    with conn.transaction():
        conn.execute("set local role anon")
        assert conn.execute("select count(*) from audit_log").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select health()")


def test_public_cannot_execute_opsdesk_functions_on_plain_postgres(sql: psycopg.Connection) -> None:
    assert not sql.execute("select has_function_privilege('public', 'health()', 'execute')").fetchone()[0]


def test_service_role_reads_the_test_clock_but_cannot_move_it(supabase_like: psycopg.Connection) -> None:
    conn = supabase_like
    assert conn.execute("select has_table_privilege('service_role', 'clock_offset', 'select')").fetchone()[0]
    for privilege in ("insert", "update", "delete", "truncate"):
        assert not conn.execute(
            "select has_table_privilege('service_role', 'clock_offset', %s)", (privilege,)
        ).fetchone()[0], privilege
    with conn.transaction():
        conn.execute("set local role service_role")
        assert conn.execute("select health()->'now'").fetchone()[0]  # db_now() still reads it
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update clock_offset set offset_interval = '1 day'")
    conn.execute("update clock_offset set offset_interval = '1 second'")  # the owner (tests) still can


class _Embedded:
    """Stands in for the embedded server's process: opens the test's own database."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def get_uri(self) -> str:
        return self.uri

    def cleanup(self) -> None:
        pass


def _stamps(sql: psycopg.Connection) -> tuple[str, str, str]:
    """What applying schema.sql rewrites: a function's catalogue row, and the fingerprint row."""
    return sql.execute(
        "select (select xmin::text from pg_proc where proname = 'decide_action'), "
        "(select xmin::text from schema_applied), (select sha256 from schema_applied)"
    ).fetchone()


def test_the_embedded_database_gets_schema_sql_only_when_it_is_new_or_changed(
    database_url: str,
    sql: psycopg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(database_setup, "start_embedded", lambda _: _Embedded(database_url))
    settings = make_settings(opsdesk_data_dir=tmp_path)
    assert settings.database_mode == "embedded"
    with database_setup.open_database(settings):
        pass  # the template was made without a fingerprint: applied, and recorded
    applied = _stamps(sql)
    assert applied[2] == hashlib.sha256(schema_sql().encode()).hexdigest()
    with database_setup.open_database(settings):  # a CLI command beside the service
        pass
    assert _stamps(sql) == applied  # not applied again: no ACCESS EXCLUSIVE lock on the service's tables

    changed = schema_sql() + "\n-- an upgraded opsdesk\n"
    monkeypatch.setattr(database_setup, "schema_sql", lambda: changed)
    with database_setup.open_database(settings):
        pass
    upgraded = _stamps(sql)
    assert upgraded[0] != applied[0] and upgraded[2] == hashlib.sha256(changed.encode()).hexdigest()
    with database_setup.open_database(settings, init_schema=True):  # `opsdesk db init`
        pass
    assert _stamps(sql)[0] != upgraded[0]  # always applies
