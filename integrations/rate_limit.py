"""A rolling-window rate limiter for outgoing calls, with an injectable clock.

HubSpot counts requests over a rolling window ("TEN_SECONDLY_ROLLING"), so this keeps the times of
the last `limit` calls rather than a token bucket: a bucket refilled at limit/window per second lets
almost twice the limit through in one window (a full bucket spent, then refilled while the window
is still open). Here no window of `window` seconds ever holds more than `limit` calls.

`reserve()` books the earliest free slot and returns how long the caller must wait for it; the caller
sleeps with whatever sleep it was given. Booking before sleeping keeps threads in order without
holding the lock while waiting, and lets tests with a recording sleep see every wait without time
passing.

It lives in process memory on purpose (DESIGN.md keeps every state that matters in the database):
it protects this process from tripping the vendor's limit, and losing it on a restart costs nothing.
Several processes together can still exceed the limit; the vendor's 429 and its Retry-After, which
the integrations honour, cover that rest.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RollingWindowLimiter:
    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: deque[float] = deque(maxlen=limit)  # start times of the latest `limit` calls

    def reserve(self, *, not_before: float = 0.0) -> float:
        """Book the next call, at least `not_before` seconds from now; returns the seconds to wait
        before making it (0 when it may go at once)."""
        with self._lock:
            now = self._clock()
            start = now + not_before
            if self._slots:  # first come, first served: keeps the booked times in order
                start = max(start, self._slots[-1])
            if len(self._slots) == self.limit:
                start = max(start, self._slots[0] + self.window)
            self._slots.append(start)
            return start - now
