"""Upgrading from the previous release, modelled on procrastinate's tests/migration (the baseline and
its migrations applied to one database, schema.sql to another, the two catalogues compared).

The previous release is tests/migration/schema_previous.sql (its first line names the commit); its
own functions write rows of every kind into it (seed_previous.sql). Then the current schema.sql is
applied twice, and the upgraded database must have exactly the catalogue of a fresh apply (on a
difference the assertion lists what only one side has), and the old rows must still work through
the current functions: leases expire and are recovered, claims and finishes go on. Once as the
embedded server's superuser, once on a Supabase-shaped database as its non-superuser owner, with
the rows driven over the REST stand-in as service_role."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.core.database import Database, PostgresTransport, SupabaseTransport, schema_sql
from tests.conftest import advance_clock
from tests.postgrest_on_supabase import SERVICE_KEY, PostgrestOnSupabase
from tests.supabase_shape import NO_VECTOR, SupabaseShape

MIGRATION = Path(__file__).parent / "migration"
PREVIOUS = MIGRATION / "schema_previous.sql"
SEED = MIGRATION / "seed_previous.sql"

# An object of ours: in schema public and not one of an extension's (the embedded server installs
# pgvector into public).
CLASS = (
    "c.relnamespace = 'public'::regnamespace and not exists (select 1 from pg_depend e"
    " where e.classid = 'pg_class'::regclass and e.objid = c.oid and e.deptype = 'e')"
)
PROC = (
    "p.pronamespace = 'public'::regnamespace and not exists (select 1 from pg_depend e"
    " where e.classid = 'pg_proc'::regclass and e.objid = p.oid and e.deptype = 'e')"
)
# Sets, so column order (an added column comes last) and ACL order do not count.
CATALOGUE = {
    "columns": f"""
        select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
          from pg_attribute a join pg_class c on c.oid = a.attrelid
          left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
         where {CLASS} and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped""",
    "constraints": f"""
        select c.relname, k.conname, pg_get_constraintdef(k.oid)
          from pg_constraint k join pg_class c on c.oid = k.conrelid where {CLASS}""",
    "indexes": "select tablename, indexname, indexdef from pg_indexes where schemaname = 'public'",
    "sequences": f"""
        select c.relname, format_type(s.seqtypid, null), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle
          from pg_sequence s join pg_class c on c.oid = s.seqrelid where {CLASS}""",
    "functions": f"""
        select p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
               md5(pg_get_functiondef(p.oid)), p.prosecdef, p.provolatile::text, p.proconfig::text
          from pg_proc p where {PROC} and p.prokind = 'f'""",
    "triggers": f"""
        select c.relname, t.tgname, pg_get_triggerdef(t.oid)
          from pg_trigger t join pg_class c on c.oid = t.tgrelid where {CLASS} and not t.tgisinternal""",
    "row level security": f"""
        select c.relname, c.relrowsecurity, c.relforcerowsecurity from pg_class c where {CLASS} and c.relkind = 'r'""",
    "privileges": f"""
        select c.relname, c.relkind::text, g.grantor::regrole::text, g.grantee::regrole::text, g.privilege_type,
               g.is_grantable
          from pg_class c cross join aclexplode(c.relacl) g where {CLASS}
        union all
        select p.oid::regprocedure::text, 'function', g.grantor::regrole::text, g.grantee::regrole::text,
               g.privilege_type, g.is_grantable
          from pg_proc p cross join aclexplode(p.proacl) g where {PROC}""",
    "comments": f"""
        select c.relname, a.attname, d.description
          from pg_description d join pg_class c on c.oid = d.objoid and d.classoid = 'pg_class'::regclass
          left join pg_attribute a on a.attrelid = c.oid and a.attnum = d.objsubid and d.objsubid > 0
         where {CLASS}""",
    "extensions": "select extname, extnamespace::regnamespace::text from pg_extension",
}


def apply(conninfo: str, script: str) -> None:
    """In a session of its own, as `opsdesk db init` or Supabase's SQL editor runs it."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(script.encode())


