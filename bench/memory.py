"""Memory search at scale: latency of fts, vector and hybrid search, HNSW recall against an exact
scan, IVFFlat side by side, filtered recall, common-word full text, EXPLAIN, build time and size.

    python bench/memory.py --rows 100000 [--vectors random|minilm] [--queries 200] [--recall-queries 100]
                           [--data /tmp/opsdesk-bench-memory] [--out bench/results/memory-100k.json]

Rows are synthetic but shaped like opsdesk's memory (tickets, sent emails, decisions, knowledge
base, reports, notes; Zipf-ish common words, order numbers and codes as rare tokens) with random
unit vectors of the deployment's dimension (384, the local model's). `--vectors minilm` instead
gives each row the normalised sum of the real all-MiniLM-L6-v2 embeddings of its sentences (plus a
little noise): the geometry of real embeddings, which random vectors lack (the local model of
the base install). Ten percent of rows are tickets: the filtered searches keep those. Latency is
the product's own SQL function, `search_memory`, called as app.memory.store calls it (one client,
after a warm-up); recall compares the HNSW index with an exact scan (indexes off) on the same rows
and query vectors.

Resumable: the embedded server and one database per row count stay in --data. Loading is done
in COPY chunks that commit one by one; a rerun continues after the last full chunk, and index
builds already done (with their measured times, in build.json) are not repeated.
"""

# ruff: noqa: E402  (the project root goes on sys.path before the app is imported)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# `python bench/memory.py` puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's `queue` (psycopg imports it): drop bench/ and put the project root there.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from app.core.database import schema_sql
from app.core.database_setup import start_embedded
from app.core.settings import Settings
from app.memory.sql import QueryVector
from bench.provenance import code_version

DIMENSION = 384
MODEL = "bench/random-unit-384"
CHUNK = 10_000
SEED = 20261122
DEFAULTS = Settings(_env_file=None)  # the search settings the product would use here (MEMORY_* or defaults)
console = Console()

# (kind, source, share of rows); tickets are exactly the 10% the filtered searches keep
KINDS: tuple[tuple[str, str, float], ...] = (
    ("email_sent", "action", 0.35),
    ("ticket", "hubspot", 0.10),
    ("decision", "decision", 0.15),
    ("action", "action", 0.15),
    ("note", "action", 0.10),
    ("kb_article", "notion", 0.10),
    ("report", "report", 0.05),
)
WORDS: dict[str, list[str]] = {
    "product": [
        "kettle",
        "teapot",
        "mug",
        "grinder",
        "tumbler",
        "french press",
        "carafe",
        "infuser",
        "scale",
        "filter",
        "canister",
        "milk frother",
        "pour-over stand",
        "travel flask",
        "espresso cup",
    ],
    "problem": [
        "leaks",
        "stopped heating",
        "cracked",
        "arrived dented",
        "smells of plastic",
        "rattles",
        "lost its lid",
        "will not switch on",
        "rusted",
        "wobbles",
    ],
    "part": ["lid", "handle", "spout", "base", "seal", "switch", "cable", "gasket", "hinge", "glass"],
    "name": [
        "Ann",
        "Bob",
        "Carmen",
        "Dev",
        "Elena",
        "Farid",
        "Grace",
        "Hiro",
        "Ines",
        "Jamal",
        "Kofi",
        "Lena",
        "Mateo",
        "Nadia",
        "Omar",
        "Priya",
        "Quinn",
        "Rosa",
        "Sam",
        "Tariq",
        "Uma",
        "Victor",
        "Wen",
        "Yara",
    ],
    "city": ["Phoenix", "Tucson", "Mesa", "Tempe", "Flagstaff", "Denver", "Austin", "Portland", "Reno"],
    "tone": ["pushy", "casual", "formal", "salesy", "vague", "long", "cheerful", "cold"],
    "segment": ["wholesale", "new", "returning", "cafe", "office", "holiday"],
    "season": ["spring", "summer", "autumn", "winter", "holiday", "anniversary", "clearance"],
    "stage": ["qualified", "proposal", "negotiation", "closed won", "closed lost"],
    "network": ["Instagram", "Facebook", "LinkedIn", "the blog"],
    "liquid": ["vinegar", "citric acid", "lemon juice"],
    "region": ["Arizona", "the Southwest", "the continental US", "Canada"],
}
TEMPLATES: dict[str, list[str]] = {
    "ticket": [
        "My {product} {problem} after {n} days.",
        "Order {order} arrived with a broken {part}.",
        "Can I get a refund for the {product}? It {problem}.",
        "The {part} of my {product} {problem}.",
        "I am still waiting for order {order}; tracking shows no movement since {city}.",
        "Please send a replacement {part} for the {product}.",
        "Is the {product} dishwasher safe?",
    ],
    "email_sent": [
        "Hi {name}, thanks for your order {order}.",
        "Our {season} sale takes {pct}% off every {product}.",
        "Your {product} ships from {city} within {n} business days.",
        "Use code {code} at checkout before the end of the month.",
        "Please rate your {product} and tell us what you think.",
        "We restocked the {product} you asked about.",
    ],
    "decision": [
        "Rejected by {name}: the tone is too {tone} for {segment} customers.",
        "Approved with edits by {name}: the subject now mentions the {season} sale.",
        "Reason: a discount of {pct}% is above what we offer {segment} customers.",
        "Approved by {name} without changes.",
        "Rejected: never promise delivery dates for the {product}.",
    ],
    "action": [
        "Updated the CRM deal {code} to stage {stage}.",
        "Posted the {season} sale on {network}.",
        "Created a Notion draft about caring for your {product}.",
        "Sent the {segment} newsletter.",
    ],
    "note": [
        "Called {name} about order {order}.",
        "{name} prefers email over phone calls.",
        "The {city} cafe wants a wholesale price for {n} units of the {product}.",
    ],
    "kb_article": [
        "Standard shipping takes {n} to {m} business days within {region}.",
        "Returns are accepted within {n} days if the {product} is unused.",
        "The warranty covers a faulty {part} for {n} years.",
        "To descale the {product}, fill it with {liquid} and wait {n} minutes.",
        "Wholesale orders over {n} units get free shipping.",
    ],
    "report": [
        "Yesterday {n} emails were sent against the daily quota of 300.",
        "{n} approvals are still waiting and {m} were rejected.",
        "Model spend yesterday was {pct} dollars.",
    ],
}
# the common words: "order", "customer", "please", "thanks" end up in large shares of all rows
FILLERS = [
    "Thank you for your order.",
    "Please let us know if the customer needs anything else.",
    "Thanks again, the customer service team.",
    "The customer asked about the order status.",
    "Please reply within two business days.",
    "Order details are in the CRM.",
]
TOPIC_QUERIES = [
    "kettle leaks",
    "broken lid",
    "refund teapot",
    "descale kettle",
    "warranty handle",
    "wholesale price",
    "tone pushy",
    "holiday sale",
    "replacement gasket",
    "tracking movement",
    "dishwasher safe",
    "restocked grinder",
    "free shipping wholesale",
    "newsletter",
    "dented carafe",
    "smells plastic",
    '"returns are accepted"',
    "milk frother",
    "discount segment",
    "Instagram sale",
]
COMMON_QUERIES = ["order", "customer", "please", "thanks order", "customer order please"]


