"""In-process stand-ins for what the app hands the integrations (rate slots, Claude's spend ledger
and model cache), so a client runs with no database. tests/test_integration_interfaces.py holds
them to the same contract as the database-backed ones."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

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
