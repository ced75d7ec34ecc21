"""The built-in action handlers, so the executor's path is real before the agents exist.

A handler gets a `HandlerContext` and returns a JSON-able result. Before it makes an outside call
that could take effect, it calls `ctx.mark_dispatched()`: a worker that dies after that point
leaves the action `unknown` for a person, never re-sent blindly. A handler that makes several
outside requests calls `ctx.heartbeat()` before each: its lease then runs another full term, so
a slow but live attempt is never taken for a dead one (it raises StaleAttempt once superseded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

from app.clients import Clients
from app.core.database import Database
from app.core.models import Reason, Tier
from app.core.settings import Settings

_IDEMPOTENCY_NAMESPACE = uuid5(NAMESPACE_URL, "https://opsdesk.invalid/actions")


def idempotency_key(action_id: UUID) -> str:
    """Derived from the action, not the attempt: every retry sends the same key."""
    return str(uuid5(_IDEMPOTENCY_NAMESPACE, str(action_id)))


class ClaimedAction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: UUID
    agent: str
    kind: str
    requested_action: dict[str, Any]
    estimated_impact: dict[str, Any]
    risk_level: Tier  # the tier it was approved at
    risk_reasons: list[Reason] = []
    metadata: dict[str, Any]
    attempt_token: UUID
    attempts: int
    max_attempts: int
    draft_hash: str

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.id)


@dataclass
class HandlerContext:
    db: Database
    settings: Settings
    action: ClaimedAction
    mark_dispatched: Callable[[], None]
    heartbeat: Callable[[], None]
    clients: Clients


class NoteRecordPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=20_000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class WebhookPostPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)


def record_note(ctx: HandlerContext) -> dict[str, Any]:
    payload = NoteRecordPayload.model_validate(ctx.action.requested_action)
    return ctx.db.call("record_note", action_id=ctx.action.id, body=payload.body, metadata=payload.metadata)


def post_webhook(ctx: HandlerContext) -> dict[str, Any]:
    payload = WebhookPostPayload.model_validate(ctx.action.requested_action)
    webhook = ctx.clients.webhook
    body = {"event": payload.event, "data": payload.data, "action_id": str(ctx.action.id)}
    ctx.mark_dispatched()
    return webhook.post_json(body, idempotency_key=ctx.action.idempotency_key)
