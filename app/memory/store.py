"""Memory: what the business knows, searchable by full text, by vector and by both.

The SQL lives in schema.sql (section "Memory"); this module is the Python face agents, the API
and the CLI share:

- `MemoryStore.upsert` (and `remember_ticket`) write rows keyed by (source, source_id).
  Executed actions and decisions need no call: a trigger on `actions` records them in the same
  transaction as the change; `store_daily_report` does the same for each day's report.
- Rows are written without a vector. `MemoryStore.embed_pending` (a scheduled job, and the end of
  every import) embeds what is waiting with the configured provider.
- `MemoryStore.search` runs one SQL function for fts, vector or hybrid (reciprocal rank fusion).
- `check_embeddings`, called by `open_database` at start-up, fixes the deployment's model and
  dimension on first use and refuses a provider that would give other vectors.
- `MemoryStore.maintain_indexes` makes a missing HNSW index over existing vectors in bounded steps
  (schema.sql, memory_index_step): no call outlasts Supabase's API statement timeout, and start-up
  never waits for an index. Meanwhile search runs full text and says so. Vectors are written in
  calls sized to fit the timeout (app.memory.index).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time
from typing import Any

from pydantic import ValidationError

from app.core.database import Database
from app.core.errors import ConfigError, Conflict, InvalidInput
from app.core.settings import Settings
from app.memory import sql
from app.memory.index import IndexReport, WritePacer, maintain_indexes
from app.memory.models import (
    MAX_CONTENT_CHARS,
    EmbeddingsMismatch,
    EmbedReport,
    MemoryItem,
    SearchAnswer,
    SearchHit,
    SearchMode,
    SearchRequest,
    TicketMemory,
    UpsertCounts,
    VectorIndexBuilding,
    VectorSearchUnavailable,
)
from app.memory.sql import QueryVector
from integrations.embeddings import Embedder, EmbeddingSpec, embedding_spec, make_embedder
from integrations.errors import IntegrationError
from integrations.untrusted import validation_errors

log = logging.getLogger(__name__)

EMBED_LEASE_SECONDS = 300.0
_UPSERT_BATCH = 200


def check_embeddings(db: Database, settings: Settings) -> dict[str, Any] | None:
    """Start-up: the first run with a provider fixes the deployment's model and dimension (and
    creates the HNSW indexes, one more per MEMORY_VECTOR_INDEX_KINDS kind, while their rows have no
    vector: cheap); after that another model or dimension is an error, never a search comparing
    vectors of two models. It never builds an index over vectors: that is maintain_indexes' work,
    in steps, so start-up fits any statement timeout."""
    spec = embedding_spec(settings.embeddings_config())
    if spec is None:
        return None
    try:
        return sql.configure_memory(
            db,
            model=spec.name,
            dimension=spec.dimension,
            reset=False,
            indexed_kinds=settings.memory_vector_index_kinds,
        )
    except Conflict as exc:
        raise EmbeddingsMismatch(
            f"memory is embedded with {exc.details.get('model')} ({exc.details.get('dimension')} dimensions) "
            f"but the embeddings provider gives {spec.name} ({spec.dimension} dimensions). Run "
            "`opsdesk memory reindex` to re-embed everything with the new model, or set "
            "EMBEDDINGS_PROVIDER / EMBEDDINGS_MODEL / EMBEDDINGS_DIMENSION back.",
            details={
                "database_model": exc.details.get("model"),
                "database_dimension": exc.details.get("dimension"),
                "provider_model": spec.name,
                "provider_dimension": spec.dimension,
            },
        ) from exc


def document_text(title: str, content: str) -> str:
    """What gets embedded: the title carries a lot of the meaning of a short page."""
    return f"{title}\n\n{content}" if title else content


class MemoryStore:
    def __init__(self, db: Database, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.db = db
        self.settings = settings
        self.spec: EmbeddingSpec | None = (
            embedder.spec if embedder is not None else embedding_spec(settings.embeddings_config())
        )
        self._embedder = embedder
        self._lock = threading.Lock()
        self._writes = WritePacer(settings.embeddings_batch_size)  # learns what fits the timeout

    @property
    def embedder(self) -> Embedder | None:
        """Made on first use, so opening the store never loads a model or needs a key."""
        if self.spec is None:
            return None
        with self._lock:
            if self._embedder is None:
                self._embedder = make_embedder(self.settings.embeddings_config())
            return self._embedder

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()

    # --- writing ------------------------------------------------------------------------------
    def upsert(self, items: Iterable[MemoryItem]) -> UpsertCounts:
        counts = UpsertCounts()
        batch: list[dict[str, Any]] = []
        for item in items:
            batch.append(item.model_dump(mode="json"))
            if len(batch) >= _UPSERT_BATCH:
                counts.add(sql.upsert_memories(self.db, items=batch))
                batch = []
        if batch:
            counts.add(sql.upsert_memories(self.db, items=batch))
        return counts

    def remember_ticket(self, ticket: TicketMemory) -> UpsertCounts:
        header = [
            f"Ticket: {ticket.subject}" if ticket.subject else "Ticket",
            *([f"From: {ticket.requester}"] if ticket.requester else []),
            *([f"Status: {ticket.status}"] if ticket.status else []),
        ]
        return self.upsert(
            [
                MemoryItem(
                    kind="ticket",
                    source=ticket.source,
                    source_id=ticket.id,
                    title=ticket.subject,
                    # the requester's text may fill a row by itself: the header comes first, the body is clipped
                    content=("\n".join(header) + "\n\n" + ticket.body)[:MAX_CONTENT_CHARS],
                    metadata={
                        key: value
                        for key, value in {
                            "requester": ticket.requester,
                            "status": ticket.status,
                            "url": ticket.url,
                        }.items()
                        if value
                    },
                    occurred_at=ticket.created_at,
                )
            ]
        )

    def forget_missing(self, source: str, kept_ids: Sequence[str]) -> int:
        return int(sql.forget_missing_memory(self.db, source=source, kept=list(kept_ids))["removed"])

    # --- embeddings ---------------------------------------------------------------------------
    def embed_pending(
        self, *, max_rows: int | None = None, progress: Callable[[int], None] | None = None
    ) -> EmbedReport:
        """Embed rows that have no vector yet, a batch at a time, until none are left (or
        `max_rows`). Claims keep parallel embedders off each other's rows."""
        embedder = self.embedder
        if embedder is None or self.spec is None:
            return EmbedReport()
        report = EmbedReport(model=self.spec.name)
        batch = self.settings.embeddings_batch_size
        while max_rows is None or report.embedded + report.stale < max_rows:
            limit = batch if max_rows is None else min(batch, max_rows - report.embedded - report.stale)
            rows = sql.claim_memory_to_embed(self.db, limit=limit, lease_seconds=EMBED_LEASE_SECONDS)
            if not rows:
                break
            try:
                vectors = embedder.embed_documents([document_text(row["title"], row["content"]) for row in rows])
            except Exception:
                sql.release_memory_claims(self.db, ids=[row["id"] for row in rows])
                raise
            items = [
                {"id": row["id"], "hash": row["hash"], "embedding": vector}
                for row, vector in zip(rows, vectors, strict=True)
            ]
            for stored in self._writes.write(
                items,
                lambda chunk: sql.set_memory_embeddings(
                    self.db, model=self.spec.name if self.spec else None, items=list(chunk)
                ),
            ):
                report.embedded += int(stored["stored"])
                report.stale += int(stored["stale"])
            if progress is not None:
                progress(len(rows))
        return report

    def maintain_indexes(
        self, *, max_steps: int | None = None, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> IndexReport:
        """Step until every wanted HNSW index exists and holds every vector (or `max_steps`). Each
        step is one short call: creating an index, or parking or filling one batch of vectors."""
        return maintain_indexes(self.db, self._writes, max_steps=max_steps, progress=progress)

    def reindex(
        self, *, progress: Callable[[int], None] | None = None, started: Callable[[int], None] | None = None
    ) -> EmbedReport:
        """Start over with the configured provider: forget every vector at once, make the empty
        HNSW indexes, embed every row again (each batch grows the indexes). A reindex to the same
        model that did not finish (a crash, a lost connection) carries on where it stopped."""
        if self.spec is None:
            raise ConfigError("reindexing needs an embeddings provider: EMBEDDINGS_PROVIDER is none")
        current = self.stats()
        resumed = (
            current.get("reindex_started_at") is not None
            and current["model"] == self.spec.name
            and current["dimension"] == self.spec.dimension
        )
        if not resumed:
            sql.configure_memory(
                self.db,
                model=self.spec.name,
                dimension=self.spec.dimension,
                reset=True,
                indexed_kinds=self.settings.memory_vector_index_kinds,
            )
        if started is not None:
            started(int(self.stats()["to_embed"]))
        self.maintain_indexes()
        report = self.embed_pending(progress=progress)
        self.maintain_indexes()
        report.resumed = resumed
        return report

    def stats(self) -> dict[str, Any]:
        return sql.memory_stats(self.db)

    # --- searching ----------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        mode: SearchMode | None = None,
        kinds: Sequence[str] = (),
        since: datetime | date | None = None,
        limit: int = 10,
        include_content: bool = False,
    ) -> SearchAnswer:
        """Ranked memory for `query`. Without embeddings (EMBEDDINGS_PROVIDER=none) or when the
        provider fails, hybrid falls back to full text and says so in `notices`; vector cannot
        fall back and raises VectorSearchUnavailable (or the provider's error)."""
        if isinstance(since, date) and not isinstance(since, datetime):
            since = datetime.combine(since, time(), tzinfo=self.settings.time_zone)
        elif since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=self.settings.time_zone)
        try:
            request = SearchRequest(
                query=query, mode=mode, kinds=list(kinds), since=since, limit=limit, include_content=include_content
            )
        except ValidationError as exc:
            raise InvalidInput(
                "the search does not fit the schema", details={"errors": validation_errors(exc)}
            ) from exc
        requested: SearchMode = request.mode or "hybrid"
        used: SearchMode = requested
        notices: list[str] = []
        embedding: list[float] | None = None
        if requested != "fts":
            embedding, failure, error = self._query_vector(request.query)
            if embedding is None:
                if requested == "vector":
                    if error is not None:  # the provider failed (502/503), not the request
                        raise error
                    raise VectorSearchUnavailable(
                        f"vector search is unavailable: {failure}", details={"mode": "vector"}
                    )
                used = "fts"
                notices.append(f"full-text results only: {failure}")
        try:
            raw = self._search(request, used, embedding)
            if raw.get("vector_index") is False and used != "fts":
                failure = (
                    "the vector index is being made (the service finishes it in the background, "
                    "or run `opsdesk memory embed`)"
                )
                if used == "vector":
                    raise VectorIndexBuilding(f"vector search is unavailable: {failure}", details={"mode": "vector"})
                used, embedding = "fts", None
                notices.append(f"full-text results only: {failure}")
        except Conflict as exc:
            # memory was re-embedded with another model since this process started: its query
            # vectors mean nothing there any more
            failure = (
                f"memory is now embedded with {exc.details.get('model')}, this process embeds queries "
                f"with {exc.details.get('query_model')}: restart it"
            )
            if requested == "vector":
                raise EmbeddingsMismatch(f"vector search is unavailable: {failure}", details=exc.details) from exc
            log.warning("memory search: %s", failure)
            used, embedding = "fts", None
            notices.append(f"full-text results only: {failure}")
            raw = self._search(request, used, embedding)
        answer = SearchAnswer(
            query=request.query,
            mode=used,
            requested_mode=requested,
            embeddings=self.spec.name if embedding is not None and self.spec else None,
            fts_query=raw["fts_query"],
            fts_limited=raw["fts_limited"],
            fts_strategy=raw.get("fts_strategy"),
            fts_candidates=raw["fts_candidates"],
            vector_candidates=raw["vector_candidates"],
            notices=notices,
            results=[SearchHit.model_validate(hit) for hit in raw["results"]],
        )
        answer.notices.extend(_result_notices(answer))
        return answer

    def _search(self, request: SearchRequest, mode: SearchMode, embedding: list[float] | None) -> dict[str, Any]:
        return sql.search_memory(
            self.db,
            query=request.query,
            mode=mode,
            embedding=None,
            vector=QueryVector(embedding) if embedding is not None else None,
            kinds=request.kinds or None,
            since=request.since,
            limit=request.limit,
            candidates=self.settings.memory_search_candidates,
            fts_weight=self.settings.memory_fts_weight,
            vector_weight=self.settings.memory_vector_weight,
            rrf_k=self.settings.memory_rrf_k,
            ef_search=self.settings.memory_hnsw_ef_search,
            fts_rank_limit=self.settings.memory_fts_rank_limit,
            include_content=request.include_content,
            model=self.spec.name if embedding is not None and self.spec is not None else None,
        )

    def _query_vector(self, query: str) -> tuple[list[float] | None, str, IntegrationError | None]:
        """The query's vector, or why there is none (and the provider's error, if it failed)."""
        if self.spec is None:
            return (
                None,
                ("EMBEDDINGS_PROVIDER is none (set it to local, voyage or openai for vector search)"),
                None,
            )
        try:
            embedder = self.embedder
            if embedder is None:
                return None, "no embeddings provider", None
            return embedder.embed_query(query), "", None
        except IntegrationError as exc:  # NotConfigured too: a missing key or local model
            log.warning("memory search: query embedding failed: %s", exc.message)
            return None, f"embedding the query failed ({exc.message})", exc


def _result_notices(answer: SearchAnswer) -> list[str]:
    notices: list[str] = []
    if answer.mode != "vector" and not answer.fts_query:
        notices.append("the query has only common words (stop words), which full-text search ignores")
    elif answer.mode != "vector" and answer.fts_candidates == 0:
        if answer.mode == "fts":
            notices.append(
                "no memory contains these words, and without vector search differently worded matches cannot be found"
            )
        else:
            notices.append("no memory contains these words; the results are by meaning only")
    if answer.fts_limited:
        notices.append(
            "these words are very common: full text ranked only the most recent matching rows; "
            'add words (or a "phrase") to narrow it'
        )
    if answer.mode != "fts" and answer.vector_candidates == 0:
        notices.append("no memory has an embedding yet (they are made in the background)")
    return notices