# ------------------------------------------------------------------------------------------------
# Synthetic rows
# ------------------------------------------------------------------------------------------------
def sentence_pool(rng: np.random.Generator, kind: str, size: int = 4000) -> list[str]:
    def pick(key: str) -> str:
        words = WORDS[key]
        return words[int(rng.zipf(1.6)) % len(words)]  # skewed: some products far more common

    pool = []
    for _ in range(size):
        template = TEMPLATES[kind][int(rng.integers(len(TEMPLATES[kind])))]
        pool.append(
            template.format(
                product=pick("product"),
                problem=pick("problem"),
                part=pick("part"),
                name=pick("name"),
                city=pick("city"),
                tone=pick("tone"),
                segment=pick("segment"),
                season=pick("season"),
                stage=pick("stage"),
                network=pick("network"),
                liquid=pick("liquid"),
                region=pick("region"),
                n=int(rng.integers(2, 60)),
                m=int(rng.integers(2, 20)),
                pct=int(rng.integers(5, 60)),
                order=f"#{int(rng.integers(100000, 999999))}",
                code=f"SKU{int(rng.integers(1000, 99999))}",
            )
        )
    return pool


def embed_pools(pools: dict[str, list[str]], cache: Path) -> dict[str, np.ndarray]:
    """The real model's vectors for every pool sentence and filler (cached: a resumed load reuses them)."""
    if cache.exists():
        saved = np.load(cache)
        return {name: saved[name] for name in saved.files}
    from integrations.embeddings import LOCAL_DIMENSION, LOCAL_MODEL, EmbeddingSpec, LocalEmbedder

    embedder = LocalEmbedder(EmbeddingSpec("local", LOCAL_MODEL, LOCAL_DIMENSION))
    console.print("embedding the sentence pools with all-MiniLM-L6-v2 ...")
    vectors = {
        name: np.asarray(embedder.embed_documents(texts), dtype=np.float32)
        for name, texts in {**pools, "_fillers": FILLERS}.items()
    }
    np.savez(cache, **vectors)
    return vectors


