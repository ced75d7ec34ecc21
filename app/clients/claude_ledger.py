"""The app's side of Claude: its spend ledger and model cache in the database, the day's spend, and
the client built with them.

`DbSpendLedger` reserves each request's worst case against LLM_DAILY_BUDGET_USD for the calendar
day in CRON_TIMEZONE (`llm_reserve`, one atomic statement, so concurrent callers cannot pass the
cap together) and settles it (`llm_settle`): every request leaves a row in `llm_calls`, refused
ones too. `DbModelCache` shares the resolution of ANTHROPIC_MODEL with every process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from pydantic import BaseModel

from app.clients import sql
from app.core.database import Database
from app.core.errors import KNOWN_ERRORS, BudgetExceeded
from app.core.settings import ClientDeps, Settings
from integrations.claude import CallOutcome, ClaudeClient, ModelResolution
from integrations.claude_prices import TokenUsage
from integrations.resilience import CircuitBreaker

log = logging.getLogger(__name__)


class LlmSpend(BaseModel):
    day: date
    spent_usd: Decimal
    calls: int
    refused: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    by_agent: dict[str, Decimal]


class DbSpendLedger:
    def __init__(self, db: Database, *, budget_usd: Decimal, time_zone: str) -> None:
        self._db = db
        self.budget_usd = budget_usd
        self.time_zone = time_zone

    def reserve(self, *, agent: str, model: str, worst_case_usd: Decimal) -> int:
        """The call's id; BudgetExceeded (nothing is sent) when the call could pass today's cap."""
        row = sql.llm_reserve(
            self._db,
            agent=agent,
            model=model,
            reserve_usd=worst_case_usd,
            budget_usd=self.budget_usd,
            time_zone=self.time_zone,
        )
        if not row["granted"]:
            raise BudgetExceeded(
                f"the call could pass today's LLM budget of ${row['budget_usd']}: "
                f"${Decimal(row['spent_usd']):.2f} spent, this call may cost up to ${Decimal(row['needed_usd']):.4f}",
                retry_after=float(row["resets_in_seconds"]),
                details={key: row[key] for key in ("day", "spent_usd", "budget_usd", "needed_usd")},
            )
        return int(row["call_id"])

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
        sql.llm_settle(
            self._db,
            call_id=call_id,
            outcome=outcome,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cost_usd=cost_usd,
            latency_ms=latency_ms,
            error=error,
        )


class DbModelCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, configured: str, *, max_age_seconds: float) -> ModelResolution | None:
        row = sql.llm_model_cached(self._db, configured=configured, max_age_seconds=max_age_seconds)
        return ModelResolution.model_validate(row) if row is not None else None

    def put(self, configured: str, *, resolved: str, fallback: bool, reason: str) -> ModelResolution:
        row = sql.llm_model_store(self._db, configured=configured, resolved=resolved, fallback=fallback, reason=reason)
        return ModelResolution.model_validate(row)


def spend_ledger(settings: Settings, db: Database) -> DbSpendLedger:
    """LLM_DAILY_BUDGET_USD, counted per calendar day in CRON_TIMEZONE."""
    return DbSpendLedger(db, budget_usd=settings.llm_daily_budget_usd, time_zone=settings.cron_timezone)


def claude_client(
    settings: Settings,
    db: Database,
    *,
    breaker: CircuitBreaker | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ClaudeClient:
    """The Claude client, counting its spend and sharing its model choice in `db`."""
    ledger = spend_ledger(settings, db)
    return settings.claude_client(
        ClientDeps(sleep=sleep, breaker=breaker, spend_ledger=ledger, model_cache=DbModelCache(db))
    )


def llm_spend(db: Database, settings: Settings, day: date | None = None) -> LlmSpend:
    """A budget day's LLM spend (today in CRON_TIMEZONE by default)."""
    return LlmSpend.model_validate(sql.llm_spend(db, time_zone=settings.cron_timezone, day=day))


def check_model_at_startup(settings: Settings, db: Database) -> ModelResolution | None:
    """Start-up's look at the models list (nothing to do without a key). Never stops the start."""
    if settings.anthropic_api_key is None:
        return None
    client = claude_client(settings, db)
    try:
        resolution = client.resolve_model()
    except KNOWN_ERRORS as exc:
        log.warning("Claude model check at start-up failed: %s", exc)
        return None
    finally:
        client.close()
    log.info(
        "Claude model: configured %s, using %s (%s)", resolution.configured, resolution.resolved, resolution.reason
    )
    return resolution
