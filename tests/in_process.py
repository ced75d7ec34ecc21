"""In-process stand-ins for what the app hands the integrations (rate slots, Claude's spend ledger
and model cache), so a client runs with no database. tests/test_integration_interfaces.py holds
them to the same contract as the database-backed ones."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from integrations.buffer_oauth import GrantState, RefreshStart, TokenPair
from integrations.claude import CallOutcome, ModelResolution
from integrations.claude_prices import TokenUsage
from integrations.rate_limit import SlotAnswer


class InProcessRateSlots:
    """Fixed windows aligned on multiples of their length on `clock`, as take_rate_slot draws them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._used: dict[tuple[str, float], int] = {}

    def take(self, bucket: str, *, limit: int, window_seconds: float) -> SlotAnswer:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        now = self._clock()
        start = math.floor(now / window_seconds) * window_seconds
        used = self._used.get((bucket, start), 0)
        if used < limit:
            self._used[(bucket, start)] = used + 1
        return SlotAnswer(granted=used < limit, retry_after=start + window_seconds - now)


class OverBudget(Exception):
    """The in-process ledger's refusal (the app's ledger raises its BudgetExceeded)."""


@dataclass
class Call:
    agent: str
    model: str
    reserved_usd: Decimal
    outcome: CallOutcome | None = None  # None: reserved, not settled yet
    usage: TokenUsage | None = None
    cost_usd: Decimal = Decimal(0)
    latency_ms: int = 0
    error: str | None = None


class InProcessLedger:
    """A spend ledger with one budget (no days): open reservations and settled costs count."""

    def __init__(self, budget_usd: Decimal) -> None:
        self.budget_usd = budget_usd
        self.calls: list[Call] = []

    @property
    def committed_usd(self) -> Decimal:
        return sum((call.cost_usd if call.outcome else call.reserved_usd for call in self.calls), Decimal(0))

    def reserve(self, *, agent: str, model: str, worst_case_usd: Decimal) -> int:
        if self.committed_usd + worst_case_usd > self.budget_usd:
            raise OverBudget(f"{worst_case_usd} more would pass {self.budget_usd}")
        self.calls.append(Call(agent=agent, model=model, reserved_usd=worst_case_usd))
        return len(self.calls)

    def settle(
        self,
        call_id: int,
        *,
        outcome: CallOutcome,
        usage: TokenUsage,
        cost_usd: Decimal,
        latency_ms: int,
        error: str | None,
    ) -> None:
        call = self.calls[call_id - 1]
        call.outcome, call.usage, call.cost_usd, call.latency_ms, call.error = (
            outcome,
            usage,
            cost_usd,
            latency_ms,
            error,
        )


class InProcessModelCache:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._stored: dict[str, ModelResolution] = {}

    def get(self, configured: str, *, max_age_seconds: float) -> ModelResolution | None:
        stored = self._stored.get(configured)
        if stored is None or stored.checked_at is None:
            return None
        return stored if self._clock() - stored.checked_at.timestamp() < max_age_seconds else None

    def put(self, configured: str, *, resolved: str, fallback: bool, reason: str) -> ModelResolution:
        checked_at = datetime.fromtimestamp(self._clock(), UTC)
        self._stored[configured] = ModelResolution(
            configured=configured, resolved=resolved, fallback=fallback, reason=reason, checked_at=checked_at
        )
        return self._stored[configured]


class InProcessTokenStore:
    """Buffer's grant in memory, with the database store's rules (app: buffer_refresh_begin & co.):
    one lease at a time, taken only while the token is about to expire; a lease that ran out
    unfinished means that refresh's answer was lost, so the grant needs reconnecting."""

    def __init__(self, clock: Callable[[], datetime], pair: TokenPair | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.pair = pair
        self.expires_at = clock() + timedelta(seconds=pair.expires_in) if pair else clock()
        self.status: str = "connected"
        self.reason: str | None = None
        self.lease: tuple[str, datetime] | None = None
        self.reconnects: list[str] = []

    def current(self) -> GrantState | None:
        with self._lock:
            return self._state()

    def _state(self) -> GrantState | None:
        if self.pair is None:
            return None
        if self.status != "connected":
            return GrantState(status="reconnect_needed", reason=self.reason)
        seconds_left = (self.expires_at - self._clock()).total_seconds()
        return GrantState(status="connected", access_token=self.pair.access_token, seconds_left=seconds_left)

    def begin_refresh(self, *, margin_seconds: float, lease_seconds: float) -> RefreshStart:
        with self._lock:
            now = self._clock()
            if self.pair is None or self.status != "connected":
                return RefreshStart(state="reconnect_needed", reason=self.reason or "not connected")
            if self.lease is not None and self.lease[1] > now:
                return RefreshStart(state="busy", retry_after=(self.lease[1] - now).total_seconds())
            if self.lease is not None:
                self._dead("a refresh did not finish: its answer was lost")
                return RefreshStart(state="reconnect_needed", reason=self.reason)
            if self.expires_at - timedelta(seconds=margin_seconds) > now:
                return RefreshStart(state="fresh", grant=self._state())
            self.lease = (uuid.uuid4().hex, now + timedelta(seconds=lease_seconds))
            return RefreshStart(state="refresh", lease=self.lease[0], refresh_token=self.pair.refresh_token)

    def finish_refresh(self, lease: str, pair: TokenPair) -> None:
        with self._lock:
            if self.lease is None or self.lease[0] != lease:
                raise RuntimeError("the lease is not held")
            self.pair, self.lease = pair, None
            self.expires_at = self._clock() + timedelta(seconds=pair.expires_in)

    def abandon_refresh(self, lease: str) -> None:
        with self._lock:
            if self.lease is not None and self.lease[0] == lease:
                self.lease = None

    def reconnect_needed(self, reason: str, *, lease: str | None = None) -> None:
        with self._lock:
            self._dead(reason)
            if lease is not None and self.lease is not None and self.lease[0] == lease:
                self.lease = None

    def _dead(self, reason: str) -> None:
        if self.status == "connected":  # the first reason is kept, as the owner was told it
            self.reconnects.append(reason)
            self.status, self.reason = "reconnect_needed", reason