class RowMaker:
    """Rows by number: chunk c always gets the same rows (its own seed), so a resumed load is the
    same data as an uninterrupted one."""

    def __init__(self, rows: int, vectors: str, cache: Path) -> None:
        rng = np.random.default_rng(SEED)
        self.rows = rows
        self.pools = {kind: sentence_pool(rng, kind) for kind, _, _ in KINDS}
        self.pool_vectors = embed_pools(self.pools, cache) if vectors == "minilm" else None
        self.shares = np.array([share for _, _, share in KINDS])
        self.start = datetime(2024, 1, 1, tzinfo=UTC)
        self.span = timedelta(days=3 * 365)

    def chunk(self, index: int) -> list[tuple[Any, ...]]:
        rng = np.random.default_rng([SEED, index])
        first = index * CHUNK
        count = min(CHUNK, self.rows - first)
        kinds = rng.choice(len(KINDS), size=count, p=self.shares)
        vectors = rng.standard_normal((count, DIMENSION), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for offset in range(count):
            number = first + offset
            kind, source, _ = KINDS[kinds[offset]]
            pool = self.pools[kind]
            picked = rng.integers(len(pool), size=int(rng.integers(2, 6)))
            fillers = rng.integers(len(FILLERS), size=int(rng.integers(0, 3)))
            sentences = [pool[i] for i in picked] + [FILLERS[i] for i in fillers]
            vector = vectors[offset]
            if self.pool_vectors is not None:
                mixed = self.pool_vectors[kind][picked].sum(axis=0) + self.pool_vectors["_fillers"][fillers].sum(axis=0)
                mixed = mixed / np.linalg.norm(mixed) + vector * 0.1  # a little noise: no two rows alike
                vector = (mixed / np.linalg.norm(mixed)).astype(np.float32)
            when = self.start + self.span * (number / self.rows) + timedelta(minutes=int(rng.integers(0, 600)))
            rows.append(
                (
                    kind,
                    source,
                    f"bench-{number}",
                    sentences[0][:60],
                    " ".join(sentences),
                    Jsonb({}),
                    when,
                    when,
                    when,
                    vector,
                    MODEL,
                    when,
                )
            )
        return rows


# ------------------------------------------------------------------------------------------------
# The database
# ------------------------------------------------------------------------------------------------
def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ms = sorted(sample * 1000 for sample in samples)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2), "max": round(ms[-1], 2)}


def ensure_server(data: Path, shared_buffers: str) -> Any:
    server = start_embedded(data)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        current = conn.execute("select current_setting('shared_buffers')").fetchone()[0]
        if current.lower() != shared_buffers.lower():
            conn.execute(f"alter system set shared_buffers = '{shared_buffers}'")
            restart = True
        else:
            restart = False
    if restart:  # shared_buffers only changes with a restart
        server.stop()
        server.start()
    return server


def ensure_database(server: Any, name: str) -> str:
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None:
            conn.execute(f"create database {name}")
    uri = server.get_uri(name)
    with psycopg.connect(uri, autocommit=True) as conn:
        # only once: applying schema.sql again would rebuild the indexes a resumed load dropped
        if (
            conn.execute("select to_regclass('public.memory_config')").fetchone()[0] is None
            or not conn.execute("select exists (select 1 from memory_config)").fetchone()[0]
        ):
            conn.execute(schema_sql().encode())
            conn.execute("select configure_memory(%s, %s, false)", (MODEL, DIMENSION))
    return uri


