"""The everyday flows on a Supabase-shaped database (tests/supabase_shape.py), over the two ways
production reaches it:

- rest: the real supabase-py client (SupabaseTransport) against the REST stand-in
  (tests/postgrest_on_supabase.py), which runs every call as `service_role` through
  `authenticator`, with its 8 s statement timeout, as PostgREST does;
- pooler: the psycopg pool (PostgresTransport) as Supabase's `postgres` (the schema's owner)
  through pgbouncer in transaction mode, as Supabase's transaction pooler on port 6543.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.approvals.batch import DecisionBatch
from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.core.database import Database, PostgresTransport, SupabaseTransport, open_async
from app.core.errors import Conflict
from app.core.models import ActionRequest, DecisionRequest, Impact, Status
from app.core.settings import Settings
from app.memory.models import MemoryItem
from app.memory.store import MemoryStore
from app.reports.build import DailyReports
from tests.conftest import make_settings
from tests.memory_fakes import WordTopicEmbedder
from tests.pgbouncer import Pgbouncer
from tests.postgrest_on_supabase import SERVICE_KEY, PostgrestOnSupabase
from tests.report_seed import DAY, EXPECTED_TOTALS, seed
from tests.supabase_shape import API_STATEMENT_TIMEOUT, OWNER, SupabaseShape

COUNTS = ("drafted", "auto_run", "approved", "modified", "rejected", "expired", "succeeded", "failed", "unknown")


@pytest.fixture
def standin(supabase: SupabaseShape, supabase_db: str) -> Iterator[PostgrestOnSupabase]:
    server = PostgrestOnSupabase(supabase.authenticator_uri(supabase_db))
    yield server
    server.close()


@pytest.fixture(params=["rest", "pooler"])
def sb(request: pytest.FixtureRequest, supabase: SupabaseShape, supabase_db: str) -> Iterator[Database]:
    if request.param == "rest":
        server = request.getfixturevalue("standin")
        database = Database(SupabaseTransport(server.url, SERVICE_KEY))
    else:
        bouncer: Pgbouncer = request.getfixturevalue("pgbouncer")
        database = Database(PostgresTransport(bouncer.uri(supabase_db, OWNER), max_size=8))
    yield database
    database.close()


@pytest.fixture
def owner_sql(supabase: SupabaseShape, supabase_db: str) -> Iterator[psycopg.Connection]:
    """The project's SQL editor: the schema's owner, for moving the test clock and looking."""
    with psycopg.connect(supabase.owner_uri(supabase_db), autocommit=True) as conn:
        yield conn


@pytest.fixture
def sb_settings(tmp_path: Path) -> Settings:
    return make_settings(
        opsdesk_data_dir=tmp_path,
        approval_ttl_hours_medium=2,
        llm_daily_budget_usd=5,
        brevo_daily_limit=300,
        brevo_transactional_reserve=30,
        embeddings_provider="none",
    )


def test_an_api_call_runs_as_service_role_with_supabases_timeout(standin: PostgrestOnSupabase) -> None:
    with standin.as_role() as conn:
        assert conn.execute(
            "select current_user, session_user, current_setting('statement_timeout'), current_setting('lock_timeout')"
        ).fetchone() == ("service_role", "authenticator", API_STATEMENT_TIMEOUT, "8s")


def test_the_queue_decides_and_runs_once(sb: Database, sb_settings: Settings) -> None:
    queue = ApprovalQueue(sb, sb_settings)
    note = ActionRequest(
        agent="ops",
        kind="note.record",
        summary="call back",
        reasoning="asked",
        payload={"body": "Call Ann back"},
        impact=Impact(recipients=120),
    )
    approved = queue.submit(note, actor="test")
    rejected = queue.submit(note.model_copy(update={"summary": "second"}), actor="test")
    assert approved.status == Status.PENDING and approved.risk_tier.value == "MEDIUM"
    queue.decide(approved.id, DecisionRequest(decision="approve"), actor="ann", channel="api")
    queue.decide(rejected.id, DecisionRequest(decision="reject", reason="not now"), actor="ann", channel="api")
    with pytest.raises(Conflict):
        queue.decide(rejected.id, DecisionRequest(decision="approve"), actor="bob", channel="api")
    executor = Executor(sb, sb_settings)
    try:
        assert executor.run_until_idle() == 1
        assert executor.run_until_idle() == 0
    finally:
        executor.close()
    done = queue.get(approved.id)
    assert done["status"] == "succeeded"
    assert [entry["event"] for entry in done["audit"]][:2] == ["submitted", "decided"]
    assert queue.get(rejected.id)["status"] == "rejected"


def test_the_apis_grouped_decisions_through_the_pooler(
    supabase: SupabaseShape, supabase_db: str, pgbouncer: Pgbouncer, sb_settings: Settings
) -> None:
    """The decision endpoint's group commit (app.approvals.batch) on the async pool, through
    pgbouncer in transaction mode as the schema's non-superuser owner: one statement per call."""
    db = Database(PostgresTransport(pgbouncer.uri(supabase_db, OWNER), max_size=8))
    queue = ApprovalQueue(db, sb_settings)
    note = ActionRequest(
        agent="ops",
        kind="note.record",
        summary="call back",
        payload={"body": "Call Ann"},
        impact=Impact(recipients=120),
    )
    ids = [queue.submit(note.model_copy(update={"summary": f"call {n}"}), actor="test").id for n in range(6)]

    async def decide_all() -> list[object]:
        adb = await open_async(db)
        assert adb is not None
        batch = DecisionBatch(adb)
        try:
            return await asyncio.gather(
                *(
                    batch.decide(
                        action_id, decision="approve", actor="api:ann", reason=None, channel="api", request_id=None
                    )
                    for action_id in [*ids, ids[0]]
                ),
                return_exceptions=True,
            )
        finally:
            await adb.close()

    try:
        answers = asyncio.run(decide_all())
    finally:
        db.close()
    assert [answer["status"] for answer in answers[:-1]] == ["approved"] * 6  # type: ignore[index]
    assert isinstance(answers[-1], Conflict)


