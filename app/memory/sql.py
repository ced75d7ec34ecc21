"""The SQL functions of app/memory: memory: its items, their vectors and indexes, retention.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix). QueryVector is how a search's query
vector goes to PostgreSQL.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from app.core.database import Database

if TYPE_CHECKING:
    _Float32s = array[float]
else:
    _Float32s = array  # not subscriptable before Python 3.12


class QueryVector(_Float32s):
    """A query's embedding as search_memory's `p_vector`, a real[]: its numbers rounded to float32
    (what pgvector keeps), sent in PostgreSQL's binary form. Written as pgvector's text it cost a
    tenth of a vector search, formatting 384 numbers here and parsing them there (bench/README.md,
    issue 15). Over Supabase's REST API it goes as a JSON array (an array.array, as
    app.core.database sends one)."""

    def __new__(cls, embedding: Iterable[float]) -> QueryVector:
        return cast(QueryVector, super().__new__(cls, "f", embedding))

    def binary(self) -> bytes:
        """PostgreSQL's binary real[]: one dimension, no nulls, then each number as its length (4)
        and its big-endian float32."""
        words = array("I", bytes(8 * len(self)))
        words[0::2] = _FOUR * len(self)
        words[1::2] = array("I", self.tobytes())  # the float32s' bits
        if sys.byteorder == "little":
            words.byteswap()
        return _REAL_ARRAY_HEADER.pack(1, 0, _FLOAT4.oid, len(self), 1) + words.tobytes()


_FOUR = array("I", [4])
_FLOAT4 = postgres.types["float4"]
_REAL_ARRAY_HEADER = struct.Struct(">iiIii")  # dimensions, has nulls, element type, length, lower bound


class _QueryVectorDumper(Dumper):
    format = Format.BINARY
    oid = _FLOAT4.array_oid  # real[]: a built-in type, the same oid in every database

    def dump(self, obj: QueryVector) -> bytes:
        return obj.binary()


psycopg.adapters.register_dumper(QueryVector, _QueryVectorDumper)


def configure_memory(
    db: Database, *, model: str | None, dimension: int | None, reset: bool | None, indexed_kinds: Any = None
) -> dict[str, Any] | None:
    return db.call_optional(
        "configure_memory", model=model, dimension=dimension, reset=reset, indexed_kinds=indexed_kinds
    )


def memory_index_step(db: Database, *, park_rows: int | None, fill_rows: int | None) -> Any:
    return db.call("memory_index_step", park_rows=park_rows, fill_rows=fill_rows)


def memory_index_status(db: Database) -> Any:
    return db.call("memory_index_status")


def upsert_memories(db: Database, *, items: Any) -> Any:
    return db.call("upsert_memories", items=items)


def forget_missing_memory(db: Database, *, source: str | None, kept: Any) -> Any:
    return db.call("forget_missing_memory", source=source, kept=kept)


def count_memory_source(db: Database, *, source: str | None) -> Any:
    return db.call("count_memory_source", source=source)


def claim_memory_to_embed(db: Database, *, limit: int | None, lease_seconds: float | None) -> Any:
    return db.call("claim_memory_to_embed", limit=limit, lease_seconds=lease_seconds)


def release_memory_claims(db: Database, *, ids: Any) -> Any:
    return db.call("release_memory_claims", ids=ids)


def set_memory_embeddings(db: Database, *, model: str | None, items: Any) -> Any:
    return db.call("set_memory_embeddings", model=model, items=items)


def memory_stats(db: Database) -> dict[str, Any]:
    return db.call_object("memory_stats")


def search_memory(
    db: Database,
    *,
    query: str | None,
    mode: str | None,
    embedding: Any,
    kinds: Any,
    since: datetime | None,
    limit: int | None,
    candidates: int | None,
    fts_weight: float | None,
    vector_weight: float | None,
    rrf_k: int | None,
    ef_search: int | None,
    fts_rank_limit: int | None,
    include_content: bool | None,
    model: str | None = None,
    vector: QueryVector | None = None,
) -> dict[str, Any]:
    return db.call_object(
        "search_memory",
        query=query,
        mode=mode,
        embedding=embedding,
        kinds=kinds,
        since=since,
        limit=limit,
        candidates=candidates,
        fts_weight=fts_weight,
        vector_weight=vector_weight,
        rrf_k=rrf_k,
        ef_search=ef_search,
        fts_rank_limit=fts_rank_limit,
        include_content=include_content,
        model=model,
        vector=vector,
    )


def expired_memory(db: Database, *, kind: str | None, days: int | None, limit: int | None) -> Any:
    return db.call("expired_memory", kind=kind, days=days, limit=limit)


def drop_archived_memory(db: Database, *, rows: Any) -> Any:
    return db.call("drop_archived_memory", rows=rows)


def expired_audit(db: Database, *, days: int | None, limit: int | None) -> Any:
    return db.call("expired_audit", days=days, limit=limit)


def drop_archived_audit(db: Database, *, days: int | None, cutoff: datetime | None, through_id: int | None) -> Any:
    return db.call("drop_archived_audit", days=days, cutoff=cutoff, through_id=through_id)


def take_maintenance_lease(db: Database, *, name: str | None, holder: str | None, seconds: float | None) -> Any:
    return db.call("take_maintenance_lease", name=name, holder=holder, seconds=seconds)


def release_maintenance_lease(db: Database, *, name: str | None, holder: str | None) -> Any:
    return db.call("release_maintenance_lease", name=name, holder=holder)