def load(uri: str, rows: int, build: dict[str, Any], vectors: str, cache: Path) -> None:
    maker = RowMaker(rows, vectors, cache)
    with psycopg.connect(uri, autocommit=True) as conn:
        register_vector(conn)
        done = conn.execute("select count(*) from memory").fetchone()[0]
        if done >= rows:
            return
        if done % CHUNK:
            raise SystemExit(f"memory has {done} rows, not a whole number of {CHUNK}-row chunks: drop the database")
        # a bulk load then one index build is far faster than growing GIN and HNSW row by row
        conn.execute("drop index if exists memory_embedding_hnsw")
        conn.execute("drop index if exists memory_fts")
        conn.execute("set synchronous_commit = off")
        started = time.perf_counter()
        with Progress(
            TextColumn("loading"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("load", total=rows, completed=done)
            for index in range(done // CHUNK, (rows + CHUNK - 1) // CHUNK):
                batch = maker.chunk(index)
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(
                        "copy memory (kind, source, source_id, title, content, metadata, occurred_at, created_at, "
                        "updated_at, embedding, embedding_model, embedded_at) from stdin with (format binary)"
                    ) as copy,
                ):
                    copy.set_types(
                        [
                            "text",
                            "text",
                            "text",
                            "text",
                            "text",
                            "jsonb",
                            "timestamptz",
                            "timestamptz",
                            "timestamptz",
                            "vector",
                            "text",
                            "timestamptz",
                        ]
                    )
                    for row in batch:
                        copy.write_row(row)
                progress.advance(task, len(batch))
        build["load_seconds"] = round(build.get("load_seconds", 0) + time.perf_counter() - started, 1)
        conn.execute("vacuum analyze memory")


def build_indexes(uri: str, rows: int, build: dict[str, Any], save: Callable[[], None], maintenance_mem: str) -> None:
    """GIN and HNSW as the product names them, built once over the loaded rows, and the seed's
    IVFFlat layout: created on an empty table, then filled."""
    steps = [
        ("gin_seconds", "memory_fts", "create index memory_fts on memory using gin (fts)"),
        (
            "hnsw_seconds",
            "memory_embedding_hnsw",
            "create index memory_embedding_hnsw on memory using hnsw (embedding vector_cosine_ops)",
        ),
        # what MEMORY_VECTOR_INDEX_KINDS (ticket is a default) gives the filtered searches
        (
            "hnsw_ticket_seconds",
            "memory_embedding_hnsw_ticket",
            "create index memory_embedding_hnsw_ticket on memory using hnsw (embedding vector_cosine_ops) "
            "where kind = 'ticket'",
        ),
    ]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"set maintenance_work_mem = '{maintenance_mem}'")
        conn.execute("set max_parallel_maintenance_workers = 1")  # 2 cores: the leader and one worker
        for key, index, statement in steps:
            if key in build and conn.execute("select to_regclass(%s)", (index,)).fetchone()[0]:
                continue
            conn.execute(f"drop index if exists {index}")
            console.print(f"building {index} ...")
            started = time.perf_counter()
            conn.execute(statement)
            build[key] = round(time.perf_counter() - started, 1)
            save()
        if "ivfflat_fill_seconds" not in build:
            # the seed's layout: lists = 100 chosen up front, the index made while the table is empty
            conn.execute("drop table if exists bench_ivf")
            conn.execute(
                f"create table bench_ivf (id bigint primary key, kind text not null, "
                f"embedding vector({DIMENSION}) not null)"
            )
            conn.execute(
                "create index bench_ivf_embedding on bench_ivf using ivfflat "
                "(embedding vector_cosine_ops) with (lists = 100)"
            )
            console.print("filling the IVFFlat table (index created empty) ...")
            started = time.perf_counter()
            conn.execute("insert into bench_ivf select id, kind, embedding from memory")
            build["ivfflat_fill_seconds"] = round(time.perf_counter() - started, 1)
            conn.execute("vacuum analyze bench_ivf")
            save()
        if "ivfflat_built_seconds" not in build:
            # for comparison, IVFFlat as pgvector advises: built after the data, lists = rows / 1000
            lists = max(rows // 1000, 10)
            conn.execute("drop table if exists bench_ivf_built")
            conn.execute("create table bench_ivf_built as select * from bench_ivf")
            console.print(f"building IVFFlat over the loaded rows (lists = {lists}) ...")
            started = time.perf_counter()
            conn.execute(
                f"create index bench_ivf_built_embedding on bench_ivf_built using ivfflat "
                f"(embedding vector_cosine_ops) with (lists = {lists})"
            )
            build["ivfflat_built_seconds"] = round(time.perf_counter() - started, 1)
            build["ivfflat_built_lists"] = lists
            conn.execute("vacuum analyze bench_ivf_built")
            save()
        sizes = conn.execute(
            "select relname, pg_relation_size(oid) from pg_class where relname in ('memory', 'memory_fts', "
            "'memory_embedding_hnsw', 'memory_embedding_hnsw_ticket', 'bench_ivf_embedding', "
            "'bench_ivf_built_embedding')"
        ).fetchall()
        build["sizes_mb"] = {name: round(size / 2**20, 1) for name, size in sizes}
        build["memory_total_mb"] = round(
            conn.execute("select pg_total_relation_size('memory')").fetchone()[0] / 2**20, 1
        )
        save()


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------
def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIMENSION), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def model_queries(rng: np.random.Generator, count: int) -> np.ndarray:
    """For --vectors minilm: the model's vectors of new sentences on the same topics, as a person's
    query would be (uniformly random vectors are nowhere near real embeddings)."""
    from integrations.embeddings import LOCAL_DIMENSION, LOCAL_MODEL, EmbeddingSpec, LocalEmbedder

    kinds = [kind for kind, _, _ in KINDS]
    texts = [sentence_pool(rng, kinds[i % len(kinds)], size=1)[0] for i in range(count)]
    embedder = LocalEmbedder(EmbeddingSpec("local", LOCAL_MODEL, LOCAL_DIMENSION))
    return np.asarray(embedder.embed_documents(texts), dtype=np.float32)


def near_vectors(conn: psycopg.Connection, rng: np.random.Generator, count: int, rows: int) -> np.ndarray:
    """Queries that have a true neighbour: a stored vector plus noise (cosine about 0.8), the
    situation of a real query with a relevant document."""
    picked = [int(i) for i in rng.integers(0, rows, size=count)]
    stored = conn.execute(
        "select embedding from memory where source_id = any(%s) order by source_id", ([f"bench-{i}" for i in picked],)
    ).fetchall()
    base = np.array(
        [np.asarray(row[0].to_list() if hasattr(row[0], "to_list") else row[0]) for row in stored], dtype=np.float32
    )
    noisy = base + unit_vectors(rng, len(base)) * 0.75
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def search(
    conn: psycopg.Connection,
    query: str,
    mode: str,
    vector: np.ndarray | None,
    *,
    kinds: list[str] | None = None,
    fts_rank_limit: int | None = DEFAULTS.memory_fts_rank_limit,
) -> Any:
    """The product's call (app.memory.store.MemoryStore.search), with its default settings."""
    return conn.execute(
        "select search_memory(p_query => %s, p_mode => %s, p_embedding => null, p_vector => %s, p_kinds => %s, "
        "p_since => null, p_limit => 10, p_candidates => %s, p_fts_weight => %s, p_vector_weight => %s, "
        "p_rrf_k => %s, p_ef_search => %s, p_fts_rank_limit => %s, p_include_content => false)",
        (
            query,
            mode,
            QueryVector(vector.tolist()) if vector is not None else None,
            Jsonb(kinds) if kinds else None,
            DEFAULTS.memory_search_candidates,
            DEFAULTS.memory_fts_weight,
            DEFAULTS.memory_vector_weight,
            DEFAULTS.memory_rrf_k,
            DEFAULTS.memory_hnsw_ef_search,
            fts_rank_limit,
        ),
    ).fetchone()[0]


def warm_cache(conn: psycopg.Connection) -> dict[str, float]:
    """Read every file of the searched tables and indexes once, so the OS page cache holds them, as
    it would on a server that has been answering searches (pg_prewarm is not in the embedded build).
    Without this the first searches after a build measure the disk."""
    data_dir = Path(conn.execute("select current_setting('data_directory')").fetchone()[0])
    files = conn.execute(
        "select pg_relation_filepath(c.oid) from pg_class c "
        "where c.relname in ('memory', 'bench_ivf', 'bench_ivf_built') "
        "or c.oid in (select indexrelid from pg_index where indrelid in "
        "  (select oid from pg_class where relname in ('memory', 'bench_ivf', 'bench_ivf_built'))) "
        "or c.oid = (select reltoastrelid from pg_class where relname = 'memory')"
    ).fetchall()
    started, size = time.perf_counter(), 0
    for (relative,) in files:
        for segment in sorted(data_dir.glob(f"{relative}*")):  # 1 GB segments: base, .1, .2, ...
            if segment.name == Path(relative).name or segment.name.startswith(Path(relative).name + "."):
                with segment.open("rb") as handle:
                    while chunk := handle.read(1 << 24):
                        size += len(chunk)
    return {"mb_read": round(size / 2**20), "seconds": round(time.perf_counter() - started, 1)}


def latency(conn: psycopg.Connection, calls: list[Callable[[], Any]], warmup: int = 10) -> dict[str, float]:
    for call in calls[:warmup]:
        call()
    samples = []
    for call in calls:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def per_query(conn: psycopg.Connection, queries: Sequence[str], repeats: int = 5) -> dict[str, Any]:
    """Each full-text query on its own: how many rows it matches, which way search_memory found
    the newest matches (fts_strategy), and its median time."""
    out: dict[str, Any] = {}
    for query in queries:
        matches = conn.execute("select count(*) from memory where fts @@ memory_tsquery(%s)", (query,)).fetchone()[0]
        samples, strategy = [], None
        for _ in range(repeats):
            started = time.perf_counter()
            strategy = search(conn, query, "fts", None)["fts_strategy"]
            samples.append(time.perf_counter() - started)
        out[query] = {"matches": matches, "strategy": strategy, "p50_ms": round(statistics.median(samples) * 1000, 2)}
    return out


def knn(
    conn: psycopg.Connection,
    table: str,
    vector: np.ndarray,
    *,
    kind: str | None = None,
    candidates: int = 10,
    shared_graph: bool = False,
) -> list[int]:
    """The 10 nearest, found as search_memory finds them: the index's best `candidates` rows
    (filtered inside the scan), re-sorted by exact distance. `shared_graph` words the kind filter
    so that it does not imply a partial index's predicate: the main index with a filter."""
    where = "" if not kind else "where kind || '' = %(kind)s" if shared_graph else "where kind = %(kind)s"
    rows = conn.execute(
        f"with found as materialized (select id, embedding <=> %(v)s as distance from {table} {where} "
        f"order by embedding <=> %(v)s limit %(candidates)s) select id from found order by distance, id limit 10",
        {"v": vector, "kind": kind, "candidates": candidates},
    )
    return [row[0] for row in rows]


def recall(
    conn: psycopg.Connection,
    table: str,
    queries: np.ndarray,
    truth: list[list[int]],
    settings: dict[str, str],
    *,
    kind: str | None = None,
    shared_graph: bool = False,
) -> dict[str, float]:
    hits = returned = 0
    samples = []
    with conn.transaction():
        # the index, even where the planner would rather scan everything (small tables, high
        # ef_search): an exact scan would report a recall of 1 that the index never gave
        conn.execute("set local enable_seqscan = off")
        for name, value in settings.items():
            conn.execute("select set_config(%s, %s, true)", (name, value))
        for vector, exact in zip(queries, truth, strict=True):
            started = time.perf_counter()
            found = knn(
                conn, table, vector, kind=kind, candidates=DEFAULTS.memory_search_candidates, shared_graph=shared_graph
            )
            samples.append(time.perf_counter() - started)
            hits += len(set(found) & set(exact))
            returned += len(found)
    return {
        "recall@10": round(hits / (10 * len(truth)), 4),
        "rows_returned": round(returned / len(truth), 2),
        **percentiles(samples),
    }


def exact(conn: psycopg.Connection, table: str, queries: np.ndarray, *, kind: str | None = None) -> list[list[int]]:
    with conn.transaction():
        conn.execute("set local enable_indexscan = off")
        conn.execute("set local enable_bitmapscan = off")
        conn.execute("set local max_parallel_workers_per_gather = 1")
        return [knn(conn, table, vector, kind=kind) for vector in queries]


def contrast(conn: psycopg.Connection, queries: np.ndarray) -> dict[str, float]:
    """Mean cosine similarity of each query's 1st, 10th, 100th and 1000th nearest row (exact): how
    much nearer the true top 10 are than the crowd behind them. Where the 10th and the 1000th are
    almost equally near, any index that does not compare everything must miss some of the top 10."""
    picks = {"1st": 0, "10th": 9, "100th": 99, "1000th": 999}
    sums = dict.fromkeys(picks, 0.0)
    with conn.transaction():
        conn.execute("set local enable_indexscan = off")
        conn.execute("set local enable_bitmapscan = off")
        for vector in queries:
            distances = [
                row[0]
                for row in conn.execute(
                    "select embedding <=> %s from memory order by embedding <=> %s limit 1000", (vector, vector)
                )
            ]
            for name, index in picks.items():
                sums[name] += 1 - distances[index]
    return {name: round(total / len(queries), 4) for name, total in sums.items()}


def explain(conn: psycopg.Connection, statement: str, params: tuple[Any, ...], settings: dict[str, str]) -> list[str]:
    with conn.transaction():
        for name, value in settings.items():
            conn.execute("select set_config(%s, %s, true)", (name, value))
        lines = conn.execute(f"explain (analyze, costs off, timing off, summary off) {statement}", params).fetchall()
    return [re.sub(r"'\[[^']*\]'::vector", "'[384 numbers]'::vector", line) for (line,) in lines]


def measure(
    uri: str, rows: int, query_count: int, recall_count: int, vectors_kind: str, *, cold: bool
) -> dict[str, Any]:
    rng = np.random.default_rng(SEED + 1)
    results: dict[str, Any] = {}
    # no server-side prepared statements, as in the product: a plan prepared while the exact scans
    # had index scans off would be reused by the index runs
    with psycopg.connect(uri, autocommit=True, prepare_threshold=None) as conn:
        register_vector(conn)
        share = conn.execute("select count(*) filter (where kind = 'ticket')::float / count(*) from memory").fetchone()
        results["ticket_share"] = round(share[0], 4)
        matches = {
            query: conn.execute("select count(*) from memory where fts @@ memory_tsquery(%s)", (query,)).fetchone()[0]
            for query in COMMON_QUERIES
        }
        results["common_word_matches"] = matches
        results["cache"] = "cold (as left by the build)" if cold else {"warmed": warm_cache(conn)}

        console.print("latency ...")
        texts = [TOPIC_QUERIES[i % len(TOPIC_QUERIES)] for i in range(query_count)]
        vectors = unit_vectors(rng, query_count)
        lat: dict[str, Any] = {}
        lat["fts"] = latency(conn, [lambda q=q: search(conn, q, "fts", None) for q in texts])
        results["fts_queries"] = per_query(conn, TOPIC_QUERIES + COMMON_QUERIES)
        lat["vector"] = latency(conn, [lambda v=v: search(conn, "x", "vector", v) for v in vectors])
        lat["hybrid"] = latency(
            conn, [lambda q=q, v=v: search(conn, q, "hybrid", v) for q, v in zip(texts, vectors, strict=True)]
        )
        lat["hybrid, kind=ticket (10%)"] = latency(
            conn,
            [
                lambda q=q, v=v: search(conn, q, "hybrid", v, kinds=["ticket"])
                for q, v in zip(texts, vectors, strict=True)
            ],
        )
        common = [COMMON_QUERIES[i % len(COMMON_QUERIES)] for i in range(max(query_count // 4, 25))]
        lat["fts, common words"] = latency(conn, [lambda q=q: search(conn, q, "fts", None) for q in common])
        lat["hybrid, common words"] = latency(
            conn, [lambda q=q, v=v: search(conn, q, "hybrid", v) for q, v in zip(common, vectors, strict=False)]
        )
        slow = common[: len(COMMON_QUERIES) * 2]
        lat["fts, common words, every match ranked"] = latency(
            conn, [lambda q=q: search(conn, q, "fts", None, fts_rank_limit=None) for q in slow], warmup=2
        )
        results["latency_ms"] = lat

        console.print("exact neighbours (sequential scans) ...")
        qname = "random" if vectors_kind == "random" else "model"
        # "random": uniformly random unit vectors, or with --vectors minilm the model's vectors of
        # new sentences; "near": a stored row's vector plus noise, a query with a close answer
        random_q = unit_vectors(rng, recall_count) if vectors_kind == "random" else model_queries(rng, recall_count)
        near_q = near_vectors(conn, rng, recall_count, rows)
        truth = {
            "random": exact(conn, "memory", random_q),
            "near": exact(conn, "memory", near_q),
            "random, kind=ticket": exact(conn, "memory", random_q, kind="ticket"),
        }
        results["neighbour_similarity"] = {
            f"{qname} queries": contrast(conn, random_q[:20]),
            "near queries": contrast(conn, near_q[:20]),
        }
        console.print("recall ...")
        rec: dict[str, Any] = {}
        for ef in (40, 100, 200, 400, 1000):
            settings = {"hnsw.ef_search": str(ef)}
            rec[f"hnsw ef_search={ef}, {qname} queries"] = recall(conn, "memory", random_q, truth["random"], settings)
            rec[f"hnsw ef_search={ef}, near queries"] = recall(conn, "memory", near_q, truth["near"], settings)
        for ef in (100, 400):
            rec[f"hnsw shared graph ef_search={ef}, kind=ticket, no iterative scan"] = recall(
                conn,
                "memory",
                random_q,
                truth["random, kind=ticket"],
                {"hnsw.ef_search": str(ef), "hnsw.iterative_scan": "off"},
                kind="ticket",
                shared_graph=True,
            )
            rec[f"hnsw shared graph ef_search={ef}, kind=ticket, iterative relaxed_order"] = recall(
                conn,
                "memory",
                random_q,
                truth["random, kind=ticket"],
                {"hnsw.ef_search": str(ef), "hnsw.iterative_scan": "relaxed_order"},
                kind="ticket",
                shared_graph=True,
            )
        for ef in (40, 100, 400):
            rec[f"hnsw partial index (kind=ticket) ef_search={ef}"] = recall(
                conn,
                "memory",
                random_q,
                truth["random, kind=ticket"],
                {"hnsw.ef_search": str(ef), "hnsw.iterative_scan": "relaxed_order"},
                kind="ticket",
            )
        for probes in (1, 10):
            settings = {"ivfflat.probes": str(probes)}
            rec[f"ivfflat (created empty, lists=100) probes={probes}, {qname} queries"] = recall(
                conn, "bench_ivf", random_q, truth["random"], settings
            )
            rec[f"ivfflat (created empty, lists=100) probes={probes}, near queries"] = recall(
                conn, "bench_ivf", near_q, truth["near"], settings
            )
        lists = int(conn.execute("select count(*) from bench_ivf_built").fetchone()[0]) // 1000
        for probes in sorted({max(round(max(lists, 10) ** 0.5), 1), 10, 40}):
            settings = {"ivfflat.probes": str(probes)}
            rec[f"ivfflat (built after load) probes={probes}, {qname} queries"] = recall(
                conn, "bench_ivf_built", random_q, truth["random"], settings
            )
            rec[f"ivfflat (built after load) probes={probes}, near queries"] = recall(
                conn, "bench_ivf_built", near_q, truth["near"], settings
            )
        results["recall"] = rec

        vector = random_q[0]
        hnsw = {"hnsw.ef_search": "100", "hnsw.iterative_scan": "relaxed_order"}
        want = DEFAULTS.memory_fts_rank_limit + 1
        results["explain"] = {
            # search_memory's three full-text statements, as it runs them
            "fts pilot: the newest rows, each tested": explain(
                conn,
                "select id, occurred_at, ts_match_vq(fts, memory_tsquery(%s)) from memory "
                "order by occurred_at desc limit %s",
                ("order", 10 * want),
                {},
            ),
            "fts scan: newest first until enough match": explain(
                conn,
                "select s.id from (select id, fts, occurred_at from memory order by occurred_at desc "
                "limit %s) s where ts_match_vq(s.fts, memory_tsquery(%s)) order by s.occurred_at desc "
                "limit %s",
                (40 * want, "milk frother", want),
                {},
            ),
            "fts index: a rarer word through GIN": explain(
                conn,
                "select id from memory where fts @@ memory_tsquery(%s) order by occurred_at desc limit %s",
                ("kettle leaks", want),
                {"enable_indexscan": "off", "work_mem": "32MB"},
            ),
            "vector": explain(
                conn,
                "select id from memory where embedding is not null order by embedding <=> %s limit 30",
                (vector,),
                hnsw,
            ),
            "vector, kind=ticket": explain(
                conn,
                "select id from memory where embedding is not null and "
                "kind = any(%s) order by embedding <=> %s limit 30",
                (["ticket"], vector),
                hnsw,
            ),
        }
    return results


# ------------------------------------------------------------------------------------------------
def print_results(label: str, build: dict[str, Any], results: dict[str, Any]) -> None:
    table = Table(title=f"memory search, {label} rows: latency (ms, one client)")
    for column in ("search", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="left" if column == "search" else "right")
    for name, values in results["latency_ms"].items():
        table.add_row(name, *(f"{values[key]:.1f}" for key in ("p50", "p95", "p99", "max")))
    console.print(table)
    table = Table(title=f"recall@10 against an exact scan, {label} rows")
    for column in ("index and settings", "recall@10", "rows", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column.startswith("index") else "right")
    for name, values in results["recall"].items():
        table.add_row(
            name,
            f"{values['recall@10']:.3f}",
            f"{values['rows_returned']:.1f}",
            f"{values['p50']:.1f}",
            f"{values['p95']:.1f}",
        )
    console.print(table)
    table = Table(title=f"full-text queries one by one, {label} rows")
    for column in ("query", "matches", "strategy", "p50 ms"):
        table.add_column(column, justify="left" if column in ("query", "strategy") else "right")
    for query, values in results["fts_queries"].items():
        table.add_row(query, f"{values['matches']:,}", str(values["strategy"]), f"{values['p50_ms']:.1f}")
    console.print(table)
    console.print({"neighbour_similarity": results["neighbour_similarity"]})
    console.print(
        {"build": build, "ticket_share": results["ticket_share"], "common_word_matches": results["common_word_matches"]}
    )
    for name, lines in results["explain"].items():
        console.print(f"[bold]EXPLAIN {name}[/bold]")
        console.print("\n".join(lines), markup=False, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--vectors",
        choices=("random", "minilm"),
        default="random",
        help="random unit vectors (as specified), or real-model geometry (see above)",
    )
    parser.add_argument("--queries", type=int, default=200, help="searches timed per kind of search")
    parser.add_argument("--recall-queries", type=int, default=100, help="query vectors for recall")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("/tmp/opsdesk-bench-memory"),
        help="the embedded server's folder (kept, so runs resume)",
    )
    parser.add_argument("--shared-buffers", default="2GB")
    parser.add_argument("--maintenance-work-mem", default="4GB", help="for the index builds")
    parser.add_argument(
        "--cold", action="store_true", help="measure without reading the tables into the OS page cache first"
    )
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/memory-<rows>.json)")
    args = parser.parse_args(argv)
    label = f"{args.rows // 1000}k" if args.rows < 1_000_000 else f"{args.rows / 1_000_000:g}M"
    suffix = ("" if args.vectors == "random" else f"-{args.vectors}") + ("-cold" if args.cold else "")
    out = args.out or ROOT / "bench" / "results" / f"memory-{label}{suffix}.json"

    server = ensure_server(args.data, args.shared_buffers)
    uri = ensure_database(server, f"bench_memory_{args.rows}_{args.vectors}")
    state = args.data / f"build-{args.rows}-{args.vectors}.json"
    build: dict[str, Any] = json.loads(state.read_text()) if state.exists() else {}

    def save() -> None:
        state.write_text(json.dumps(build, indent=2))

    load(uri, args.rows, build, args.vectors, args.data / "pool-vectors.npz")
    save()
    build_indexes(uri, args.rows, build, save, args.maintenance_work_mem)
    with psycopg.connect(uri, autocommit=True) as conn:  # every index exists now: this only refreshes functions
        conn.execute(schema_sql().encode())
    code = code_version(schema_sql())  # now: the tree may change while the benchmark runs
    results = measure(uri, args.rows, args.queries, args.recall_queries, args.vectors, cold=args.cold)
    print_results(label + ("" if args.vectors == "random" else f" ({args.vectors} vectors)"), build, results)
    with psycopg.connect(uri) as conn:
        server_settings = {
            name: conn.execute("select current_setting(%s)", (name,)).fetchone()[0]
            for name in ("server_version", "shared_buffers", "work_mem", "max_parallel_workers")
        }
        vector_version = conn.execute("select extversion from pg_extension where extname = 'vector'").fetchone()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "vectors": args.vectors,
                "dimension": DIMENSION,
                "code": code,
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
                },
                "server": server_settings | {"pgvector": vector_version},
                "build": build,
                **results,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
