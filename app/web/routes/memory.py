"""`GET /memory/search` (Bearer): full-text, vector or hybrid search over memory.

The answer is `app.memory.store.SearchAnswer`: the mode that ran (hybrid falls back to fts without
embeddings, and says so in `notices`), and per result its kind, source, a snippet (HTML-escaped;
a hit the query matches as full text has its words in <mark>, any other its first 15 words), the
score and the rank each method gave. mode=vector without embeddings is 422
`vector_search_unavailable`; while the HNSW index is being made it is 503 `vector_index_building`
(hybrid answers with full text and a notice), and `/healthz` says so
(app.memory.index.memory_health).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.memory.models import SearchAnswer, SearchMode
from app.web.deps import ApiAuth, MemoryStoreDep
from app.web.request_guard import CheckedRoute

router = APIRouter(route_class=CheckedRoute)  # every input checked (app.web.request_guard)


@router.get("/memory/search", response_model=SearchAnswer, dependencies=[ApiAuth], tags=["memory"])
def search_memory(
    store: MemoryStoreDep,
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
