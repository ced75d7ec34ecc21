"""What the app hands the integrations is a real interface: the database-backed rate slots, spend
ledger and model cache (app.clients.rate_slots, app.clients.claude_ledger) and in-process ones (tests/in_process.py)
keep the same contract, and the HubSpot and Claude clients run against the real SDKs and local
fakes with the in-process ones, no database anywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from app.clients.claude_ledger import DbModelCache, DbSpendLedger
from app.clients.rate_slots import DbRateSlots
from app.core.errors import BudgetExceeded
from integrations.claude import ClaudeClient, ClaudeConfig, ModelCache, SpendLedger
from integrations.claude_prices import TokenUsage
from integrations.hubspot import HubSpotClient, HubSpotConfig
from integrations.rate_limit import RateSlots, SharedRateLimiter
from integrations.resilience import CircuitBreaker
from tests.conftest import advance_clock
from tests.fake_hubspot import TOKEN, FakeHubSpot
from tests.in_process import InProcessLedger, InProcessModelCache, InProcessRateSlots, OverBudget
from tests.test_claude import API_KEY, SYSTEM_PROMPT, FakeAnthropic, Triage
from tests.test_rate_limit import start_of_window

WINDOW_START = 1_000_000.0  # a multiple of 10 s and of 1 s: a short test stays inside one window
ASK = [{"role": "user", "content": "I cannot log in!"}]


class Clock:
    def __init__(self) -> None:
        self.now = WINDOW_START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backing:
    advance: Callable[[float], None]  # moves the clock the implementation reads
    refusal: type[Exception]  # what its ledger raises when a call would pass the budget


def backing(request: pytest.FixtureRequest) -> Backing:
    """The in-process clock, or the database's (which the database-backed implementations read)."""
    if request.param == "in process":
        clock = request.getfixturevalue("clock")
        return Backing(clock.advance, OverBudget)
    sql = request.getfixturevalue("sql")
    start_of_window(sql, 10.0)
    return Backing(lambda seconds: advance_clock(sql, seconds), BudgetExceeded)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["database", "in process"])
def slots(request: pytest.FixtureRequest, clock: Clock) -> tuple[RateSlots, Backing]:
    backed = backing(request)
    if request.param == "in process":
        return InProcessRateSlots(clock), backed
    return DbRateSlots(request.getfixturevalue("db")), backed


@pytest.fixture(params=["database", "in process"])
def ledger(request: pytest.FixtureRequest) -> tuple[SpendLedger, Backing]:
    backed = backing(request)
    if request.param == "in process":
        return InProcessLedger(Decimal("1.00")), backed
    db = request.getfixturevalue("db")
    return DbSpendLedger(db, budget_usd=Decimal("1.00"), time_zone="America/Phoenix"), backed


@pytest.fixture(params=["database", "in process"])
def model_cache(request: pytest.FixtureRequest, clock: Clock) -> tuple[ModelCache, Backing]:
    backed = backing(request)
    if request.param == "in process":
        return InProcessModelCache(clock), backed
    return DbModelCache(request.getfixturevalue("db")), backed


# --- the contracts ----------------------------------------------------------------------------
def test_rate_slots_keep_each_bucket_to_its_limit_per_fixed_window(slots: tuple[RateSlots, Backing]) -> None:
    taken, backed = slots
    assert [taken.take("vendor", limit=2, window_seconds=10.0).granted for _ in range(2)] == [True, True]
    full = taken.take("vendor", limit=2, window_seconds=10.0)
    assert not full.granted and 9.0 < full.retry_after <= 10.0
    assert taken.take("other", limit=1, window_seconds=10.0).granted  # buckets apart
    backed.advance(full.retry_after)
    assert taken.take("vendor", limit=2, window_seconds=10.0).granted  # the next window


def test_a_limiter_over_either_slots_waits_for_the_next_window(slots: tuple[RateSlots, Backing]) -> None:
    taken, backed = slots
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        backed.advance(seconds)

    limiter = SharedRateLimiter(taken, "vendor", 1, 10.0, sleep=sleep)
    assert limiter.acquire() == 0.0
    waited = limiter.acquire()
    assert waits == [waited] and 9.0 < waited <= 10.0


