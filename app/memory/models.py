"""What memory holds and answers, as data: a row to write (MemoryItem, TicketMemory), a search and
its answer (SearchRequest, SearchHit, SearchAnswer), and memory's own errors. app.memory.store reads
and writes them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.core.errors import ConfigError, InvalidInput, OpsdeskError
from app.memory.terms import KIND_PATTERN as KIND_PATTERN
from app.memory.terms import SearchMode as SearchMode
from integrations.untrusted import Storable

SOURCE_PATTERN = r"^[a-z][a-z0-9_.-]{0,39}$"
MAX_CONTENT_CHARS = 500_000  # one row's text; imports skip longer files

Kind = Annotated[str, Field(pattern=KIND_PATTERN)]


class EmbeddingsMismatch(ConfigError):
    code = "embeddings_mismatch"


class VectorSearchUnavailable(InvalidInput):
    code = "vector_search_unavailable"


class VectorIndexBuilding(OpsdeskError):
    """mode=vector while the HNSW index is being made: it comes back by itself."""

    status_code = 503
    code = "vector_index_building"
    exit_code = 3


class MemoryItem(Storable):  # from files, Notion, tickets: text made storable
    kind: str = Field(pattern=KIND_PATTERN)
    source: str = Field(pattern=SOURCE_PATTERN)
    source_id: str = Field(min_length=1, max_length=500)
    title: str = Field("", max_length=1000)
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None  # when it happened; None: now for a new row, kept on update


class UpsertCounts(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: Mapping[str, int]) -> None:
        self.created += other.get("created", 0)
        self.updated += other.get("updated", 0)
        self.unchanged += other.get("unchanged", 0)


class TicketMemory(Storable):
    """A support ticket as memory keeps it (the requester's text is untrusted input: it is only
    stored and searched, never followed; made storable like every text from outside)."""

    id: str = Field(min_length=1, max_length=200)
    subject: str = Field("", max_length=1000)
    body: str = Field(min_length=1, max_length=500_000)
    requester: str | None = Field(None, max_length=320)
    status: str | None = Field(None, max_length=100)
    url: str | None = Field(None, max_length=2000)
    created_at: datetime | None = None
    source: str = Field("hubspot", pattern=SOURCE_PATTERN)


class SearchRequest(BaseModel):
    # no control characters: PostgreSQL cannot hold a NUL, and none belongs in a search
    query: str = Field(min_length=1, max_length=1000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
    mode: SearchMode | None = None  # None: hybrid
    kinds: list[Kind] = Field(default_factory=list, max_length=20)
    since: datetime | None = None
    limit: int = Field(10, ge=1, le=100)
    include_content: bool = False


class SearchHit(BaseModel):
    id: int
    kind: str
    source: str
    source_id: str
    title: str
    snippet: str  # HTML-escaped; matched words in <mark></mark>, or the first 15 words of a hit found by meaning
    score: float
    fts_rank: int | None
    fts_score: float | None
    vector_rank: int | None
    similarity: float | None  # 1 - cosine distance
    occurred_at: datetime
    metadata: dict[str, Any]
    content: str | None = None


class SearchAnswer(BaseModel):
    query: str
    mode: SearchMode  # what ran
    requested_mode: SearchMode
    embeddings: str | None  # the model of the query vector, None when none was used
    fts_query: str  # the tsquery the words became ('' when they are all stop words)
    fts_limited: bool  # so many rows matched that only the most recent MEMORY_FTS_RANK_LIMIT were ranked
    # how full text found its matches: newest rows sufficed, scan (read on newest first), index
    # (GIN), all (every match ranked); None when it did not run (schema.sql, search_memory)
    fts_strategy: Literal["newest", "scan", "index", "all"] | None = None
    fts_candidates: int
    vector_candidates: int
    notices: list[str]
    results: list[SearchHit]


class EmbedReport(BaseModel):
    embedded: int = 0
    stale: int = 0  # embedded, but the row changed meanwhile: it waits for the next run
    model: str | None = None
    resumed: bool = False  # a reindex that carried on with one begun earlier
