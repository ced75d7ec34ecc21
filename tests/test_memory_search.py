"""Memory search's harder paths on real PostgreSQL + pgvector: how full text finds the newest
matches of a query (the pilot, a scan newest first, the GIN index) checked against a brute-force
answer, websearch operators before a prefix, a kind filter that the HNSW graph alone would
starve, a query embedded by another model, and control characters in a query."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.core.database import Database, schema_sql
from app.core.errors import InvalidInput
from app.core.settings import Settings
from app.memory.models import MAX_CONTENT_CHARS, EmbeddingsMismatch, MemoryItem, TicketMemory
from app.memory.sources import sync_knowledge_base
from app.memory.sql import QueryVector
from app.memory.store import MemoryStore
from app.web import create_app
from integrations.notion import KBPage
from tests.conftest import API_TOKEN, make_settings
from tests.live_server import serve
from tests.memory_fakes import WordTopicEmbedder

ROWS = 3000
RANK_LIMIT = 10  # so the pilot reads the newest 10 x (10 + 1) = 110 rows
START = datetime(2026, 1, 1, tzinfo=UTC)


def words_of(n: int) -> list[str]:
    """Which test words row n holds (row n is n minutes after START; higher n is newer)."""
    newest = n >= ROWS - 110  # the rows the pilot reads
    chosen = {
        "alpha": n % 5 == 0,  # 20%: the pilot alone finds more than enough
        "gamma": n % 12 == 0,  # 8%: too few in the pilot, but reading on finds them soon
        "epsilon": n % 12 == 0 and (newest or n < 600),  # 8% in the pilot, then none for a long way
        "zeta": n in (7, 1500, ROWS - 1),  # rare: the GIN index
        "eta": n % 9 == 0 and 300 <= n < 660,  # only in old rows, more than the limit
    }
    return [word for word, present in chosen.items() if present]


def kind_of(n: int) -> str:
    return "ticket" if n % 3 == 0 else "note"


@pytest.fixture(scope="module")
def rows() -> list[MemoryItem]:
    return [
        MemoryItem(
            kind=kind_of(n),
            source="test",
            source_id=str(n),
            content=" ".join([f"entry number {n}", *words_of(n)]),
            occurred_at=START + timedelta(minutes=n),
        )
        for n in range(ROWS)
    ]


@pytest.fixture
def store(
    db: Database, database_url: str, tmp_path: Path, sql: psycopg.Connection, rows: list[MemoryItem]
) -> MemoryStore:
    settings = make_settings(
        database_url=database_url,
        opsdesk_data_dir=tmp_path,
        embeddings_provider="none",
        memory_fts_rank_limit=RANK_LIMIT,
    )
    memory = MemoryStore(db, settings)
    memory.upsert(rows)
    sql.execute("analyze memory")  # the row count the search prices its two ways with
    return memory


def expected(word: str, kinds: set[str] | None = None) -> tuple[set[str], bool]:
    """Brute force: the newest RANK_LIMIT rows holding the word, and whether there were more."""
    matches = [n for n in range(ROWS) if word in words_of(n) and (kinds is None or kind_of(n) in kinds)]
    newest = sorted(matches, reverse=True)[:RANK_LIMIT]
    return {str(n) for n in newest}, len(matches) > RANK_LIMIT


@pytest.mark.parametrize(
    ("word", "strategy"),
    [
        ("alpha", "newest"),
        ("gamma", "scan"),
        ("epsilon", "index"),
        ("zeta", "index"),
        ("eta", "index"),
    ],
)
def test_full_text_ranks_exactly_the_newest_matches_whichever_way_it_finds_them(
    store: MemoryStore, word: str, strategy: str
) -> None:
    answer = store.search(word, mode="fts", limit=100)
    want, limited = expected(word)
    assert {hit.source_id for hit in answer.results} == want
    assert answer.fts_limited is limited and answer.fts_strategy == strategy


@pytest.mark.parametrize("word", ["alpha", "gamma", "epsilon", "zeta", "eta"])
@pytest.mark.parametrize("kinds", [["ticket"], ["note"], ["ticket", "note"]])
def test_kind_filters_keep_the_newest_matches_of_those_kinds(store: MemoryStore, word: str, kinds: list[str]) -> None:
    answer = store.search(word, mode="fts", kinds=kinds, limit=100)
    want, limited = expected(word, set(kinds))
    assert {hit.source_id for hit in answer.results} == want and answer.fts_limited is limited


def test_a_date_filter_applies_before_the_newest_are_taken(store: MemoryStore) -> None:
    since = START + timedelta(minutes=ROWS - 200)
    answer = store.search("alpha", mode="fts", since=since, limit=100)
    assert {hit.source_id for hit in answer.results} == {str(n) for n in range(ROWS - 50, ROWS, 5)}
    assert all(hit.occurred_at >= since for hit in answer.results)


def test_without_a_rank_limit_every_match_is_ranked(store: MemoryStore, sql: psycopg.Connection) -> None:
    raw = sql.execute(
        "select search_memory(p_query => 'gamma', p_mode => 'fts', p_embedding => null, p_kinds => null, "
        "p_since => null, p_limit => 100, p_candidates => 1000, p_fts_weight => 1, p_vector_weight => 1, "
        "p_rrf_k => 60, p_ef_search => 40, p_fts_rank_limit => null, p_include_content => false)"
    ).fetchone()[0]
    assert raw["fts_strategy"] == "all" and raw["fts_limited"] is False
    assert raw["fts_candidates"] == len([n for n in range(ROWS) if n % 12 == 0])


# --- websearch operators before a prefix -------------------------------------------------------
@pytest.fixture
def docs(db: Database, database_url: str, tmp_path: Path) -> MemoryStore:
    memory = MemoryStore(
        db, make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none")
    )
    memory.upsert(
        [
            MemoryItem(kind="note", source="test", source_id="refund", content="We refund unused items."),
            MemoryItem(kind="note", source="test", source_id="both", content="A refund for a late shipment."),
            MemoryItem(kind="note", source="test", source_id="ship", content="Shipping takes two days."),
        ]
    )
    return memory


@pytest.mark.parametrize(
    ("query", "tsquery", "found"),
    [
        ("refund ship*", "'refund' & 'ship':*", {"both"}),
        ("refund -ship*", "'refund' & !'ship':*", {"refund"}),
        ("refund or ship*", "'refund' | 'ship':*", {"refund", "both", "ship"}),
        ("refund OR ship*", "'refund' | 'ship':*", {"refund", "both", "ship"}),
        ("-ship*", "!'ship':*", {"refund"}),
        ("refund-ship*", "'refund' & 'ship':*", {"both"}),  # a hyphen inside a word is no negation
    ],
)
def test_the_operator_before_a_prefix_keeps_its_meaning(
    docs: MemoryStore, query: str, tsquery: str, found: set[str]
) -> None:
    answer = docs.search(query, mode="fts")
    assert answer.fts_query == tsquery and {hit.source_id for hit in answer.results} == found


# --- control characters ----------------------------------------------------------------------
def test_control_characters_in_a_query_are_refused_clearly(docs: MemoryStore, settings: Settings, db: Database) -> None:
    for query in ("refund\x00", "a\x1bb", "\x7f"):
        with pytest.raises(InvalidInput, match="schema"):
            docs.search(query, mode="fts")
    assert docs.search("refund\tpolicy\n", mode="fts").fts_query == "'refund' & 'polici'"
    with serve(create_app(settings, db)) as url:
        response = httpx.get(
            f"{url}/memory/search",
            params={"q": "ref\x00und"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=30,
        )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_input"


# --- vectors ---------------------------------------------------------------------------------
@pytest.fixture
def fake() -> WordTopicEmbedder:
    return WordTopicEmbedder()


@pytest.fixture
def crowded(db: Database, database_url: str, tmp_path: Path, fake: WordTopicEmbedder) -> MemoryStore:
    """200 emails about deliveries (each a little different: HNSW keeps identical vectors as one
    element), close to the query; 5 notes about invoices, far from it. Notes have no partial HNSW
    index of their own."""
    db.call(
        "configure_memory", model=fake.spec.name, dimension=fake.spec.dimension, reset=False, indexed_kinds=["ticket"]
    )
    memory = MemoryStore(
        db,
        make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none"),
        embedder=fake,
    )
    memory.upsert(
        [
            MemoryItem(
                kind="email_sent",
                source="test",
                source_id=f"e{n}",
                content=" ".join(["parcel"] * (1 + n % 20) + ["campaign"] * (n // 20)) + f" no. {n}",
            )
            for n in range(200)
        ]
        + [
            MemoryItem(kind="note", source="test", source_id=f"n{n}", content=f"Invoice {n} payment received")
            for n in range(5)
        ]
    )
    memory.embed_pending()
    return memory


def test_a_kind_filter_is_not_starved_by_closer_rows_of_other_kinds(
    crowded: MemoryStore, fake: WordTopicEmbedder, sql: psycopg.Connection
) -> None:
    vector = fake.vector("parcel courier delivery")
    with sql.transaction():
        # the HNSW index even on a table this small (and no sort by exact distance)
        sql.execute("set local enable_seqscan = off")
        sql.execute("set local enable_sort = off")
        # the trap: an HNSW scan that stops at ef_search candidates finds no note among them
        sql.execute("set local hnsw.iterative_scan = off")
        sql.execute("set local hnsw.ef_search = 40")
        plain = sql.execute(
            "select id from memory where kind = 'note' order by embedding <=> %s::text::vector limit 5", (str(vector),)
        ).fetchall()
        raw = sql.execute(
            "select search_memory(p_query => 'parcel courier delivery', p_mode => 'vector', p_embedding => %s, "
            "p_kinds => %s, p_since => null, p_limit => 5, p_candidates => 5, p_fts_weight => 1, "
            "p_vector_weight => 1, p_rrf_k => 60, p_ef_search => 40, p_fts_rank_limit => 200, "
            "p_include_content => false, p_model => %s)",
            (Jsonb(vector), Jsonb(["note"]), fake.spec.name),
        ).fetchone()[0]
    assert len(plain) < 5
    assert sorted(hit["source_id"] for hit in raw["results"]) == [f"n{n}" for n in range(5)]


def test_a_query_embedded_by_another_model_is_never_compared(
    crowded: MemoryStore, db: Database, database_url: str, tmp_path: Path
) -> None:
    # the same dimension, another model: as after `opsdesk memory reindex` under a running service
    stale = MemoryStore(
        db,
        make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none"),
        embedder=WordTopicEmbedder("word-topics-old"),
    )
    answer = stale.search("parcel", mode="hybrid")
    assert answer.mode == "fts" and answer.requested_mode == "hybrid" and answer.embeddings is None
    assert any("restart" in notice and "word-topics-old" in notice for notice in answer.notices)
    assert len(answer.results) == 10 and all(hit.vector_rank is None for hit in answer.results)
    with pytest.raises(EmbeddingsMismatch, match="word-topics-old"):
        stale.search("parcel", mode="vector")
    assert crowded.search("parcel", mode="vector").mode == "vector"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, opsdesk_data_dir=tmp_path, embeddings_provider="none")


# --- odd sources never stop a sync ------------------------------------------------------------
def test_an_oversized_page_or_ticket_is_clipped_not_refused(docs: MemoryStore, sql: psycopg.Connection) -> None:
    huge = "dump " * (MAX_CONTENT_CHARS // 5 + 100)
    pages = [
        KBPage(id="big", title="Pasted log", url="https://notion.so/big", text="start\x00 " + huge, last_edited=START),
        KBPage(id="ok", title="Hours", url="https://notion.so/ok", text="Open 9 to 5.", last_edited=START),
    ]

    class Pages:
        def read_kb(self) -> list[KBPage]:
            return pages

    assert sync_knowledge_base(docs, Pages()).created == 2
    length, clipped = sql.execute(
        "select length(content), metadata->>'clipped_from_chars' from memory where source_id = 'big'"
    ).fetchone()
    assert length == MAX_CONTENT_CHARS and int(clipped) == len("start " + huge)
    docs.remember_ticket(
        TicketMemory(id="t1", subject="Log attached", body=huge[:MAX_CONTENT_CHARS], requester="a@example.com")
    )  # the header pushes it over
    content = sql.execute("select content from memory where source_id = 't1'").fetchone()[0]
    assert len(content) == MAX_CONTENT_CHARS and content.startswith("Ticket: Log attached\nFrom: a@example.com")


def test_the_kind_is_a_lexeme_no_text_or_prefix_can_reach(docs: MemoryStore, sql: psycopg.Connection) -> None:
    docs.upsert(
        [
            MemoryItem(kind="ticket", source="test", source_id="t", content="A ticket about a kind refund."),
            MemoryItem(kind="note", source="test", source_id="k", content="Kindness wins customers."),
        ]
    )
    assert sql.execute("select count(*) from memory where fts @@ '''#kind=note'''::tsquery").fetchone() == (4,)
    assert {hit.source_id for hit in docs.search("kind*", mode="fts").results} == {"t", "k"}  # words only
    assert {hit.source_id for hit in docs.search("refund -kind*", mode="fts").results} == {"refund", "both"}
    assert {hit.source_id for hit in docs.search("#kind=note", mode="fts").results} == set()


def test_an_older_memory_table_gets_the_kind_lexeme_when_the_schema_is_applied(
    docs: MemoryStore, sql: psycopg.Connection
) -> None:
    sql.execute("alter table memory drop column fts")
    sql.execute(
        "alter table memory add column fts tsvector generated always as ("
        "setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', content), 'B')) "
        "stored"
    )
    sql.execute(schema_sql().encode())
    assert sql.execute("select count(*) from memory where fts @@ '''#kind=note'''::tsquery").fetchone() == (3,)
    assert sql.execute("select to_regclass('public.memory_fts') is not null").fetchone() == (True,)
    assert {hit.source_id for hit in docs.search("refund", mode="fts", kinds=["note"]).results} == {"refund", "both"}
    column = "select attnum from pg_attribute where attrelid = 'memory'::regclass and attname = 'fts'"
    before = sql.execute(column).fetchone()
    sql.execute(schema_sql().encode())
    assert sql.execute(column).fetchone() == before  # applied again: the column is current, not rebuilt


def test_the_query_vector_in_binary_ranks_as_the_json_array_does(
    crowded: MemoryStore, fake: WordTopicEmbedder, db: Database
) -> None:
    """p_vector (a real[] in binary, what the store sends: no number formatted or parsed) and
    p_embedding (a JSON array) give the same answer; a mis-sized or non-finite vector is a 422."""
    vector = fake.vector("parcel courier delivery")
    common = {
        "query": "parcel courier delivery",
        "mode": "vector",
        "kinds": None,
        "since": None,
        "limit": 5,
        "candidates": 50,
        "fts_weight": 1,
        "vector_weight": 1,
        "rrf_k": 60,
        "ef_search": 100,
        "fts_rank_limit": 200,
        "include_content": False,
        "model": fake.spec.name,
    }
    as_array = db.call("search_memory", embedding=vector, **common)
    as_binary = db.call("search_memory", embedding=None, vector=QueryVector(vector), **common)
    assert as_binary == as_array and len(as_binary["results"]) == 5
    assert as_binary["vector_candidates"] == 5  # vector mode reads no candidate beyond its answer
    for wrong in (QueryVector(vector[:-1]), QueryVector([math.nan, *vector[1:]]), QueryVector([math.inf, *vector[1:]])):
        with pytest.raises(InvalidInput, match="query vector"):
            db.call("search_memory", embedding=None, vector=wrong, **common)
