"""search_memory's vector mode, which has a statement of its own (issue 15): the nearest rows with
every field of the answer, checked against an exact scan, under each filter (one kind with its
partial HNSW index, several kinds, a date); the snippet of a hit the query's words do not match;
the settings it changes for its scan put back; and the query vector, which must carry exactly the
float32 numbers pgvector keeps."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.core.database import Database
from app.memory.models import MemoryItem
from app.memory.sql import QueryVector
from integrations.embeddings import EmbeddingSpec
from tests.memory_fakes import SeededEmbedder

ROWS = 600
START = datetime(2026, 3, 1, tzinfo=UTC)
KINDS = ("ticket", "note", "email_sent")
SPEC = EmbeddingSpec("local", "seeded-16", 16)
# the snippet search_memory makes of a hit the query matches as full text (schema.sql, memory_snippet)
HEADLINE = 'StartSel=<mark>, StopSel=</mark>, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "'


@pytest.fixture
def rows(db: Database, sql: psycopg.Connection) -> SeededEmbedder:
    """600 rows of three kinds, a minute apart, with random vectors; tickets have their own
    partial HNSW index. Some rows hold the query's word (a highlighted snippet) and markup."""
    embedder = SeededEmbedder(SPEC)
    db.call("configure_memory", model=SPEC.name, dimension=SPEC.dimension, reset=False, indexed_kinds=["ticket"])
    items = [
        MemoryItem(
            kind=KINDS[n % 3],
            source="test",
            source_id=str(n),
            title=f"Row {n}",
            content=f"Entry {n} about <b>deliveries</b> & parcels" + (" with a refund asked for" if n % 4 == 0 else ""),
            metadata={"n": n},
            occurred_at=START + timedelta(minutes=n),
        ).model_dump(mode="json")
        for n in range(ROWS)
    ]
    db.call("upsert_memories", items=items)
    for n in range(ROWS):
        sql.execute(
            "update memory set embedding = %s::vector, embedding_model = %s where source_id = %s",
            (QueryVector(embedder.vector(str(n))), SPEC.name, str(n)),
        )
    sql.execute("analyze memory")
    return embedder


def lead(content: str) -> str:
    """The snippet of a hit the query does not match: its first 15 words, escaped."""
    return escape(" ".join(content.split()[:15]), quote=False)


def search(db: Database, vector: list[float], **options: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "query": "refund",
        "mode": "vector",
        "embedding": None,
        "vector": QueryVector(vector),
        "kinds": None,
        "since": None,
        "limit": 10,
        "candidates": 50,
        "fts_weight": 1,
        "vector_weight": 1,
        "rrf_k": 60,
        # above the row count: the HNSW scan finds the exact nearest rows, so an exact scan can check them
        "ef_search": 1000,
        "fts_rank_limit": 200,
        "include_content": False,
        "model": SPEC.name,
    }
    return db.call_object("search_memory", **(params | options))


def exact(sql: psycopg.Connection, vector: list[float], kinds: list[str] | None, since: datetime | None) -> list[Any]:
    """Every matching row by exact distance (no index), with the fields a hit carries."""
    with sql.transaction():
        sql.execute("set local enable_indexscan = off")
        sql.execute("set local enable_bitmapscan = off")
        return sql.execute(
            "select id, kind, source, source_id, title, content, occurred_at, metadata,"
            "       embedding <=> %(v)s::vector as distance,"
            "       fts @@ memory_tsquery('refund'),"
            "       ts_headline('english', memory_escape_html(content), memory_tsquery('refund'), %(headline)s)"
            "  from memory"
            " where (%(kinds)s::text[] is null or kind = any (%(kinds)s::text[]))"
            "   and (%(since)s::timestamptz is null or occurred_at >= %(since)s::timestamptz)"
            " order by embedding <=> %(v)s::vector, id",
            {"v": QueryVector(vector), "kinds": kinds, "since": since, "headline": HEADLINE},
        ).fetchall()


