"""Part `vector` of bench/compare.py: search_memory's vector mode against a plain pgvector query.

The data is bench/memory.py's: the same generator, server folder and database, built once and kept
(`--vector-data`, by default memory.py's own /tmp/opsdesk-bench-memory, so either script reuses
what the other built). With `--vectors minilm` (the default here) each row's vector is the real
all-MiniLM-L6-v2 geometry (the deployment's model), and the queries are the model's vectors of new
sentences; `random` gives uniformly random unit vectors, where no index reaches a useful recall
(bench/README.md, "What the recall numbers say").

Per query, in alternating order, one connection each (autocommit, no prepared statements):
- opsdesk: `search_memory(mode => 'vector', limit => 10)` as app.memory.store calls it, default settings;
- plain: `select id from memory order by embedding <=> q limit 10`, pgvector's defaults (ef_search 40);
- plain, same ef_search: the plain query with opsdesk's MEMORY_HNSW_EF_SEARCH.
Recall@10 of each against an exact scan (indexes off) of the same rows and query vectors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bench import memory
from bench.compare_common import alternate, median_of, percentiles, ratio
from bench.opsdesk_adapter import schema_sql

SYSTEMS = ("opsdesk", "plain", "plain_same_ef")
PLAIN_SQL = "select id from memory order by embedding <=> %s limit 10"


def dataset(data: Path, rows: int, vectors: str, log: Callable[[str], None]) -> tuple[Any, str, dict[str, Any]]:
    """bench/memory.py's server and database, loaded and indexed once (resumable)."""
    server = memory.ensure_server(data, "2GB")
    uri = memory.ensure_database(server, f"bench_memory_{rows}_{vectors}")
    state = data / f"build-{rows}-{vectors}.json"
    build: dict[str, Any] = json.loads(state.read_text()) if state.exists() else {}

    def save() -> None:
        state.write_text(json.dumps(build, indent=2))

    memory.load(uri, rows, build, vectors, data / "pool-vectors.npz")
    save()
    memory.build_indexes(uri, rows, build, save, "4GB")
    with psycopg.connect(uri, autocommit=True) as conn:  # today's search_memory, not the one the data was built with
        conn.execute(schema_sql().encode())
    log(f"vector data ready: {rows:,} rows ({vectors}) in {data}")
    return server, uri, build


def run(
    data: Path, *, rows: int, vectors: str, queries: int, rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    server, uri, build = dataset(data, rows, vectors, log)
    try:
        rng = np.random.default_rng(memory.SEED + 2)
        query_vectors = memory.model_queries(rng, queries) if vectors == "minilm" else memory.unit_vectors(rng, queries)
        ef_search = memory.DEFAULTS.memory_hnsw_ef_search
        with (
            psycopg.connect(uri, autocommit=True, prepare_threshold=None) as product,
            psycopg.connect(uri, autocommit=True, prepare_threshold=None) as plain,
            psycopg.connect(uri, autocommit=True, prepare_threshold=None) as same_ef,
        ):
            for conn in (product, plain, same_ef):
                register_vector(conn)
            same_ef.execute("select set_config('hnsw.ef_search', %s, false)", (str(ef_search),))
            warmed = memory.warm_cache(product)
            log("exact neighbours (sequential scans) ...")
            truth = memory.exact(product, "memory", query_vectors)

            def call(system: str, vector: np.ndarray) -> list[int]:
                if system == "opsdesk":
                    return [item["id"] for item in memory.search(product, "x", "vector", vector)["results"]]
                conn = plain if system == "plain" else same_ef
                return [row[0] for row in conn.execute(PLAIN_SQL, (vector,))]

            for vector in query_vectors[:20]:  # warm-up, not kept
                for system in SYSTEMS:
                    call(system, vector)
            per_round: dict[str, list[dict[str, float]]] = {s: [] for s in SYSTEMS}
            found: dict[str, list[list[int]]] = {s: [] for s in SYSTEMS}
            for round_no in range(rounds):
                samples: dict[str, list[float]] = {s: [] for s in SYSTEMS}
                for q, vector in enumerate(query_vectors):
                    for system in alternate(SYSTEMS, round_no + q):
                        began = time.perf_counter()
                        ids = call(system, vector)
                        samples[system].append(time.perf_counter() - began)
                        if round_no == 0:
                            found[system].append(ids)
                for system in SYSTEMS:
                    per_round[system].append(percentiles(samples[system]))
                log(
                    f"vector round {round_no + 1}/{rounds}: p50 "
                    + ", ".join(f"{s} {per_round[s][-1]['p50']:.2f} ms" for s in SYSTEMS)
                )
        recall = {
            s: round(sum(len(set(f) & set(t)) for f, t in zip(found[s], truth, strict=True)) / (10 * len(truth)), 4)
            for s in SYSTEMS
        }
    finally:
        server.cleanup()
    medians = {s: median_of(r) for s, r in per_round.items()}
    mine = medians["opsdesk"]
    return {
        "config": {
            "rows": rows,
            "vectors": vectors,
            "queries": queries,
            "rounds": rounds,
            "opsdesk_ef_search": ef_search,
            "data": str(data),
            "cache": {"warmed": warmed},
            "build": build,
        },
        "latency_ms": {s: {"median": medians[s], "rounds": per_round[s]} for s in SYSTEMS},
        "recall@10": recall,
        "ratios": {
            "p50 opsdesk / plain": ratio(mine["p50"], medians["plain"]["p50"]),
            "p95 opsdesk / plain": ratio(mine["p95"], medians["plain"]["p95"]),
            "p50 opsdesk / plain same ef": ratio(mine["p50"], medians["plain_same_ef"]["p50"]),
        },
    }
