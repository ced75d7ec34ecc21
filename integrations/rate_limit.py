"""A rate limit for outgoing calls counted where every process sees it.

A vendor counts the app's calls together: a limiter in process memory would give the service and
each CLI or agent run the whole allowance (DESIGN.md: the database is the only shared state). So
each call takes a slot from `RateSlots`, which counts calls per bucket in fixed windows and is
handed in by the app (app.clients.rate_slots: `take_rate_slot` in schema.sql, one atomic upsert).

A fixed window is not a rolling one: up to twice the limit can go out across a window boundary
(a full window's calls at its end, the next window's at its start). The vendor's 429 and its
Retry-After, which the integrations honour, cover that rest.

When the window is full, the caller sleeps until it ends, with whatever sleep it was given (tests
pass one that records the wait and moves the database clock), and asks again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, ConfigDict


class SlotAnswer(BaseModel):
    model_config = ConfigDict(frozen=True)

    granted: bool
    retry_after: float  # seconds until the current window ends


class RateSlots(Protocol):
    """Fixed windows of calls per bucket, counted where every process sees them."""

    def take(self, bucket: str, *, limit: int, window_seconds: float) -> SlotAnswer:
        """Count one call in the current window of `bucket` if it has room (`granted`)."""
        ...


class SharedRateLimiter:
    def __init__(
        self,
        slots: RateSlots,
        bucket: str,
        limit: int,
        window_seconds: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_seconds > 0")
        self.bucket = bucket
        self.limit = limit
        self.window_seconds = window_seconds
        self._slots = slots
        self._sleep = sleep

    def acquire(self) -> float:
        """Take a slot, waiting for the next window while this one is full; returns the seconds waited."""
        waited = 0.0
        while True:
            slot = self._slots.take(self.bucket, limit=self.limit, window_seconds=self.window_seconds)
            if slot.granted:
                return waited
            wait = slot.retry_after
            self._sleep(wait)
            waited += wait