@pytest.mark.parametrize(
    ("kinds", "since", "limit", "include_content"),
    [
        (None, None, 10, False),
        (None, None, 1, True),
        (["ticket"], None, 10, False),  # one kind: its partial HNSW index
        (["note"], None, 7, True),  # one kind without an index of its own
        (["ticket", "email_sent"], None, 10, False),
        (None, START + timedelta(minutes=450), 10, False),
        (["ticket"], START + timedelta(minutes=300), 100, True),
    ],
)
def test_vector_mode_answers_the_nearest_rows_with_every_field(
    rows: SeededEmbedder,
    db: Database,
    sql: psycopg.Connection,
    kinds: list[str] | None,
    since: datetime | None,
    limit: int,
    include_content: bool,
) -> None:
    highlighted = led = False
    for query in ("refund", "deliveries", "a parcel went missing"):
        vector = rows.vector(query)
        answer = search(db, vector, kinds=kinds, since=since, limit=limit, include_content=include_content)
        nearest = exact(sql, vector, kinds, since)[:limit]
        assert {key: value for key, value in answer.items() if key != "results"} == {
            "mode": "vector",
            "fts_query": "'refund'",
            "fts_limited": False,
            "fts_strategy": None,
            "fts_candidates": 0,
            "vector_candidates": len(nearest),
            "vector_index": True,
        }
        expected = [
            {
                "id": row_id,
                "kind": kind,
                "source": source,
                "source_id": source_id,
                "title": title,
                "snippet": headline if matched else lead(content),
                "score": 1 - distance,
                "fts_rank": None,
                "fts_score": None,
                "vector_rank": rank,
                "similarity": 1 - distance,
                "occurred_at": occurred_at,
                "metadata": metadata,
                "content": content if include_content else None,
            }
            for rank, (
                row_id,
                kind,
                source,
                source_id,
                title,
                content,
                occurred_at,
                metadata,
                distance,
                matched,
                headline,
            ) in (enumerate(nearest, start=1))
        ]
        for hit in answer["results"]:
            hit["occurred_at"] = datetime.fromisoformat(hit["occurred_at"])
        assert answer["results"] == expected
        highlighted = highlighted or any("<mark>refund</mark>" in hit["snippet"] for hit in expected)
        led = led or any(not row[9] for row in nearest)
    assert highlighted and led  # both kinds of snippet were checked


def test_a_hit_the_query_does_not_match_shows_its_first_words(
    rows: SeededEmbedder, db: Database, sql: psycopg.Connection
) -> None:
    """A hit found by its meaning alone is not parsed for marks: it shows its first 15 words,
    escaped, whatever whitespace separates them. A hit the query matches as full text has the
    query's words marked. Both modes tell a row alike."""
    words = [f"word{n}" for n in range(40)]
    content = "  ".join(words[:5]) + "\n\t" + " ".join(words[5:12]) + " <i>&</i>\r\n" + " ".join(words[12:])
    texts = {"long-0": content, "long-1": content + " and a refund"}
    db.call(
        "upsert_memories",
        items=[
            MemoryItem(
                kind="note", source="test", source_id=key, title="Long", content=text, occurred_at=START
            ).model_dump(mode="json")
            for key, text in texts.items()
        ],
    )
    vector = rows.vector("word3 refund")
    for key in texts:  # the query's own vector: the nearest rows of all
        sql.execute(
            "update memory set embedding = %s::vector, embedding_model = %s where source_id = %s",
            (QueryVector(vector), SPEC.name, key),
        )
    for mode in ("vector", "hybrid"):
        answer = search(db, vector, mode=mode, query="word3 refund", limit=5)
        snippets = {hit["source_id"]: hit["snippet"] for hit in answer["results"]}
        assert snippets["long-0"] == " ".join(words[:12]) + " &lt;i&gt;&amp;&lt;/i&gt; word12 word13"
        assert snippets["long-0"] == lead(content)
        assert "<mark>refund</mark>" in snippets["long-1"] and "<mark>word3</mark>" in snippets["long-1"]