def test_a_spend_ledger_refuses_what_would_pass_its_budget_and_settling_frees_the_rest(
    ledger: tuple[SpendLedger, Backing],
) -> None:
    spend, backed = ledger
    first = spend.reserve(agent="sales", model="claude-sonnet-5-5", worst_case_usd=Decimal("0.60"))
    with pytest.raises(backed.refusal):  # 0.60 held + 0.50 would pass 1.00
        spend.reserve(agent="sales", model="claude-sonnet-5-5", worst_case_usd=Decimal("0.50"))
    spend.settle(
        first,
        outcome="ok",
        usage=TokenUsage(input_tokens=1000, output_tokens=100),
        cost_usd=Decimal("0.20"),
        latency_ms=900,
        error=None,
    )
    second = spend.reserve(agent="support", model="claude-sonnet-5-5", worst_case_usd=Decimal("0.50"))
    assert second != first


def test_a_model_cache_answers_while_fresh(model_cache: tuple[ModelCache, Backing]) -> None:
    cache, backed = model_cache
    assert cache.get("claude-sonnet-4-5", max_age_seconds=3600) is None
    stored = cache.put("claude-sonnet-4-5", resolved="claude-sonnet-5-5", fallback=True, reason="retired")
    assert stored.checked_at is not None and (stored.resolved, stored.fallback) == ("claude-sonnet-5-5", True)
    fresh = cache.get("claude-sonnet-4-5", max_age_seconds=3600)
    assert fresh is not None and fresh.model_dump() == stored.model_dump()
    backed.advance(3601)
    assert cache.get("claude-sonnet-4-5", max_age_seconds=3600) is None


# --- the clients with no database -------------------------------------------------------------
def test_hubspot_keeps_its_burst_limit_in_the_slots_handed_in(clock: Clock) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    with FakeHubSpot() as fake:
        contact = fake.add("contacts", email="a@example.com")
        config = HubSpotConfig(access_token=SecretStr(TOKEN), base_url=fake.url, requests_per_10s=3)
        client = HubSpotClient(
            config, slots=InProcessRateSlots(clock), breaker=CircuitBreaker("hubspot", clock=clock), sleep=sleep
        )
        try:
            for _ in range(4):
                assert client.get_contact(contact).email == "a@example.com"
        finally:
            client.close()
        assert sleeps == [10.0] and len(fake.requests) == 4  # the fourth call waited for the next window


def test_claude_counts_its_spend_and_shares_its_model_through_what_is_handed_in(clock: Clock) -> None:
    fake = FakeAnthropic()
    ledger = InProcessLedger(Decimal("1.00"))
    cache = InProcessModelCache(clock)
    made: list[ClaudeClient] = []

    def client(spend: InProcessLedger) -> ClaudeClient:
        config = ClaudeConfig(api_key=SecretStr(API_KEY), base_url=fake.server.url)
        made.append(ClaudeClient(config, ledger=spend, model_cache=cache, sleep=lambda _: None))
        return made[-1]

    def ask(planner: ClaudeClient) -> Any:
        return planner.structured("support", SYSTEM_PROMPT, ASK, Triage)

    with fake.server:
        try:
            assert ask(client(ledger)).priority == "high"
            [call] = ledger.calls
            assert (call.agent, call.model, call.outcome, call.error) == ("support", "claude-sonnet-5-5", "ok", None)
            # 1,200 input tokens at $2 and 150 output tokens at $10 per million
            assert call.cost_usd == Decimal("0.0039") and call.usage is not None and call.usage.input_tokens == 1200
            listings = len(fake.requests("/v1/models"))
            assert listings > 0
            assert ask(client(ledger)).priority == "high"  # another client: the cached model, no new listing
            assert len(fake.requests("/v1/models")) == listings and len(ledger.calls) == 2

            poor = InProcessLedger(Decimal("0.001"))
            with pytest.raises(OverBudget):  # the ledger's refusal reaches the caller as it is
                ask(client(poor))
            assert poor.calls == [] and len(fake.requests("/v1/messages")) == 2  # nothing was sent
        finally:
            for planner in made:
                planner.close()
