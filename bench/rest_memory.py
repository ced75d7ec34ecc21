"""Memory over Supabase's REST API at size: the longest single call, which Supabase stops at 8 s.

    python bench/rest_memory.py --rows 100000 [--data /tmp/opsdesk-bench-rest] [--out FILE]

The path production takes: the real supabase-py client (app.core.database.SupabaseTransport) calls the
functions over HTTP; the stand-in API (tests/postgrest_on_supabase.py) runs each as `service_role`
through `authenticator`, on a Supabase-shaped database (tests/supabase_shape.py: Supabase's roles,
default privileges, `vector` in `extensions`, schema.sql applied by the non-superuser owner). The
API's timeout is raised to an hour so that every call runs to its end and its length is measured,
not cut off.

Rows are bench/memory.py's synthetic memory (the same generator), 384-dimensional random unit
vectors from a seeded embedder (no model: the database's work is what is measured). Phases:

1. configure: start-up's configure_memory on ROWS rows without vectors (makes the empty indexes);
2. embed: every row embedded in EMBEDDINGS_BATCH_SIZE (64) batches, the indexes growing with them;
3. search: fts, vector, hybrid, and hybrid filtered to tickets, 50 each;
4. missing index: the state issue 11 left (indexes dropped over every vector), then start-up and
   maintain_indexes (park, create, fill back);
5. reindex: `opsdesk memory reindex` to another model: every row again.

Side by side, the reference: what main did in one call (configure_memory building the shared
HNSW index and the kinds' over every vector), timed on a direct connection without a timeout.
For each function: calls, the longest call measured in the database (what the statement timeout
counts) and over HTTP (the client's round trip), and the total.
"""

# ruff: noqa: E402  (the project root goes on sys.path before the app is imported)
from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import platform
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

from app.core.database import Database, SupabaseTransport, schema_sql
from app.core.database_setup import start_embedded
from app.core.settings import Settings
from app.memory.store import MemoryStore, check_embeddings
from bench.memory import CHUNK, RowMaker
from bench.provenance import code_version
from integrations.embeddings import EmbeddingSpec
from tests.memory_fakes import SeededEmbedder
from tests.postgrest_on_supabase import SERVICE_KEY, PostgrestOnSupabase
from tests.supabase_shape import TEMPLATE, SupabaseShape

SPEC = EmbeddingSpec("local", "all-MiniLM-L6-v2", 384)
NEXT = EmbeddingSpec("local", "bench-next-model", 384)  # a reindex to another model, same size
KINDS = ["kb_article", "decision", "feedback", "ticket", "report"]  # MEMORY_VECTOR_INDEX_KINDS' default
QUERIES = [
    "kettle leaks",
    "refund teapot",
    "warranty handle",
    "newsletter",
    "milk frother",
    "order status",
    "broken lid",
    "descale kettle",
    "holiday sale",
    "wholesale price",
]
console = Console()