def test_hybrid_and_vector_mode_describe_a_row_alike(rows: SeededEmbedder, db: Database) -> None:
    """The two statements build a hit each: a row both find is told the same by both."""
    vector = rows.vector("refund")
    alone = {hit["id"]: hit for hit in search(db, vector, limit=20, include_content=True)["results"]}
    fused = search(db, vector, mode="hybrid", limit=100, candidates=20, include_content=True)["results"]
    both = [hit for hit in fused if hit["id"] in alone]
    assert len(both) == 20
    shared = ("kind", "source", "source_id", "title", "snippet", "content", "similarity", "vector_rank", "metadata")
    for hit in both:
        assert {key: hit[key] for key in shared} == {key: alone[hit["id"]][key] for key in shared}
        assert set(hit) == set(alone[hit["id"]])


def test_vector_mode_puts_back_the_settings_it_changes(rows: SeededEmbedder, sql: psycopg.Connection) -> None:
    settings = ("enable_seqscan", "plan_cache_mode", "hnsw.ef_search", "hnsw.iterative_scan", "work_mem")
    call = (
        "select search_memory(p_query => 'refund', p_mode => 'vector', p_embedding => null, p_vector => %s, "
        "p_kinds => %s, p_since => null, p_limit => 5, p_candidates => 5, p_fts_weight => 1, "
        "p_vector_weight => 1, p_rrf_k => 60, p_ef_search => 100, p_fts_rank_limit => 200, "
        "p_include_content => false, p_model => %s)"
    )
    vector = QueryVector(rows.vector("refund"))
    with sql.transaction():
        sql.execute("set local enable_seqscan = off")
        sql.execute("set local plan_cache_mode = force_custom_plan")
        sql.execute("set local hnsw.ef_search = 57")
        before = [sql.execute("select current_setting(%s)", (name,)).fetchone() for name in settings]
        for kinds in (None, Jsonb(["ticket"]), None, Jsonb(["note", "ticket"])):  # the cached plan, then a custom one
            sql.execute(call, (vector, kinds, SPEC.name))
            assert [sql.execute("select current_setting(%s)", (name,)).fetchone() for name in settings] == before
    with sql.transaction():
        before = [sql.execute("select current_setting(%s)", (name,)).fetchone() for name in settings]
        sql.execute(call, (vector, None, SPEC.name))
        assert [sql.execute("select current_setting(%s)", (name,)).fetchone() for name in settings] == before


def test_the_query_vector_carries_exactly_the_float32_numbers(sql: psycopg.Connection) -> None:
    """Each number is rounded to float32 (what pgvector keeps) and sent in binary: the database
    reads back exactly those float32s, the same vector as a double's full repr in pgvector's text."""
    rng = np.random.default_rng(15)
    doubles = np.concatenate(
        [
            rng.standard_normal(384),
            rng.standard_normal(64) * 10.0 ** rng.integers(-30, 30, 64),
            [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 3.4e38, 1.2e-38, 1e-45, 123456789.0],
        ]
    ).tolist()
    float32 = list(struct.unpack(f"{len(doubles)}f", struct.pack(f"{len(doubles)}f", *doubles)))
    vector = QueryVector(doubles)
    read = sql.execute("select %s::real[]", (vector,)).fetchone()
    assert read is not None and [struct.unpack("f", struct.pack("f", value))[0] for value in read[0]] == float32
    assert [math.copysign(1, value) for value in read[0][-10:-8]] == [1, -1]  # -0.0 stays negative
    as_repr = "[" + ",".join(repr(value) for value in doubles) + "]"
    assert sql.execute("select %s::vector = %s::text::vector", (vector, as_repr)).fetchone() == (True,)
    assert list(QueryVector([1, 2.5, np.float32(0.25)])) == [1.0, 2.5, 0.25]
