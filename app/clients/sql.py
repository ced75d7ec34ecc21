"""The SQL functions of app/clients, what the integrations need from the database: Claude's
spend ledger and model cache, the shared rate slots (HubSpot, Buffer), Buffer's OAuth grant.

The only module of this package that names a function of schema.sql; each takes the same
parameters as its SQL function (without the `p_` prefix).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from app.core.database import Database


def llm_reserve(
    db: Database,
    *,
    agent: str | None,
    model: str | None,
    reserve_usd: Decimal | float | None,
    budget_usd: Decimal | float | None,
    time_zone: str | None,
) -> Any:
    return db.call(
        "llm_reserve", agent=agent, model=model, reserve_usd=reserve_usd, budget_usd=budget_usd, time_zone=time_zone
    )


def llm_settle(
    db: Database,
    *,
    call_id: int | None,
    outcome: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_creation_input_tokens: int | None,
    cache_read_input_tokens: int | None,
    cost_usd: Decimal | float | None,
    latency_ms: int | None,
    error: str | None,
) -> Any:
    return db.call(
        "llm_settle",
        call_id=call_id,
        outcome=outcome,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        cost_usd=cost_usd,
        latency_ms=latency_ms,
        error=error,
    )


def llm_spend(db: Database, *, time_zone: str | None, day: date | None) -> Any:
    return db.call("llm_spend", time_zone=time_zone, day=day)


def llm_model_cached(db: Database, *, configured: str | None, max_age_seconds: float | None) -> Any:
    return db.call("llm_model_cached", configured=configured, max_age_seconds=max_age_seconds)


def llm_model_store(
    db: Database, *, configured: str | None, resolved: str | None, fallback: bool | None, reason: str | None
) -> Any:
    return db.call("llm_model_store", configured=configured, resolved=resolved, fallback=fallback, reason=reason)


def take_rate_slot(db: Database, *, bucket: str | None, limit: int | None, window_seconds: float | None) -> Any:
    return db.call("take_rate_slot", bucket=bucket, limit=limit, window_seconds=window_seconds)


# --- Buffer's OAuth grant (app.clients.buffer_tokens) ----------------------------------------------
def buffer_grant_save(
    db: Database,
    *,
    access_token_enc: str | None,
    refresh_token_enc: str | None,
    expires_in: float | None,
    scope: str | None,
) -> Any:
    return db.call(
        "buffer_grant_save",
        access_token_enc=access_token_enc,
        refresh_token_enc=refresh_token_enc,
        expires_in=expires_in,
        scope=scope,
    )


def buffer_grant_current(db: Database) -> Any:
    return db.call("buffer_grant_current")


def buffer_grant_status(db: Database) -> Any:
    return db.call("buffer_grant_status")


def buffer_refresh_begin(db: Database, *, margin_seconds: float | None, lease_seconds: float | None) -> Any:
    return db.call("buffer_refresh_begin", margin_seconds=margin_seconds, lease_seconds=lease_seconds)


def buffer_refresh_finish(
    db: Database,
    *,
    lease: UUID | None,
    access_token_enc: str | None,
    refresh_token_enc: str | None,
    expires_in: float | None,
    scope: str | None,
) -> Any:
    return db.call(
        "buffer_refresh_finish",
        lease=lease,
        access_token_enc=access_token_enc,
        refresh_token_enc=refresh_token_enc,
        expires_in=expires_in,
        scope=scope,
    )


def buffer_refresh_abandon(db: Database, *, lease: UUID | None) -> Any:
    return db.call("buffer_refresh_abandon", lease=lease)


def buffer_grant_reconnect(db: Database, *, reason: str | None, lease: UUID | None) -> Any:
    return db.call("buffer_grant_reconnect", reason=reason, lease=lease)