class Timed:
    """Every REST call of a phase: the client's round trip, and the database's time from the stand-in."""

    def __init__(self, api: PostgrestOnSupabase) -> None:
        self.api = api
        self.round_trips: dict[str, list[float]] = defaultdict(list)

    def wrap(self, db: Database) -> None:
        call = db.transport.call

        def timed(function: str, params: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(function, params)
            finally:
                self.round_trips[function].append(time.perf_counter() - started)

        db.transport.call = timed  # type: ignore[method-assign]

    def phase(self, name: str, work: Callable[[], Any]) -> dict[str, Any]:
        self.api.calls.clear()
        self.round_trips.clear()
        console.print(f"[bold]{name}[/bold] ...")
        started = time.perf_counter()
        work()
        wall = time.perf_counter() - started
        per: dict[str, dict[str, Any]] = {}
        for function, seconds, status in list(self.api.calls):
            entry = per.setdefault(function, {"calls": 0, "db_max_s": 0.0, "db_total_s": 0.0, "errors": 0})
            entry["calls"] += 1
            entry["db_max_s"] = max(entry["db_max_s"], seconds)
            entry["db_total_s"] += seconds
            entry["errors"] += status != 200
        for function, times in self.round_trips.items():
            per.setdefault(function, {})["http_max_s"] = max(times)
        rounded = {f: {k: round(v, 3) if isinstance(v, float) else v for k, v in e.items()} for f, e in per.items()}
        longest = max(rounded.items(), key=lambda item: item[1].get("db_max_s", 0))
        console.print(f"  {wall:.0f} s; longest call {longest[0]} {longest[1].get('db_max_s')} s in the database")
        return {"wall_s": round(wall, 1), "functions": rounded}


def load(shape: SupabaseShape, database: str, rows: int) -> None:
    maker = RowMaker(rows, "random", Path("/nonexistent"))
    with psycopg.connect(shape.superuser_uri(database), autocommit=True) as conn:
        if conn.execute("select count(*) from memory").fetchone()[0] == rows:
            return
        conn.execute("truncate memory")
        for index in range((rows + CHUNK - 1) // CHUNK):
            with (
                conn.transaction(),
                conn.cursor() as cursor,
                cursor.copy(
                    "copy memory (kind, source, source_id, title, content, metadata, occurred_at, created_at, "
                    "updated_at) from stdin with (format binary)"
                ) as copy,
            ):
                copy.set_types(
                    ["text", "text", "text", "text", "text", "jsonb", "timestamptz", "timestamptz", "timestamptz"]
                )
                for row in maker.chunk(index):
                    copy.write_row(row[:9])
        conn.execute("vacuum analyze memory")


def one_shot_reference(shape: SupabaseShape, database: str) -> dict[str, float]:
    """What configure_memory did on main: every HNSW index over every vector in one statement."""
    with psycopg.connect(shape.superuser_uri(database), autocommit=True) as conn:
        conn.execute("set search_path = public, extensions")
        timings = {}
        for kind in [None, *KINDS]:
            name = "bench_reference_hnsw" + (f"_{kind}" if kind else "")
            where = f" where kind = '{kind}'" if kind else ""
            started = time.perf_counter()
            conn.execute(f"create index {name} on memory using hnsw (embedding vector_cosine_ops){where}")
            timings[name] = round(time.perf_counter() - started, 1)
            conn.execute(f"drop index {name}")
        timings["total_s"] = round(sum(timings.values()), 1)
        return timings


def drop_vector_indexes(shape: SupabaseShape, database: str) -> None:
    with psycopg.connect(shape.superuser_uri(database), autocommit=True) as conn:
        for (index,) in conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = 'public.memory'::regclass"
        ).fetchall():
            if index.startswith("memory_embedding_hnsw"):
                conn.execute(f"drop index {index}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/opsdesk-bench-rest"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    label = f"{args.rows // 1000}k"
    out = args.out or ROOT / "bench" / "results" / f"rest-memory-{label}.json"
    code = code_version(schema_sql())  # now: the tree may change while the benchmark runs
    shutil.rmtree(args.data, ignore_errors=True)  # each run starts from Supabase's shape
    args.data.mkdir(parents=True)
    (args.data / "trusted").mkdir()
    server = start_embedded(args.data)
    try:
        shape = SupabaseShape(server, args.data / "trusted")
        database = shape.clone(TEMPLATE, "bench_rest_memory")
        load(shape, database, args.rows)
        # long enough to measure any call to its end; not 0, which would tell memory_index_step
        # it may build an index in one statement, as on a server without a limit
        api = PostgrestOnSupabase(shape.authenticator_uri(database), statement_timeout="1h")
        settings = Settings(
            _env_file=None,
            supabase_url=api.url,
            supabase_service_role_key=SERVICE_KEY,
            embeddings_provider="local",
            opsdesk_data_dir=args.data / "opsdesk",
        )
        db = Database(SupabaseTransport(api.url, SERVICE_KEY, timeout=600))
        timed = Timed(api)
        timed.wrap(db)
        store = MemoryStore(db, settings, embedder=SeededEmbedder(SPEC))
        phases: dict[str, Any] = {}
        phases["configure"] = timed.phase(
            "configure (start-up, no vectors yet)", lambda: check_embeddings(db, settings)
        )
        phases["embed"] = timed.phase("embed every row", lambda: store.embed_pending())
        phases["search"] = timed.phase(
            "search",
            lambda: [
                store.search(query, mode=mode, kinds=kinds)
                for _ in range(5)
                for query in QUERIES
                for mode, kinds in (("fts", []), ("vector", []), ("hybrid", []), ("hybrid", ["ticket"]))
            ],
        )
        reference = one_shot_reference(shape, database)
        console.print(f"reference, main's one-statement build: {reference['total_s']} s")
        drop_vector_indexes(shape, database)
        phases["missing_index_start_up"] = timed.phase(
            "start-up with the indexes missing over every vector", lambda: check_embeddings(db, settings)
        )
        phases["missing_index_steps"] = timed.phase(
            "maintain_indexes: park, create, fill back", lambda: store.maintain_indexes()
        )
        next_store = MemoryStore(db, settings, embedder=SeededEmbedder(NEXT))
        phases["reindex"] = timed.phase("reindex to another model", lambda: next_store.reindex())
        longest = max(
            (
                (name, function, entry["db_max_s"])
                for name, phase in phases.items()
                for function, entry in phase["functions"].items()
            ),
            key=lambda item: item[2],
        )
        with psycopg.connect(shape.superuser_uri(database)) as conn:
            server_settings = {
                name: conn.execute("select current_setting(%s)", (name,)).fetchone()[0]
                for name in ("server_version", "shared_buffers", "maintenance_work_mem")
            }
            pgvector = conn.execute("select extversion from pg_extension where extname = 'vector'").fetchone()[0]
        db.close()
        api.close()
    finally:
        server.cleanup()
    table = Table(title=f"REST calls at {args.rows:,} rows (longest in the database / over HTTP, seconds)")
    for column in ("phase", "function", "calls", "db max", "http max", "db total"):
        table.add_column(column, justify="left" if column in ("phase", "function") else "right")
    for name, phase in phases.items():
        for function, entry in sorted(phase["functions"].items()):
            table.add_row(
                name,
                function,
                str(entry.get("calls", "")),
                str(entry.get("db_max_s", "")),
                str(entry.get("http_max_s", "")),
                str(entry.get("db_total_s", "")),
            )
    console.print(table)
    console.print(
        f"longest call: {longest[1]} ({longest[0]}) {longest[2]} s; main's one call: {reference['total_s']} s"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "dimension": SPEC.dimension,
                "code": code,
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
                },
                "server": server_settings | {"pgvector": pgvector, "httpx": httpx.__version__, "numpy": np.__version__},
                "longest_call": {"phase": longest[0], "function": longest[1], "db_s": longest[2]},
                "one_statement_reference": reference,
                "phases": phases,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
