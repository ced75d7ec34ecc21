"""schema.sql on a Supabase-shaped database (tests/supabase_shape.py): applied by Supabase's
non-superuser owner, fresh and again, with or without `vector` enabled first, pasted in one piece,
run statement by statement by psql, through `opsdesk db init`, directly or through pgbouncer; and
nothing of ours reachable by the API's client roles."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.core.database import SCHEMA_VERSION, schema_sql
from tests.cli_support import database_env, run
from tests.pgbouncer import Pgbouncer
from tests.supabase_shape import BASE, NO_VECTOR, OWNER, SupabaseShape

CLIENT_ROLES = ("anon", "authenticated")


@pytest.fixture(params=[BASE, NO_VECTOR], ids=["vector-enabled-first", "vector-not-enabled"])
def fresh(request: pytest.FixtureRequest, supabase: SupabaseShape) -> Iterator[str]:
    """A new Supabase-shaped database without opsdesk's schema."""
    name = supabase.clone(request.param)
    yield name
    supabase.drop(name)


def applied(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return int(conn.execute("select schema_version()").fetchone()[0])


def apply_in_a_new_session(conninfo: str) -> None:
    """As the SQL editor runs a pasted file: one query string, in a session of its own."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(schema_sql().encode())


def test_the_fixture_is_supabases_shape(supabase: SupabaseShape, supabase_db: str) -> None:
    with psycopg.connect(supabase.superuser_uri(supabase_db), autocommit=True) as conn:
        roles = dict(
            conn.execute(
                "select rolname, jsonb_build_object('super', rolsuper, 'login', rolcanlogin, 'inherit', rolinherit, "
                "'bypassrls', rolbypassrls) from pg_roles where rolname in ('anon', 'authenticated', 'service_role', "
                "'authenticator', %s)",
                (OWNER,),
            ).fetchall()
        )
        timeouts = dict(
            conn.execute(
                "select r.rolname, s.setconfig from pg_db_role_setting s join pg_roles r on r.oid = s.setrole "
                "where s.setdatabase = 0"
            ).fetchall()
        )
        members = {
            row[0]
            for row in conn.execute(
                "select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid "
                "where m.member = 'authenticator'::regrole"
            )
        }
        vector_schema = conn.execute(
            "select extnamespace::regnamespace::text from pg_extension where extname = 'vector'"
        ).fetchone()
    assert roles[OWNER]["super"] is False and roles[OWNER]["bypassrls"] is True
    assert roles["service_role"] == {"super": False, "login": False, "inherit": True, "bypassrls": True}
    assert roles["anon"]["login"] is False and roles["authenticated"]["login"] is False
    assert roles["authenticator"]["login"] is True and roles["authenticator"]["inherit"] is False
    assert members == {"anon", "authenticated", "service_role"}
    assert "statement_timeout=8s" in timeouts["authenticator"] and "statement_timeout=3s" in timeouts["anon"]
    assert vector_schema == ("extensions",)
    # what made issue 1: the owner cannot load pgvector's library to define hnsw.* itself
    with (
        psycopg.connect(supabase.owner_uri(supabase_db), autocommit=True) as owner,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        owner.execute("load 'vector'")


def test_applies_fresh_and_again_as_the_non_superuser_owner(supabase: SupabaseShape, fresh: str) -> None:
    owner = supabase.owner_uri(fresh)
    for _ in range(3):  # each time a new session, in which pgvector's library is not loaded
        apply_in_a_new_session(owner)
    assert applied(owner) == SCHEMA_VERSION
    with psycopg.connect(supabase.superuser_uri(fresh), autocommit=True) as conn:
        assert (
            conn.execute(
                "select extnamespace::regnamespace::text, extowner::regrole::text from pg_extension "
                "where extname = 'vector'"
            ).fetchone()[0]
            == "extensions"
        )
        assert (
            conn.execute(
                "select count(*) from pg_proc where proowner = %s::regrole and pronamespace = 'public'::regnamespace",
                (OWNER,),
            ).fetchone()[0]
            > 100
        )


def test_psql_runs_it_statement_by_statement(
    supabase: SupabaseShape, pg_server: Any, fresh: str, tmp_path: Path
) -> None:
    """As Supabase's own migrate.sh runs its scripts (`psql -v ON_ERROR_STOP=1 -f`): each statement
    sent on its own. (One piece, as the SQL editor sends it, is the test above.)"""
    psql = Path(pg_server.bin_path) / "psql"
    script = tmp_path / "schema.sql"
    script.write_text(schema_sql())
    owner = supabase.owner_uri(fresh)
    for _ in range(2):
        done = subprocess.run(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", owner, "-f", str(script)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert applied(owner) == SCHEMA_VERSION


@pytest.mark.parametrize("through", ["direct", "pooler"])
def test_opsdesk_db_init_as_the_owner(
    supabase: SupabaseShape,
    pgbouncer: Pgbouncer,
    fresh: str,
    through: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = supabase.owner_uri(fresh) if through == "direct" else pgbouncer.uri(fresh, OWNER)
    database_env(monkeypatch, tmp_path, url)
    for _ in range(2):
        assert run("db", "init") == 0, capsys.readouterr().err
    assert run("approvals", "list") == 0
    assert applied(supabase.owner_uri(fresh)) == SCHEMA_VERSION


def test_applying_through_the_pooler_does_not_depend_on_what_its_connections_loaded(
    supabase: SupabaseShape,
    pgbouncer: Pgbouncer,
    supabase_db: str,
) -> None:
    """Transaction pooling hands each transaction whichever server connection is free: one that
    ran a vector search has pgvector's library loaded, a new one has not."""
    pooled = pgbouncer.uri(supabase_db, OWNER)
    with psycopg.connect(pooled, autocommit=True) as busy, psycopg.connect(pooled, autocommit=True) as other:
        busy.execute("select '[1,2]'::extensions.vector")
        with busy.transaction():  # holds its server connection: the next apply gets another one
            for _ in range(2):
                other.execute(schema_sql().encode())
        busy.execute(schema_sql().encode())
    assert applied(pooled) == SCHEMA_VERSION


def test_no_object_of_ours_is_reachable_by_anon_or_authenticated(supabase: SupabaseShape, supabase_db: str) -> None:
    apply_in_a_new_session(supabase.owner_uri(supabase_db))  # applied again: still revoked
    with psycopg.connect(supabase.superuser_uri(supabase_db), autocommit=True) as conn:
        reachable = conn.execute(
            """
            select r.role, c.relkind::text, c.relname
              from pg_class c cross join unnest(%(roles)s::text[]) r(role)
             where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'S', 'v', 'm', 'p')
               and (case c.relkind when 'S' then has_sequence_privilege(r.role, c.oid, 'usage,select,update')
                    else has_table_privilege(r.role, c.oid,
                                             'select,insert,update,delete,truncate,references,trigger') end)
            union all
            select r.role, 'function', p.oid::regprocedure::text
              from pg_proc p cross join unnest(%(roles)s::text[]) r(role)
             where p.pronamespace = 'public'::regnamespace and has_function_privilege(r.role, p.oid, 'execute')
            """,
            {"roles": list(CLIENT_ROLES)},
        ).fetchall()
        sequences = conn.execute(
            "select count(*) from pg_class where relnamespace = 'public'::regnamespace and relkind = 'S'"
        ).fetchone()[0]
        service = conn.execute(
            "select bool_and(has_function_privilege('service_role', p.oid, 'execute')) "
            "from pg_proc p where p.pronamespace = 'public'::regnamespace"
        ).fetchone()[0]
    assert sequences > 0  # identity columns: what Supabase's default privileges granted to anon
    assert reachable == []
    assert service is True


def test_every_update_and_delete_has_a_where() -> None:
    """Supabase preloads pg-safeupdate for API sessions: an UPDATE or DELETE without a WHERE is
    refused there, inside functions too. (Not loadable on the embedded server, so read the file.)"""
    text = re.sub(r"--[^\n]*", "", schema_sql())
    text = re.sub(r"'(?:[^']|'')*'", "''", text)  # string literals may hold a ';'
    statements = re.finditer(
        r"\b(?:update\s+[a-z_.]+(?:\s+(?:as\s+)?[a-z]+)?\s+set|delete\s+from)\b[^;]*", text, re.IGNORECASE
    )
    missing = [
        " ".join(found.group(0).split())[:80]
        for found in statements
        if not re.search(r"\bwhere\b", found.group(0), re.IGNORECASE)
    ]
    assert missing == []
