"""Writing vectors into the HNSW indexes in calls that fit a statement timeout.

Every vector written grows the HNSW graphs that hold its row (schema.sql, the memory section). That
costs more as the graph grows, and much more once it no longer fits in the database's memory: at
100,000 rows of 384 dimensions, one write of 64 vectors took from 0.5 s to over 4 s on this
project's machine, with other work on it (bench/README.md has the REST numbers). Supabase stops an
API call after 8 s, so the size of each write is not fixed:

- `WritePacer` sizes each call: it halves when a call took longer than WRITE_TARGET_SECONDS (a
  quarter of Supabase's 8 s) and doubles back, up to EMBEDDINGS_BATCH_SIZE, when calls take under
  a quarter of that. A call the statement timeout stopped changed nothing: it is tried again at
  half the size.
- `maintain_indexes` steps memory_index_step until every wanted index exists and holds every
  vector: creating one, parking a batch of vectors (plain row updates, 16 times the write size) or
  filling a batch back (the write size).

`memory_health` is `/healthz`'s memory part: whether vector search is ready or its index is being
made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from app.core.database import Database
from app.core.errors import DatabaseError, StatementTimeout
from app.core.settings import Settings
from app.memory import sql
from integrations.embeddings import embedding_spec

WRITE_TARGET_SECONDS = 2.0
PARKED_PER_WRITTEN = 16  # parking moves a vector aside without touching a graph: far cheaper

Row = TypeVar("Row")
Result = TypeVar("Result")


class IndexReport(BaseModel):
    state: Literal["done", "busy", "unfinished"] = "done"  # unfinished: max_steps reached
    steps: int = 0
    created: list[str] = Field(default_factory=list)
    parked: int = 0
    filled: int = 0


class WritePacer:
    def __init__(self, cap: int, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.cap = cap
        self.size = cap
        self._clock = clock

    def record(self, seconds: float) -> None:
        if seconds > WRITE_TARGET_SECONDS:
            self.size = max(1, self.size // 2)
        elif seconds < WRITE_TARGET_SECONDS / 4:
            self.size = min(self.cap, self.size * 2)

    def timed(self, call: Callable[[int], Result]) -> Result:
        """`call(size)` with the current size, retried at half the size while the statement
        timeout stops it (at one row, the timeout is raised)."""
        while True:
            started = self._clock()
            try:
                result = call(self.size)
            except StatementTimeout:
                if self.size == 1:
                    raise
                self.size = max(1, self.size // 2)
                continue
            self.record(self._clock() - started)
            return result

    def write(self, rows: Sequence[Row], write: Callable[[Sequence[Row]], Result]) -> list[Result]:
        """`write` every row, in calls of the current size."""
        results: list[Result] = []
        done = 0
        while done < len(rows):
            result, written = self.timed(partial(_write_from, rows, done, write))
            results.append(result)
            done += written
        return results


def _write_from(
    rows: Sequence[Row], start: int, write: Callable[[Sequence[Row]], Result], size: int
) -> tuple[Result, int]:
    chunk = rows[start : start + size]
    return write(chunk), len(chunk)


def maintain_indexes(
    db: Database,
    pacer: WritePacer,
    *,
    max_steps: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> IndexReport:
    """Step until every wanted HNSW index exists and holds every vector (or `max_steps`)."""
    report = IndexReport()
    while True:
        step = pacer.timed(lambda size: sql.memory_index_step(db, park_rows=PARKED_PER_WRITTEN * size, fill_rows=size))
        if step["state"] in ("done", "busy"):
            report.state = step["state"]
            return report
        report.steps += 1
        if step["state"] == "created":
            report.created.append(step["index"])
        elif step["state"] == "parked":
            report.parked += int(step["rows"])
        else:
            report.filled += int(step["rows"])
        if progress is not None:
            progress(step)
        if max_steps is not None and report.steps >= max_steps:
            report.state = "unfinished"
            return report


def memory_health(db: Database, settings: Settings, *, detailed: bool) -> dict[str, Any]:
    """`/healthz`'s memory part: whether vector search is ready or its index is being made (search
    is full text meanwhile); with the API token, what is left to do."""
    if embedding_spec(settings.embeddings_config()) is None:
        return {"vector_search": "off"}
    try:
        status = sql.memory_index_status(db)
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
