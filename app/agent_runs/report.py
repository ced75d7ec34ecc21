"""What one agent run reports: the actions it proposed (or built, in a dry run), what it refused,
and how the run ended. The CLI prints it and the schedule records it with the job's run."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.core.models import Status, Tier


class ProposedAction(BaseModel):
    source: str
    kind: str
    summary: str
    tier: Tier
    recipients: int
    cost_usd: Decimal
    status: Status | None  # None: a dry run, nothing submitted
    action_id: UUID | None = None
    duplicate: bool = False


class Refusal(BaseModel):
    ref: str
    reason: str


class AgentRunReport(BaseModel):
    run_id: UUID
    agent: str
    trigger: str
    dry_run: bool
    outcome: Literal["ok", "failed"]
    error: str | None = None
    retryable: bool = False  # failed for a reason that may pass (timeout, overload, rate limit)
    sources: int = 0  # put before the model
    already_handled: int = 0
    actions: list[ProposedAction] = Field(default_factory=list)
    refused: list[Refusal] = Field(default_factory=list)
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
