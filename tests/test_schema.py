"""schema.sql on real PostgreSQL: idempotent, append-only audit, RLS and grants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from app.database import schema_sql


def test_applies_twice_without_error(sql: psycopg.Connection) -> None:
    sql.execute(schema_sql().encode())
    sql.execute(schema_sql().encode())
    assert sql.execute("select health()->>'schema_version'").fetchone() == ("1",)
    assert sql.execute("select extversion from pg_extension where extname = 'vector'").fetchone()[0] >= "0.8"


def test_audit_log_refuses_update_delete_and_truncate(sql: psycopg.Connection) -> None:
    sql.execute("insert into audit_log (actor, event) values ('t', 'test')")
    for statement in ("update audit_log set actor = 'x'", "delete from audit_log", "truncate audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            sql.execute(statement)
    assert sql.execute("select actor from audit_log").fetchall() == [("t",)]


def test_every_table_has_row_level_security(sql: psycopg.Connection) -> None:
    rows = sql.execute(
        "select relname, relrowsecurity from pg_class where relnamespace = 'public'::regnamespace "
        "and relkind = 'r'").fetchall()
    assert rows and all(secured for _, secured in rows), rows


@pytest.fixture
def supabase_like(pg_server: Any) -> Iterator[psycopg.Connection]:
    """A fresh database on a cluster that has Supabase's roles, with schema.sql applied there."""
    name = f"sb_{uuid.uuid4().hex[:12]}"
    roles = ("anon", "authenticated", "service_role")
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        for role in roles:
            admin.execute(f"do $$ begin create role {role} nologin; exception when duplicate_object then null; end $$")
        admin.execute(f"create database {name}")
    try:
        with psycopg.connect(pg_server.get_uri(name), autocommit=True) as conn:
            # Supabase grants table access to these roles by default; RLS must still hide the rows
            conn.execute("grant usage on schema public to anon, authenticated, service_role")
            conn.execute("alter default privileges in schema public grant all on tables to anon, authenticated")
            conn.execute(schema_sql().encode())
            conn.execute(schema_sql().encode())
            yield conn
    finally:
        with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
            admin.execute(f"drop database if exists {name} with (force)")
            for role in roles:
                admin.execute(f"drop role if exists {role}")


def test_supabase_roles_read_nothing_and_only_service_role_runs_functions(
    supabase_like: psycopg.Connection,
) -> None:
    conn = supabase_like
    conn.execute("insert into audit_log (actor, event) values ('t', 'secret')")
    for role in ("anon", "authenticated"):
        assert not conn.execute("select has_function_privilege(%s, 'submit_action(jsonb,text,jsonb,boolean,"
                                "double precision,integer,text,text)', 'execute')", (role,)).fetchone()[0]
        assert not conn.execute("select has_table_privilege(%s, 'audit_log', 'select')", (role,)).fetchone()[0]
    assert conn.execute("select has_function_privilege('service_role', 'decide_action(uuid,text,text,text,"
                        "jsonb,text,text)', 'execute')").fetchone()[0]
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