def test_the_daily_report_counts_the_seeded_day(
    sb: Database, owner_sql: psycopg.Connection, sb_settings: Settings
) -> None:
    seed(sb, owner_sql, sb_settings)
    stored = DailyReports(sb, sb_settings).build_and_store(DAY)
    assert stored.body["totals"] == {key: EXPECTED_TOTALS.get(key, 0) for key in COUNTS}
    assert owner_sql.execute("select count(*) from memory where kind = 'report'").fetchone() == (1,)


def test_memory_embeds_searches_and_reindexes(
    sb: Database, sb_settings: Settings, owner_sql: psycopg.Connection
) -> None:
    old = WordTopicEmbedder("topics-v1", 8)
    sb.call("configure_memory", model=old.spec.name, dimension=8, reset=False, indexed_kinds=["ticket"])
    store = MemoryStore(sb, sb_settings, embedder=old)
    store.upsert(
        [
            MemoryItem(kind="kb_article", source="kb", source_id="ship", content="Parcels ship by courier."),
            MemoryItem(kind="kb_article", source="kb", source_id="refund", content="Refunds take a week."),
            MemoryItem(kind="ticket", source="hubspot", source_id="t1", content="My parcel never arrived"),
        ]
    )
    assert store.embed_pending().embedded == 3
    assert store.maintain_indexes().state == "done"
    hybrid = store.search("courier delivery", mode="hybrid")
    assert hybrid.mode == "hybrid" and hybrid.results[0].source_id == "ship"
    assert [hit.source_id for hit in store.search("delivery", mode="vector", kinds=["ticket"]).results] == ["t1"]

    new = WordTopicEmbedder("topics-v2", 12)
    report = MemoryStore(sb, sb_settings, embedder=new).reindex()
    assert report.embedded == 3 and not report.resumed
    stats = sb.call("memory_stats")
    assert (stats["model"], stats["column_dimension"], stats["to_embed"], stats["reindex_started_at"]) == (
        "local/topics-v2",
        12,
        0,
        None,
    )
    # the shared index covers every row, a kind's index only its rows (MEMORY_VECTOR_INDEX_KINDS)
    predicates = dict(
        owner_sql.execute(
            "select c.relname, pg_get_expr(i.indpred, i.indrelid) "
            "from pg_index i join pg_class c on c.oid = i.indexrelid "
            "where c.relname like 'memory_embedding_hnsw%'"
        ).fetchall()
    )
    assert predicates == {"memory_embedding_hnsw": None} | {
        f"memory_embedding_hnsw_{kind}": f"(kind = '{kind}'::text)" for kind in sb_settings.memory_vector_index_kinds
    }
    assert MemoryStore(sb, sb_settings, embedder=new).search("parcel", mode="vector").results[0].source_id in (
        "ship",
        "t1",
    )
