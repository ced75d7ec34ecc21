"""Memory at a size over Supabase's REST API, under the API roles' statement timeout.

The state is the one from issue 11: a reindex re-embedded every row, then its index build was
stopped, so the indexes are missing over 4,000 vectors. What keeps every call short is shown by
the work each call does, not by a stopwatch (a shared machine can make any call slow): no index
is ever built over vectors (each is created while its rows are parked, then filled back in
batches), and every write is a batch of at most EMBEDDINGS_BATCH_SIZE rows. The time the longest
call takes at 100,000 rows is bench/rest_memory.py's to measure (2.8 s against Supabase's 8 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from app.core.settings import Settings
from app.memory.index import memory_health
from app.memory.models import VectorIndexBuilding
from app.memory.store import MemoryStore
from app.runtime.database import open_database
from integrations.embeddings import LOCAL_DIMENSION, LOCAL_MODEL, EmbeddingSpec
from tests.conftest import make_settings
from tests.memory_fakes import SeededEmbedder
from tests.postgrest_on_supabase import SERVICE_KEY, PostgrestOnSupabase
from tests.supabase_shape import SupabaseShape

ROWS = 4000
BATCH = 64  # EMBEDDINGS_BATCH_SIZE's default
API_TIMEOUT = "8s"  # Supabase's, for the API roles
SPEC = EmbeddingSpec("local", LOCAL_MODEL, LOCAL_DIMENSION)  # the local model's name; seeded vectors
KINDS = ("ticket",) + ("note",) * 9  # a tenth of the rows have a kind index of their own
WORDS = ("kettle", "teapot", "refund", "courier", "warranty", "newsletter", "invoice", "grinder")


def text(n: int) -> str:
    return f"Row {n}: the {WORDS[n % len(WORDS)]} and the {WORDS[(n // 8) % len(WORDS)]}, case {n * 7919 % 10007}"


@pytest.fixture
def embedded_without_indexes(supabase: SupabaseShape, supabase_db: str) -> str:
    """ROWS rows, each with its vector, and no HNSW index: as a reindex left it when its build failed."""
    embedder = SeededEmbedder(SPEC)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(supabase.superuser_uri(supabase_db), autocommit=True) as conn:
        conn.execute("set search_path = public, extensions")
        register_vector(conn)
        conn.execute("select configure_memory(%s, %s, false, null)", (SPEC.name, SPEC.dimension))
        for (index,) in conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = 'memory'::regclass"
        ).fetchall():
            if index.startswith("memory_embedding_hnsw"):
                conn.execute(f"drop index {index}")
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "copy memory (kind, source, source_id, content, occurred_at, embedding, embedding_model, "
                "embedded_at) from stdin"
            ) as copy,
        ):
            for n in range(ROWS):
                copy.write_row(
                    (
                        KINDS[n % len(KINDS)],
                        "test",
                        f"r{n}",
                        text(n),
                        start + timedelta(minutes=n),
                        np.array(embedder.vector(text(n)), dtype=np.float32),
                        SPEC.name,
                        start,
                    )
                )
        conn.execute("analyze memory")
    return supabase_db


@pytest.fixture
def api(supabase: SupabaseShape, embedded_without_indexes: str) -> Iterator[PostgrestOnSupabase]:
    server = PostgrestOnSupabase(supabase.authenticator_uri(embedded_without_indexes), statement_timeout=API_TIMEOUT)
    yield server
    server.close()


@pytest.fixture
def api_settings(api: PostgrestOnSupabase, tmp_path: Path) -> Settings:
    """The default batches: EMBEDDINGS_BATCH_SIZE vectors per call, INDEX_PARK_ROWS per park step."""
    return make_settings(
        supabase_url=api.url,
        supabase_service_role_key=SERVICE_KEY,
        opsdesk_data_dir=tmp_path,
        embeddings_provider="local",
    )


def every_call_fit(api: PostgrestOnSupabase) -> None:
    failed = [(function, status) for function, _, status in api.calls if status != 200]
    assert not failed, failed
    oversized = [(function, params) for function, params in api.arguments if too_big(function, params)]
    assert not oversized, oversized


def too_big(function: str, params: dict[str, Any]) -> bool:
    """A call that writes more rows than one batch (parking moves 16 batches of plain updates)."""
    if function == "set_memory_embeddings":
        return len(params.get("p_items") or ()) > BATCH
    if function == "memory_index_step":
        return int(params.get("p_fill_rows") or 0) > BATCH
    return False


def test_start_up_search_and_the_missing_index_fit_the_api_timeout(
    api: PostgrestOnSupabase,
    api_settings: Settings,
) -> None:
    with open_database(api_settings) as db:  # never builds an index over vectors: nothing to wait for
        store = MemoryStore(db, api_settings, embedder=SeededEmbedder(SPEC))
        meanwhile = store.search("kettle refund", mode="hybrid")
        assert (meanwhile.requested_mode, meanwhile.mode) == ("hybrid", "fts") and meanwhile.results
        assert any("vector index is being made" in notice for notice in meanwhile.notices)
        with pytest.raises(VectorIndexBuilding):
            store.search("kettle", mode="vector")
        assert memory_health(db, api_settings, detailed=False) == {"vector_search": "building"}
        assert memory_health(db, api_settings, detailed=True)["missing_indexes"][0] == "memory_embedding_hnsw"

        report = store.maintain_indexes()
        assert report.state == "done"
        assert report.parked == ROWS and report.filled == ROWS
        # the kinds without rows got theirs at start-up, made while empty
        assert report.created == ["memory_embedding_hnsw", "memory_embedding_hnsw_ticket"]

        assert memory_health(db, api_settings, detailed=False) == {"vector_search": "ready"}
        found = store.search(text(42), mode="vector", limit=3)
        assert found.mode == "vector" and found.results[0].source_id == "r42"
        assert store.search(text(40), mode="vector", kinds=["ticket"], limit=1).results[0].source_id == "r40"
        assert db.call("memory_settings")["kind_indexes"] == sorted(api_settings.memory_vector_index_kinds)
    every_call_fit(api)


def test_reindex_fits_the_api_timeout_and_resumes_after_a_crash(
    api: PostgrestOnSupabase,
    api_settings: Settings,
    supabase: SupabaseShape,
    embedded_without_indexes: str,
) -> None:
    with open_database(api_settings, check_memory=False) as db:  # as `opsdesk memory reindex` opens it
        crashing = MemoryStore(db, api_settings, embedder=SeededEmbedder(SPEC, fail_after=25))
        with pytest.raises(RuntimeError, match="died"):
            crashing.reindex()
        status = crashing.stats()
        assert status["reindex_started_at"] is not None and status["to_embed"] == ROWS - 25 * BATCH
        assert status["index"] and not status["missing_indexes"]  # made empty at the start, filled since

        report = MemoryStore(db, api_settings, embedder=SeededEmbedder(SPEC)).reindex()
        assert report.resumed and report.embedded == ROWS - 25 * BATCH
        stats = db.call("memory_stats")
        assert (stats["to_embed"], stats["parked"], stats["reindex_started_at"]) == (0, 0, None)
    every_call_fit(api)
    with psycopg.connect(supabase.superuser_uri(embedded_without_indexes), autocommit=True) as conn:
        assert conn.execute("select count(*) from memory where embedding is not null").fetchone() == (ROWS,)
