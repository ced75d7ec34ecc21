"""The SQL functions of app/memory: memory: its items, their vectors and indexes, retention.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.database import Database


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
