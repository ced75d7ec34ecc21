"""Memory on real PostgreSQL + pgvector: full-text syntax, vector and hybrid ranking, filters,
re-imports, the actions trigger, the model check at start-up, reindexing, retention, and the
same functions over Supabase's REST shape."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.approvals.executor import Executor
from app.approvals.queue import ApprovalQueue
from app.core.database import Database, SupabaseTransport
from app.core.errors import InvalidInput
from app.core.models import ActionRequest, DecisionRequest, Impact
from app.core.settings import Settings
from app.memory.models import EmbeddingsMismatch, MemoryItem, VectorSearchUnavailable
from app.memory.retention import prune
from app.memory.sources import import_files, sync_knowledge_base
from app.memory.store import MemoryStore, check_embeddings
from app.runtime.database import open_database
from integrations.notion import KBPage
from tests.conftest import advance_clock, make_settings
from tests.memory_fakes import WordTopicEmbedder

DOCS = {
    "shipping.md": (
        "Shipping times",
        "Orders ship within two business days. Standard shipping arrives in "
        "three to five business days; express in one.",
    ),
    "refunds.md": ("Refund policy", "Our refund policy: we refund unused items within 30 days of purchase."),
    "warranty.md": ("Warranty", "Every kettle carries a two year warranty against manufacturing defects."),
    "policy-notes.md": ("Policy notes", "A policy for staff: refund requests go to the owner, never to the courier."),
}


KIND_INDEXES = ["decision", "feedback", "kb_article", "report", "ticket"]  # MEMORY_VECTOR_INDEX_KINDS' default


def items(docs: dict[str, tuple[str, str]] = DOCS, kind: str = "kb_article") -> list[MemoryItem]:
    return [
        MemoryItem(kind=kind, source="file", source_id=name, title=title, content=content)
        for name, (title, content) in docs.items()
    ]


def ids(answer: Any) -> list[str]:
    return [hit.source_id for hit in answer.results]


@pytest.fixture
def fts_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none")


@pytest.fixture
def fts_store(db: Database, fts_settings: Settings) -> MemoryStore:
    store = MemoryStore(db, fts_settings)
    store.upsert(items())
    return store


@pytest.fixture
def fake() -> WordTopicEmbedder:
    return WordTopicEmbedder()


@pytest.fixture
def vector_store(db: Database, fts_settings: Settings, fake: WordTopicEmbedder) -> MemoryStore:
    db.call("configure_memory", model=fake.spec.name, dimension=fake.spec.dimension, reset=False)
    store = MemoryStore(db, fts_settings, embedder=fake)
    store.upsert(items())
    store.embed_pending()
    return store


@pytest.fixture
def local_store(db: Database, database_url: str, tmp_path: Path) -> MemoryStore:
    settings = make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="local")
    check_embeddings(db, settings)
    store = MemoryStore(db, settings)
    store.upsert(items())
    store.embed_pending()
    return store


# --- full text ---------------------------------------------------------------------------------
def test_an_exact_phrase_finds_only_the_words_side_by_side(fts_store: MemoryStore) -> None:
    answer = fts_store.search('"refund policy"', mode="fts")
    assert ids(answer) == ["refunds.md"]  # policy-notes.md has both words, apart
    assert set(ids(fts_store.search("refund policy", mode="fts"))) == {"refunds.md", "policy-notes.md"}
    assert answer.results[0].fts_rank == 1 and answer.results[0].vector_rank is None


def test_stemming_matches_other_forms_of_a_word(fts_store: MemoryStore) -> None:
    assert ids(fts_store.search("shipped", mode="fts")) == ["shipping.md"]
    assert ids(fts_store.search("refunding", mode="fts"))[0] == "refunds.md"
    hit = fts_store.search("shipped", mode="fts").results[0]
    assert "<mark>ship</mark>" in hit.snippet and "<mark>shipping</mark>" in hit.snippet


def test_a_trailing_star_makes_the_last_word_a_prefix(fts_store: MemoryStore) -> None:
    assert ids(fts_store.search("warr", mode="fts")) == []
    assert ids(fts_store.search("warr*", mode="fts")) == ["warranty.md"]
    assert ids(fts_store.search("kettle manufact*", mode="fts")) == ["warranty.md"]
    assert fts_store.search("kettle manufact*", mode="fts").fts_query == "'kettl' & 'manufact':*"
    assert ids(fts_store.search("deliveries*", mode="fts")) == []  # stemmed like the documents: 'deliveri'


def test_query_text_cannot_inject_tsquery_syntax(fts_store: MemoryStore) -> None:
    for query in ["ship & | ! ( ) :*", "ship:* | !x*", "'; drop table memory; --*", "a & b:*", "(((", "*"]:
        fts_store.search(query, mode="fts")  # no syntax error, whatever the text
    assert fts_store.search("ship:*|refund*", mode="fts").fts_query == "'ship' & 'refund':*"


def test_websearch_or_and_negation(fts_store: MemoryStore) -> None:
    assert set(ids(fts_store.search("warranty or express", mode="fts"))) == {"warranty.md", "shipping.md"}
    assert ids(fts_store.search("refund -courier", mode="fts")) == ["refunds.md"]


def test_stop_words_and_no_match_are_explained(fts_store: MemoryStore) -> None:
    answer = fts_store.search("the and of", mode="hybrid")
    assert answer.mode == "fts" and answer.results == [] and answer.fts_query == ""
    assert any("stop words" in notice for notice in answer.notices)
    answer = fts_store.search("zeppelin", mode="hybrid")
    assert answer.results == []
    assert any("EMBEDDINGS_PROVIDER is none" in notice for notice in answer.notices)
    assert any("no memory contains these words" in notice for notice in answer.notices)


def test_without_embeddings_hybrid_falls_back_and_vector_is_refused(fts_store: MemoryStore) -> None:
    answer = fts_store.search("refund")
    assert (answer.requested_mode, answer.mode, answer.embeddings) == ("hybrid", "fts", None)
    assert answer.notices and "full-text results only" in answer.notices[0]
    with pytest.raises(VectorSearchUnavailable, match="EMBEDDINGS_PROVIDER is none"):
        fts_store.search("refund", mode="vector")


def test_snippets_are_html_escaped_with_only_mark_tags(fts_store: MemoryStore) -> None:
    fts_store.upsert(
        [
            MemoryItem(
                kind="ticket",
                source="hubspot",
                source_id="t1",
                content="Refund me now <script>alert(1)</script> & fast",
            )
        ]
    )
    hit = fts_store.search("refund", kinds=["ticket"], mode="fts").results[0]
    assert hit.snippet == "<mark>Refund</mark> me now &lt;script&gt;alert(1)&lt;/script&gt; &amp; fast"


def test_bad_search_input_is_refused(fts_store: MemoryStore) -> None:
    for kwargs in ({"limit": 0}, {"limit": 101}, {"kinds": ["Not A Kind"]}):
        with pytest.raises(InvalidInput):
            fts_store.search("refund", **kwargs)
    with pytest.raises(InvalidInput):
        fts_store.search("   ")


def test_very_common_words_rank_only_the_most_recent_matches(db: Database, database_url: str, tmp_path: Path) -> None:
    def store(limit: int) -> MemoryStore:
        return MemoryStore(
            db,
            make_settings(
                database_url=database_url,
                opsdesk_data_dir=tmp_path,
                embeddings_provider="none",
                memory_fts_rank_limit=limit,
            ),
        )

    start = datetime(2026, 1, 1, tzinfo=UTC)
    store(100).upsert(
        [
            MemoryItem(
                kind="note", source="test", source_id="oldest", content="kettle kettle kettle kettle", occurred_at=start
            )
        ]
        + [
            MemoryItem(
                kind="note",
                source="test",
                source_id=f"n{n}",
                content=f"a kettle, order {n}",
                occurred_at=start + timedelta(hours=n + 1),
            )
            for n in range(150)
        ]
    )
    limited = store(100).search("kettle", mode="fts", limit=100)
    assert limited.fts_limited and "oldest" not in ids(limited)
    assert {hit.source_id for hit in limited.results} == {f"n{n}" for n in range(50, 150)}
    assert any("very common" in notice for notice in limited.notices)
    full = store(1000).search("kettle", mode="fts")
    assert not full.fts_limited and ids(full)[0] == "oldest"


# --- filters -----------------------------------------------------------------------------------
def test_filters_by_kind_and_date(db: Database, fts_store: MemoryStore, sql: psycopg.Connection) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    fts_store.upsert(
        [
            MemoryItem(kind="ticket", source="hubspot", source_id="7", content="Where is my refund?", occurred_at=old),
            MemoryItem(
                kind="decision", source="decision", source_id="a1", content="Rejected: refund offer too generous"
            ),
        ]
    )
    assert set(ids(fts_store.search("refund", mode="fts", kinds=["ticket", "decision"]))) == {"7", "a1"}
    assert ids(fts_store.search("refund", mode="fts", kinds=["ticket"])) == ["7"]
    recent = fts_store.search("refund", mode="fts", since=datetime.now(UTC) - timedelta(days=1))
    assert "7" not in ids(recent) and "a1" in ids(recent)
    assert "7" in ids(fts_store.search("refund", mode="fts", since=(old - timedelta(days=1)).date()))


def test_vector_search_applies_filters_inside_the_index_scan(vector_store: MemoryStore) -> None:
    vector_store.upsert(
        [
            MemoryItem(kind="ticket", source="hubspot", source_id=f"t{n}", content=f"Parcel {n} did not arrive")
            for n in range(30)
        ]
    )
    vector_store.embed_pending()
    answer = vector_store.search("courier delivery", mode="vector", kinds=["kb_article"], limit=3)
    assert ids(answer)[0] == "shipping.md" and {hit.kind for hit in answer.results} == {"kb_article"}
    assert len(answer.results) == 3  # iterative scan: the 30 closer tickets do not starve the filter


# --- vector and hybrid (deterministic vectors) ---------------------------------------------------
def test_vector_search_ranks_by_meaning(vector_store: MemoryStore) -> None:
    answer = vector_store.search("parcel courier", mode="vector")  # no document word matches
    assert answer.mode == "vector" and answer.embeddings == "local/word-topics"
    assert ids(answer)[0] == "shipping.md"
    assert answer.results[0].vector_rank == 1 and answer.results[0].fts_rank is None
    assert answer.results[0].similarity == pytest.approx(1.0, abs=0.01)


def test_hybrid_puts_the_row_found_by_both_methods_first(vector_store: MemoryStore) -> None:
    vector_store.upsert(
        [
            # the closest by meaning (delivery words only) but without the query's words
            MemoryItem(kind="note", source="test", source_id="meaning", content="Couriers deliver parcels fast"),
            # both query words, far apart, about billing
            MemoryItem(
                kind="note",
                source="test",
                source_id="words",
                content="Business cards for the billing desk: invoice, payment and pay slips, then the shipping labels",
            ),
        ]
    )
    vector_store.embed_pending()
    answer = vector_store.search("shipping business", mode="hybrid")
    ranks = {hit.source_id: (hit.fts_rank, hit.vector_rank) for hit in answer.results}
    assert ranks["meaning"] == (None, 1) and ranks["words"][0] is not None
    first = answer.results[0]
    assert first.source_id == "shipping.md", ranks
    assert first.fts_rank == 1 and first.vector_rank == 2
    assert first.score == pytest.approx(1 / 61 + 1 / 62)
    assert [hit.source_id for hit in answer.results[1:3]] == ["words", "meaning"]


def test_hybrid_without_a_word_match_still_answers_by_meaning(vector_store: MemoryStore) -> None:
    answer = vector_store.search("parcel courier")
    assert answer.mode == "hybrid" and ids(answer)[0] == "shipping.md"
    assert answer.fts_candidates == 0
    assert any("by meaning only" in notice for notice in answer.notices)


# --- the real local model ------------------------------------------------------------------------
def test_a_paraphrase_with_no_shared_word_finds_the_shipping_page(local_store: MemoryStore) -> None:
    query = "how long does delivery take"
    assert ids(local_store.search(query, mode="fts")) == []
    vector = local_store.search(query, mode="vector")
    assert ids(vector)[0] == "shipping.md" and vector.embeddings == "local/all-MiniLM-L6-v2-int8"
    hybrid = local_store.search(query, mode="hybrid")
    assert ids(hybrid)[0] == "shipping.md"
    assert hybrid.results[0].vector_rank == 1 and hybrid.results[0].fts_rank is None


def test_hybrid_with_the_local_model_prefers_rows_both_methods_found(local_store: MemoryStore) -> None:
    answer = local_store.search("refund policy", mode="hybrid")
    first = answer.results[0]
    assert (first.source_id, first.fts_rank, first.vector_rank) == ("refunds.md", 1, 1)
    by_one_method = [hit for hit in answer.results if hit.fts_rank is None or hit.vector_rank is None]
    assert by_one_method and all(hit.score < first.score for hit in answer.results[1:])


# --- writing and embedding -----------------------------------------------------------------------
def test_reimporting_a_file_updates_its_one_row(
    fts_store: MemoryStore, sql: psycopg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "kb"
    (folder / "sub").mkdir(parents=True)
    (folder / "faq.md").write_text("# Opening hours\n\nWe open at 9 AM Phoenix time.\n")
    (folder / "sub" / "notes.txt").write_text("Kettles come in red and blue.\n")
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD.md").write_text("ref: main")
    first = import_files(fts_store, folder)
    assert (first.created, first.updated, first.unchanged) == (2, 0, 0) and list(first.skipped) == ["image.png"]
    again = import_files(fts_store, folder)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    (folder / "faq.md").write_text("# Opening hours\n\nWe open at 8 AM Phoenix time.\n")
    changed = import_files(fts_store, folder / "faq.md")  # a single file: named relative to its folder
    assert (changed.created, changed.updated) == (0, 1)
    rows = sql.execute(
        "select source_id, title, content from memory where source = 'file' and "
        "source_id in ('faq.md', 'sub/notes.txt') order by source_id"
    ).fetchall()
    assert rows == [
        ("faq.md", "Opening hours", "# Opening hours\n\nWe open at 8 AM Phoenix time.\n"),
        ("sub/notes.txt", "notes", "Kettles come in red and blue.\n"),
    ]
    with pytest.raises(InvalidInput, match="does not exist"):
        import_files(fts_store, folder / "missing")


def test_new_text_needs_a_new_vector_and_unchanged_text_keeps_it(
    vector_store: MemoryStore,
    fake: WordTopicEmbedder,
    sql: psycopg.Connection,
) -> None:
    assert vector_store.stats()["to_embed"] == 0
    vector_store.upsert(items())  # the same text: nothing changes, nothing to embed
    assert vector_store.stats()["to_embed"] == 0
    title, content = DOCS["warranty.md"]
    vector_store.upsert(
        [
            MemoryItem(
                kind="kb_article",
                source="file",
                source_id="warranty.md",
                title=title,
                content=content + " Repairs are free.",
            )
        ]
    )
    assert sql.execute(
        "select embedding is null, embedding_model from memory where source_id = 'warranty.md'"
    ).fetchone() == (True, None)
    fake.calls.clear()
    report = vector_store.embed_pending()
    assert report.embedded == 1 and len(fake.calls) == 1 and "Repairs are free" in fake.calls[0][0]
    assert sql.execute("select embedding_model from memory where source_id = 'warranty.md'").fetchone() == (
        "local/word-topics",
    )


def test_a_vector_for_text_that_changed_meanwhile_is_dropped(vector_store: MemoryStore, db: Database) -> None:
    vector_store.upsert([MemoryItem(kind="note", source="test", source_id="n1", content="first words")])
    claimed = db.call("claim_memory_to_embed", limit=10, lease_seconds=60)
    assert [row["content"] for row in claimed] == ["first words"]
    assert db.call("claim_memory_to_embed", limit=10, lease_seconds=60) == []  # claimed: not handed out twice
    vector_store.upsert([MemoryItem(kind="note", source="test", source_id="n1", content="second words")])
    stored = db.call(
        "set_memory_embeddings",
        model="local/word-topics",
        items=[{"id": claimed[0]["id"], "hash": claimed[0]["hash"], "embedding": [0.1] * 8}],
    )
    assert stored == {"stored": 0, "stale": 1}
    db.call("release_memory_claims", ids=[claimed[0]["id"]])
    assert vector_store.embed_pending().embedded == 1


def test_embeddings_of_another_size_or_model_are_refused(vector_store: MemoryStore, db: Database) -> None:
    row = db.call("claim_memory_to_embed", limit=1, lease_seconds=60)
    assert row == []  # everything is embedded
    with pytest.raises(InvalidInput, match="8 numbers"):
        db.call("set_memory_embeddings", model="local/word-topics", items=[{"id": 1, "hash": "x", "embedding": [1, 2]}])
    with pytest.raises(Exception, match="configured for local/word-topics"):
        db.call("set_memory_embeddings", model="openai/other", items=[])


def test_tickets_have_their_own_rows(fts_store: MemoryStore, sql: psycopg.Connection) -> None:
    # daily reports reach memory from store_daily_report: tests/test_daily_report.py
    from app.memory.models import TicketMemory

    fts_store.remember_ticket(
        TicketMemory(
            id="881", subject="Kettle leaks", body="My kettle leaks water.", requester="pat@example.com", status="open"
        )
    )
    assert sql.execute("select kind, source, source_id from memory where kind = 'ticket'").fetchall() == [
        ("ticket", "hubspot", "881")
    ]
    assert ids(fts_store.search("leaking kettle", mode="fts")) == ["881"]


# --- what the actions trigger records ---------------------------------------------------------------
def test_decisions_and_executed_actions_are_remembered(
    db: Database, fts_settings: Settings, sql: psycopg.Connection
) -> None:
    queue = ApprovalQueue(db, fts_settings)
    rejected = queue.submit(
        ActionRequest(
            agent="marketing",
            kind="note.record",
            summary="Announce the sale",
            payload={"body": "50% off everything"},
            impact=Impact(recipients=120),
        ),
        actor="test",
    )
    queue.decide(
        rejected.id,
        DecisionRequest(decision="reject", reason="too pushy for our customers"),
        actor="ann",
        channel="link",
    )
    ran = queue.submit(
        ActionRequest(
            agent="ops",
            kind="note.record",
            summary="Log the call",
            payload={"body": "Called ACME about the <b>late</b> parcel"},
        ),
        actor="test",
    )
    Executor(db, fts_settings).run_until_idle()

    rows = {
        row[0]: row[1:]
        for row in sql.execute(
            "select source_id, kind, source, content, metadata from memory where source in ('action', 'decision')"
        )
    }
    kind, source, content, metadata = rows[str(rejected.id)]
    assert (kind, source) == ("decision", "decision")
    assert "Decision: rejected by ann" in content and "Reason: too pushy for our customers" in content
    assert metadata["decision"] == "rejected" and metadata["agent"] == "marketing"
    kind, source, content, _ = rows[str(ran.id)]
    assert (kind, source) == ("note", "action") and "body: Called ACME about the late parcel" in content
    store = MemoryStore(db, fts_settings)
    assert ids(store.search("pushy", mode="fts", kinds=["decision"])) == [str(rejected.id)]


def test_an_edit_then_approval_is_remembered_with_its_edits(
    db: Database, fts_settings: Settings, sql: psycopg.Connection
) -> None:
    queue = ApprovalQueue(db, fts_settings)
    action = queue.submit(
        ActionRequest(
            agent="support",
            kind="note.record",
            summary="Reply about the kettle",
            payload={"body": "We will refund the kettle"},
            impact=Impact(recipients=120),
        ),
        actor="test",
    )
    queue.decide(
        action.id,
        DecisionRequest(decision="modify", modifications={"body": "We will repair the kettle"}),
        actor="ann",
        channel="link",
    )
    Executor(db, fts_settings).run_until_idle()
    rows = dict(sql.execute("select source, content from memory where source_id = %s", (str(action.id),)).fetchall())
    assert "Decision: modified by ann" in rows["decision"]
    assert "Edits:\n- body: We will refund the kettle -> We will repair the kettle" in rows["decision"]
    assert "body: We will repair the kettle" in rows["action"]  # what ran is the edited draft
    store = MemoryStore(db, fts_settings)
    assert ids(store.search("refund", mode="fts", kinds=["decision"])) == [str(action.id)]


def test_a_huge_campaign_is_remembered_in_brief(db: Database, fts_settings: Settings, sql: psycopg.Connection) -> None:
    count = 40_000
    words = " ".join(f"paragraph{n}" for n in range(30_000))  # every word unique: the costliest text to index
    payload = {
        "subject": "Winter sale",
        "html": f"<h1>Winter sale</h1><p>{words}</p>",
        "text": words,
        "recipients": [
            {"email": f"customer{n:05d}@example.com", **({"name": "Pat Lee"} if n == 0 else {})} for n in range(count)
        ],
    }
    queue = ApprovalQueue(db, fts_settings)
    action = queue.submit(
        ActionRequest(
            agent="marketing",
            kind="email.campaign",
            summary="Winter sale to everyone",
            payload=payload,
            impact=Impact(recipients=count),
        ),
        actor="test",
    )
    queue.decide(action.id, DecisionRequest(decision="reject", reason="too many at once"), actor="ann", channel="link")
    [(content,)] = sql.execute(
        "select content from memory where source = 'decision' and source_id = %s", (str(action.id),)
    ).fetchall()
    assert len(content) <= 100_002
    assert (
        "recipients: Pat Lee <customer00000@example.com>, customer00001@example.com, customer00002@example.com, "
        "customer00003@example.com, customer00004@example.com … and 39995 more (40000 in all)"
    ) in content
    assert "customer00005@example.com" not in content
    assert "html: Winter sale paragraph0 paragraph1" in content and "<p>" not in content
    html = next(line for line in content.splitlines() if line.startswith("html: "))
    assert len(html) <= len("html: ") + 20_002 and html.endswith(" …")
    store = MemoryStore(db, fts_settings)
    assert ids(store.search("too many at once", mode="fts", kinds=["decision"])) == [str(action.id)]


def test_a_failing_memory_write_never_blocks_the_action(
    db: Database, fts_settings: Settings, sql: psycopg.Connection
) -> None:
    sql.execute("alter table memory add constraint refuse_all check (false) not valid")
    warnings: list[str] = []
    sql.add_notice_handler(lambda diag: warnings.append(diag.message_primary or ""))
    queue = ApprovalQueue(db, fts_settings)
    action = queue.submit(
        ActionRequest(
            agent="ops", kind="note.record", summary="n", payload={"body": "b"}, impact=Impact(recipients=120)
        ),
        actor="test",
    )
    sql.execute("select decide_action(%s, 'reject', 'ann', 'no', null, null, null, p_channel => 'link')", (action.id,))
    assert sql.execute("select status from actions where id = %s", (action.id,)).fetchone() == ("rejected",)
    assert any("memory could not record action" in warning for warning in warnings)
    assert sql.execute("select count(*) from memory").fetchone() == (0,)


# --- one model per deployment ----------------------------------------------------------------------
def test_start_up_fixes_the_model_then_refuses_another(
    database_url: str, tmp_path: Path, sql: psycopg.Connection
) -> None:
    local = make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        embeddings_provider="openai",
        openai_api_key="sk-test-0123456789",
        embeddings_dimension=384,
        embeddings_model="text-embedding-3-small",
    )
    with open_database(local) as db:
        assert db.call("memory_settings") == {
            "model": "openai/text-embedding-3-small",
            "dimension": 384,
            "column_dimension": 384,
            "index": True,
            "kind_indexes": KIND_INDEXES,
        }
    other = make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        embeddings_provider="voyage",
        voyage_api_key="pa-test-0123456789",
    )
    with (
        pytest.raises(
            EmbeddingsMismatch,
            match=r"openai/text-embedding-3-small \(384 dimensions\).*"
            r"voyage/voyage-3.5 \(1024 dimensions\).*opsdesk memory reindex",
        ),
        open_database(other),
    ):
        pass
    with open_database(other, check_memory=False):  # what `opsdesk memory reindex` does
        pass
    none = make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none")
    with open_database(none):  # no provider: full-text search, nothing to compare
        pass
    # the column itself has the dimension: pgvector refuses any other size on write
    with pytest.raises(psycopg.errors.DataException, match="expected 384 dimensions"):
        sql.execute(
            "insert into memory (kind, source, source_id, content, embedding) "
            "values ('note', 'x', '1', 'y', %s::text::vector)",
            ("[1,2,3]",),
        )


def test_kinds_get_their_own_hnsw_index_and_a_kind_filter_uses_it(
    db: Database,
    fts_settings: Settings,
    fake: WordTopicEmbedder,
    sql: psycopg.Connection,
) -> None:
    configure = {"model": fake.spec.name, "dimension": fake.spec.dimension, "reset": False}
    assert db.call("configure_memory", **configure, indexed_kinds=["ticket", "decision"])["kind_indexes"] == [
        "decision",
        "ticket",
    ]
    assert db.call("configure_memory", **configure)["kind_indexes"] == ["decision", "ticket"]  # null: kept
    assert db.call("configure_memory", **configure, indexed_kinds=["ticket"])["kind_indexes"] == ["ticket"]
    with pytest.raises(InvalidInput, match="lower-case"):
        db.call("configure_memory", **configure, indexed_kinds=["Ticket; drop table memory"])
    store = MemoryStore(db, fts_settings, embedder=fake)
    store.upsert(
        items()
        + [
            MemoryItem(kind="ticket", source="hubspot", source_id=f"t{n}", content=f"Invoice {n} was charged twice")
            for n in range(5)
        ]
    )
    store.embed_pending()
    answer = store.search("courier parcel", mode="vector", kinds=["ticket"])  # far from every ticket
    assert sorted(ids(answer)) == [f"t{n}" for n in range(5)]
    # the statement search_memory runs for a one-kind filter, as planned with the kind's value
    with sql.transaction():
        sql.execute("set local enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in sql.execute(
                "explain select m.id from memory m where m.embedding is not null and m.kind = any ('{ticket}'::text[]) "
                "order by m.embedding <=> %s::text::vector limit 30",
                (str(fake.vector("parcel")),),
            )
        )
    assert "memory_embedding_hnsw_ticket" in plan, plan


def test_reindex_moves_every_row_to_the_new_model(
    db: Database, fts_settings: Settings, sql: psycopg.Connection
) -> None:
    old = WordTopicEmbedder("topics-v1", 8)
    db.call("configure_memory", model=old.spec.name, dimension=8, reset=False)
    MemoryStore(db, fts_settings, embedder=old).upsert(items())
    MemoryStore(db, fts_settings, embedder=old).embed_pending()
    new = WordTopicEmbedder("topics-v2", 12)
    with pytest.raises(Exception, match="topics-v1"):
        db.call("configure_memory", model=new.spec.name, dimension=12, reset=False)
    totals: list[int] = []
    done: list[int] = []
    report = MemoryStore(db, fts_settings, embedder=new).reindex(started=totals.append, progress=done.append)
    assert report.embedded == len(DOCS) and totals == [len(DOCS)] and sum(done) == len(DOCS)
    assert db.call("memory_settings") == {
        "model": "local/topics-v2",
        "dimension": 12,
        "column_dimension": 12,
        "index": True,
        "kind_indexes": KIND_INDEXES,
    }
    assert sql.execute("select distinct embedding_model, vector_dims(embedding) from memory").fetchall() == [
        ("local/topics-v2", 12)
    ]
    answer = MemoryStore(db, fts_settings, embedder=new).search("parcel courier", mode="vector")
    assert ids(answer)[0] == "shipping.md"


def test_memory_of_the_former_torch_model_waits_for_a_reindex_to_the_onnx_one(
    db: Database, database_url: str, tmp_path: Path, sql: psycopg.Connection
) -> None:
    """An upgrade: memory embedded by the former `local` extra (sentence-transformers, recorded as
    local/all-MiniLM-L6-v2) meets the default provider now (the int8 ONNX model): near vectors, not
    the same ones, so start-up refuses until `opsdesk memory reindex`, never mixing the two."""
    torch_path = WordTopicEmbedder("all-MiniLM-L6-v2", 384)  # its name and dimension, not its vectors
    db.call("configure_memory", model=torch_path.spec.name, dimension=384, reset=False)
    old_settings = make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none")
    MemoryStore(db, old_settings, embedder=torch_path).upsert(items())
    MemoryStore(db, old_settings, embedder=torch_path).embed_pending()
    default = make_settings(database_url=database_url, opsdesk_data_dir=tmp_path)  # EMBEDDINGS_PROVIDER unset
    with (
        pytest.raises(
            EmbeddingsMismatch,
            match=r"local/all-MiniLM-L6-v2 \(384 dimensions\).*local/all-MiniLM-L6-v2-int8 \(384 dimensions\)"
            r".*opsdesk memory reindex",
        ),
        open_database(default),
    ):
        pass
    report = MemoryStore(db, default).reindex()
    assert report.embedded == len(DOCS)
    assert sql.execute("select distinct embedding_model from memory").fetchall() == [("local/all-MiniLM-L6-v2-int8",)]
    with open_database(default) as reopened:
        answer = MemoryStore(reopened, default).search("how long until my order arrives", mode="vector")
    assert ids(answer)[0] == "shipping.md" and answer.embeddings == "local/all-MiniLM-L6-v2-int8"


# --- Notion --------------------------------------------------------------------------------------
class FakeKnowledgeBase:
    def __init__(self, pages: list[KBPage]) -> None:
        self.pages = pages
        self.fail = False

    def read_kb(self) -> list[KBPage]:
        if self.fail:
            raise RuntimeError("Notion is down")
        return list(self.pages)


def kb_page(page_id: str, title: str, text: str, day: int = 1) -> KBPage:
    return KBPage(
        id=page_id,
        title=title,
        url=f"https://notion.so/{page_id}",
        text=text,
        last_edited=datetime(2026, 11, day, tzinfo=UTC),
    )


def test_notion_sync_updates_pages_and_forgets_deleted_ones(fts_store: MemoryStore, sql: psycopg.Connection) -> None:
    kb = FakeKnowledgeBase([kb_page("p1", "Returns", "Return within 30 days."), kb_page("p2", "Hours", "Open 9 to 5.")])
    first = sync_knowledge_base(fts_store, kb)
    assert (first.pages, first.created, first.removed) == (2, 2, 0)
    kb.pages = [kb_page("p1", "Returns", "Return within 60 days.", day=2)]
    second = sync_knowledge_base(fts_store, kb)
    assert (second.updated, second.removed) == (1, 1)
    assert sql.execute(
        "select source_id, content, metadata->>'url' from memory where source = 'notion'"
    ).fetchall() == [("p1", "Return within 60 days.", "https://notion.so/p1")]
    kb.fail = True
    with pytest.raises(RuntimeError):
        sync_knowledge_base(fts_store, kb)
    assert sql.execute("select count(*) from memory where source = 'notion'").fetchone() == (1,)


# --- retention -----------------------------------------------------------------------------------
def read_archive(path: str) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as archive:
        return [json.loads(line) for line in archive]


def test_prune_archives_expired_rows_before_deleting_them(
    db: Database, database_url: str, tmp_path: Path, sql: psycopg.Connection
) -> None:
    settings = make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        embeddings_provider="none",
        memory_retention_days="ticket=30,note=0",
        audit_retention_days=60,
    )
    store = MemoryStore(db, settings)
    store.upsert(
        [MemoryItem(kind="ticket", source="hubspot", source_id=str(n), content=f"ticket {n}") for n in range(3)]
    )
    store.upsert(
        [
            MemoryItem(kind="note", source="test", source_id="keep", content="kept forever"),
            MemoryItem(kind="decision", source="decision", source_id="d", content="kept 7 years"),
        ]
    )
    sql.execute("insert into audit_log (actor, event) values ('t', 'old event')")
    advance_clock(sql, 45 * 86400)
    store.upsert([MemoryItem(kind="ticket", source="hubspot", source_id="new", content="recent ticket")])
    sql.execute("insert into audit_log (actor, event) values ('t', 'recent event')")
    assert prune(db, settings).archived == {"memory:ticket": 3}
    advance_clock(sql, 20 * 86400)  # the old audit row is now 65 days old, the recent one 20
    report = prune(db, settings)
    assert report.archived == {"audit_log": 1}

    assert sql.execute("select source_id from memory order by source_id").fetchall() == [("d",), ("keep",), ("new",)]
    assert sql.execute("select event from audit_log").fetchall() == [("recent event",)]
    archived = [row for path in (tmp_path / "archive").iterdir() for row in read_archive(str(path))]
    assert sorted(row.get("source_id") or row.get("event") for row in archived) == ["0", "1", "2", "old event"]
    assert {row["content"] for row in archived if "content" in row} == {"ticket 0", "ticket 1", "ticket 2"}
    # the audit log is still append-only for everyone else
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        sql.execute("delete from audit_log")
    with pytest.raises(InvalidInput, match="past their retention"):
        db.call("drop_archived_audit", days=60, cutoff=datetime.now(UTC) + timedelta(days=65), through_id=10**9)


def test_decisions_feedback_and_the_audit_log_are_kept_seven_years_by_default(
    db: Database,
    database_url: str,
    tmp_path: Path,
    sql: psycopg.Connection,
) -> None:
    settings = make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none")
    seven_years = 7 * 365 + 2  # days, with the leap days any seven years hold
    assert settings.memory_retention_days["decision"] == settings.memory_retention_days["feedback"] == seven_years
    assert settings.audit_retention_days == seven_years
    MemoryStore(db, settings).upsert(
        [MemoryItem(kind=kind, source="test", source_id=kind, content=f"a {kind}") for kind in ("decision", "feedback")]
    )
    sql.execute("insert into audit_log (actor, event) values ('t', 'decided')")
    advance_clock(sql, (seven_years - 1) * 86400)
    assert prune(db, settings).archived == {}
    advance_clock(sql, 2 * 86400)
    assert prune(db, settings).archived == {"memory:decision": 1, "memory:feedback": 1, "audit_log": 1}
    assert sql.execute("select count(*) from memory").fetchone() == (0,)


def test_only_one_prune_runs_at_a_time(db: Database, fts_settings: Settings) -> None:
    assert db.call("take_maintenance_lease", name="memory_prune", holder="other", seconds=600)["taken"]
    report = prune(db, fts_settings, holder="me")
    assert report.skipped == "another prune is running (other)" and report.archived == {}


# --- the same functions over Supabase's REST API -------------------------------------------------------
class PostgrestOnPostgres:
    """Just enough PostgREST for `rpc`: POST /rest/v1/rpc/<fn> with a JSON object of arguments runs
    the function the way PostgREST does (json_to_record with the function's own argument types),
    so JSON arrays arrive as PostgREST would hand them to Postgres."""

    def __init__(self, database_url: str) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                function = self.path.rsplit("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = outer.call(function, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.conn = psycopg.connect(database_url, autocommit=True)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def call(self, function: str, body: bytes) -> tuple[int, Any]:
        args = json.loads(body or b"{}")
        with self.lock:
            types = dict(
                self.conn.execute(
                    "select a.name, format_type(a.type, null) from pg_proc p, "
                    "unnest(p.proargnames, p.proargtypes::oid[]) "
                    "as a(name, type) where p.proname = %s",
                    (function,),
                ).fetchall()
            )
            columns = ", ".join(f"{name} {types[name]}" for name in args)
            named = ", ".join(f"{name} := a.{name}" for name in args)
            try:
                row = self.conn.execute(
                    f"select {function}({named}) from jsonb_to_record(%s) as a({columns})", (Jsonb(args),)
                ).fetchone()
            except psycopg.Error as exc:
                return 400, {
                    "code": exc.sqlstate,
                    "message": exc.diag.message_primary,
                    "details": exc.diag.message_detail,
                    "hint": None,
                }
        return 200, row[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.conn.close()


@pytest.fixture
def rest_db(database_url: str) -> Iterator[Database]:
    fake_rest = PostgrestOnPostgres(database_url)
    database = Database(SupabaseTransport(fake_rest.url, "sb_secret_test-0123456789"))
    yield database
    database.close()
    fake_rest.close()


def test_embeddings_and_search_work_over_the_rest_transport(
    rest_db: Database, fts_settings: Settings, fake: WordTopicEmbedder
) -> None:
    rest_db.call("configure_memory", model=fake.spec.name, dimension=fake.spec.dimension, reset=False)
    store = MemoryStore(rest_db, fts_settings, embedder=fake)
    assert store.upsert(items()).created == len(DOCS)
    assert store.embed_pending().embedded == len(DOCS)  # vectors travel as JSON arrays
    answer = store.search("refund courier", mode="hybrid", kinds=["kb_article"], since=datetime(2020, 1, 1, tzinfo=UTC))
    assert ids(answer)[0] == "policy-notes.md" and answer.results[0].fts_rank == 1
    assert ids(store.search("parcel", mode="vector"))[0] == "shipping.md"
    with pytest.raises(InvalidInput, match="8 numbers"):
        rest_db.call(
            "search_memory",
            query="x",
            mode="vector",
            embedding=[1.0, 2.0],
            kinds=None,
            since=None,
            limit=5,
            candidates=10,
            fts_weight=1,
            vector_weight=1,
            rrf_k=60,
            ef_search=40,
            fts_rank_limit=None,
            include_content=False,
        )