def catalogue(conninfo: str) -> dict[str, set[tuple[Any, ...]]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {name: set(conn.execute(query).fetchall()) for name, query in CATALOGUE.items()}


def differences(upgraded: str, fresh: str) -> str:
    """Per catalogue, what only the upgraded database has and what only the fresh one has."""
    after, want = catalogue(upgraded), catalogue(fresh)
    lines = []
    for name in CATALOGUE:
        for label, rows in (("only upgraded", after[name] - want[name]), ("only fresh", want[name] - after[name])):
            lines += [f"{name}, {label}: {row}" for row in sorted(rows, key=repr)]
    return "\n".join(lines)


def upgrade(owner: str) -> None:
    """The previous release with its rows, then today's schema.sql twice, each in a new session."""
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(PREVIOUS.read_text(encoding="utf-8").encode())
        conn.execute(SEED.read_text(encoding="utf-8").encode())
    for _ in range(2):
        apply(owner, schema_sql())


def test_the_previous_release_is_frozen_with_the_commit_it_came_from() -> None:
    first = PREVIOUS.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("-- schema.sql of commit c47fede")
    assert (
        "create or replace function schema_version() returns jsonb\nlanguage sql immutable as $$ select to_jsonb(2)"
        in (PREVIOUS.read_text(encoding="utf-8"))
    )


@pytest.fixture
def empty_databases(pg_server: Any) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the session's server, dropped afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"u_{uuid.uuid4().hex[:16]}")
        with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
            conn.execute(f"create database {names[-1]}")
        return str(pg_server.get_uri(names[-1]))

    yield make
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        for name in names:
            conn.execute(f"drop database if exists {name} with (force)")


def test_the_previous_release_upgrades_to_a_fresh_schema_and_its_rows_go_on(
    empty_databases: Callable[[], str],
) -> None:
    upgraded, fresh = empty_databases(), empty_databases()
    upgrade(upgraded)
    # Fresh now, not the session's template: schema.sql grants to Supabase's roles where they exist,
    # and a test of the `supabase` fixture may have made them on this server since the template.
    apply(fresh, schema_sql())
    assert differences(upgraded, fresh) == ""
    db = Database(PostgresTransport(upgraded, max_size=2))
    try:
        with psycopg.connect(upgraded, autocommit=True) as owner:
            the_rows_go_on(db, owner)
    finally:
        db.close()


def test_supabases_owner_upgrades_the_previous_release_and_service_role_goes_on_over_rest(
    supabase: SupabaseShape,
) -> None:
    """The previous release could be applied on Supabase only in the session that created `vector`
    (issue 11): so it is here, on a project without `vector`; today's file then runs in new
    sessions, where pgvector's library is not loaded."""
    upgraded, fresh = supabase.clone(NO_VECTOR), supabase.clone(NO_VECTOR)
    try:
        upgrade(supabase.owner_uri(upgraded))
        apply(supabase.owner_uri(fresh), schema_sql())
        assert differences(supabase.superuser_uri(upgraded), supabase.superuser_uri(fresh)) == ""
        standin = PostgrestOnSupabase(supabase.authenticator_uri(upgraded))
        db = Database(SupabaseTransport(standin.url, SERVICE_KEY))
        try:
            with psycopg.connect(supabase.owner_uri(upgraded), autocommit=True) as owner:
                the_rows_go_on(db, owner)
        finally:
            db.close()
            standin.close()
    finally:
        supabase.drop(upgraded)
        supabase.drop(fresh)


def the_rows_go_on(db: Database, owner: psycopg.Connection) -> None:
    """The seeded rows, read, recovered, claimed and finished through today's functions."""
    seeded = {row[0]: row[1:] for row in owner.execute("select summary, id, status from actions")}
    assert len(seeded) == 12
    for action_id, status in seeded.values():
        assert db.call("get_action", id=action_id)["status"] == status
    channels = dict(owner.execute("select summary, decided_via from actions where decided_by is not null").fetchall())
    assert channels == {"seed: rejected": "link", "seed: approved by api": "api", "seed: approved by cli": "cli"}
    the_leases_run_out(db, owner, seeded)
    the_queues_go_on(db, seeded)
    the_rest_goes_on(db, owner)


def the_leases_run_out(db: Database, owner: psycopg.Connection, seeded: dict[str, tuple[Any, ...]]) -> None:
    advance_clock(owner, 700)  # every seeded lease (600 s) has run out
    recovered = db.call("recover_expired_leases", actor="upgrade", limit=10)["recovered"]
    assert {r["id"]: r["status"] for r in recovered} == {
        str(seeded["seed: running, dispatched"][0]): "unknown",
        str(seeded["seed: running, campaign"][0]): "approved",
    }
    assert [r["status"] for r in db.call("recover_notification_leases", actor="upgrade", limit=10)["recovered"]] == [
        "queued"
    ]
    posts = db.call("claim_notifications", worker="upgrade", lease_seconds=60, limit=10)
    assert sorted((p["kind"], p["action"]["summary"], p["messages"]) for p in posts) == [
        ("announce", "seed: pending, a wrong PIN", []),
        ("announce", "seed: pending, announce claimed", []),
        ("outcome", "seed: rejected", ["1111111111"]),
    ]
    batches = db.call(
        "recover_campaign_batches", actor="upgrade", limit=10, daily_limit=300, reserve=20, time_zone="UTC"
    )["recovered"]
    assert [(b["batch_no"], b["status"], b["unknown"]) for b in batches] == [(1, "unknown", 2)]
    report = db.call("claim_daily_report_send", day=date(2026, 11, 30), worker="upgrade", lease_seconds=60)
    assert (report["claimed"], report["maybe_posted"]) == (True, True)
    run_id, token = owner.execute("select id, attempt_token from job_runs").fetchone()
    finished = db.call(
        "finish_job_run", id=run_id, attempt_token=token, outcome="ok", note={}, error=None, retry_in_seconds=None
    )
    assert finished["outcome"] == "ok"


def the_queues_go_on(db: Database, seeded: dict[str, tuple[Any, ...]]) -> None:
    claimed = db.call("claim_actions", worker="upgrade", lease_seconds=60, limit=10)
    assert sorted(a["summary"] for a in claimed) == [
        "seed: approved by api",
        "seed: approved by cli",
        "seed: running, campaign",
    ]
    for action in claimed:
        db.call(
            "finish_action",
            id=action["id"],
            attempt_token=action["attempt_token"],
            outcome="succeeded",
            result={},
            error=None,
            retry_in_seconds=None,
            count_attempt=True,
        )
    pin_id = seeded["seed: pending, a wrong PIN"][0]
    assert (
        db.call("approval_pin_try", id=pin_id, correct=False, max_tries=5, actor="Bob", request_id=None)["failures"]
        == 2
    )
    decided = db.call(
        "decide_action",
        id=pin_id,
        decision="approve",
        actor="Bob",
        reason=None,
        modifications=None,
        expected_hash=None,
        request_id=None,
        channel="link",
    )
    assert (decided["status"], decided["decided_via"]) == ("approved", "link")


def the_rest_goes_on(db: Database, owner: psycopg.Connection) -> None:
    hits = db.call(
        "search_memory",
        query="refunds",
        mode="fts",
        embedding=None,
        kinds=["kb"],
        since=None,
        limit=5,
        candidates=30,
        fts_weight=1.0,
        vector_weight=1.0,
        rrf_k=60,
        ef_search=100,
        fts_rank_limit=200,
        include_content=False,
    )
    assert [h["source_id"] for h in hits["results"]] == ["handbook/refunds"]
    picked = db.call(
        "agent_sources_pick",
        agent="support",
        limit=5,
        sources=[
            {
                "ref": "ticket-1",
                "skipped_as": ["v1"],
                "source_prefix": "support/ticket-1/",
                "input_prefix": "support/ticket-1/v1/",
            }
        ],
    )
    assert picked == {"handled": 1, "picked": []}
    call_id = owner.execute("select id from llm_calls where outcome = 'reserved'").fetchone()[0]
    assert (
        db.call(
            "llm_settle",
            call_id=call_id,
            outcome="ok",
            input_tokens=10,
            output_tokens=5,
            cache_creation_input_tokens=0,
            cache_read_input_tokens=0,
            cost_usd="0.01",
            latency_ms=5,
            error=None,
        )["outcome"]
        == "ok"
    )
    assert db.call("take_maintenance_lease", name="prune", holder="upgrade", seconds=60)["taken"] is True
    assert db.call("take_rate_slot", bucket="hubspot", limit=100, window_seconds=10)["granted"] is True
    now_ms = int(owner.execute("select extract(epoch from db_now()) * 1000").fetchone()[0])
    webhook = db.call(
        "record_hubspot_webhook",
        delivery_hash="after-upgrade",
        signed_at_ms=now_ms,
        window_seconds=300,
        events=[],
        set_aside=[{"index": 0, "reason": "not HubSpot's shape", "raw": "{}"}],
    )
    assert (webhook["accepted"], webhook["received"]) == (True, 1)
