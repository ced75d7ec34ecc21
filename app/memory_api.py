"""`GET /memory/search` (Bearer): full-text, vector or hybrid search over memory.

The answer is `app.memory.SearchAnswer`: the mode that ran (hybrid falls back to fts without
embeddings, and says so in `notices`), and per result its kind, source, a snippet (HTML-escaped,
matches in <mark>), the score and the rank each method gave. mode=vector without embeddings is
422 `vector_search_unavailable`; while the HNSW index is being made it is 503
`vector_index_building` (hybrid answers with full text and a notice), and `/healthz` says so
(`memory_health`). The settings and database come from the app (`app.state`).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from app.api_auth import ApiAuth
from app.client_configs import embeddings_config
from app.database import Database
from app.errors import DatabaseError
from app.memory import MemoryStore, SearchAnswer, SearchMode
from app.request_guard import CheckedRoute
from app.settings import Settings
from integrations.embeddings import embedding_spec

router = APIRouter(route_class=CheckedRoute)  # every input checked (app.request_guard)
_store_lock = threading.Lock()


def memory_store(request: Request) -> MemoryStore:
    """One store per app, made on first use: it holds the embedder (the local model loads once)."""
    state = request.app.state
    with _store_lock:
        if getattr(state, "memory", None) is None:
            state.memory = MemoryStore(state.db, state.settings)
        return state.memory


@router.get("/memory/search", response_model=SearchAnswer, dependencies=[ApiAuth], tags=["memory"])
def search_memory(
    store: Annotated[MemoryStore, Depends(memory_store)],
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=1000,
            description='websearch syntax: "exact phrase", or, -word; end with * for a prefix',
        ),
    ],
    mode: Annotated[SearchMode | None, Query(description="fts, vector or hybrid (default)")] = None,
    kind: Annotated[list[str] | None, Query(description="only these kinds (repeat, or comma-separated)")] = None,
    since: Annotated[
        datetime | None, Query(description="occurred at or after (a date is its midnight in CRON_TIMEZONE)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    content: Annotated[bool, Query(description="include each row's full content")] = False,
) -> SearchAnswer:
    kinds = [part.strip() for value in kind or [] for part in value.split(",") if part.strip()]
    return store.search(q, mode=mode, kinds=kinds, since=since, limit=limit, include_content=content)


def memory_health(db: Database, settings: Settings, *, detailed: bool) -> dict[str, Any]:
    """`/healthz`'s memory part: whether vector search is ready or its index is being made (search
    is full text meanwhile); with the API token, what is left to do."""
    if embedding_spec(embeddings_config(settings)) is None:
        return {"vector_search": "off"}
    try:
        status = db.call("memory_index_status")
    except DatabaseError:  # the database part of /healthz already reports the outage
        return {"vector_search": "unknown"}
    if not status["configured"]:
        state = "off"
    elif status["vector_index"] and not status["missing_indexes"] and not status["parked"]:
        state = "ready"
    else:
        state = "building"
    part: dict[str, Any] = {"vector_search": state}
    if detailed:
        part |= {key: status[key] for key in ("model", "missing_indexes", "parked", "reindex_started_at")}
    return part
