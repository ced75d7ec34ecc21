"""The built-in action kinds, so the executor's path is real without any outside system:
`note.record` (a note in opsdesk's own database) and `webhook.post` (a JSON event to a URL)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.settings import Settings
from app.kinds import sql
from app.kinds.base import ActionKind
from app.kinds.context import HandlerContext


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
    return sql.record_note(ctx.db, action_id=ctx.action.id, body=payload.body, metadata=payload.metadata)


def post_webhook(ctx: HandlerContext) -> dict[str, Any]:
    payload = WebhookPostPayload.model_validate(ctx.action.requested_action)
    webhook = ctx.clients.get(Settings.webhook_client)
    body = {"event": payload.event, "data": payload.data, "action_id": str(ctx.action.id)}
    ctx.mark_dispatched()
    return webhook.post_json(body, idempotency_key=ctx.action.idempotency_key)


BUILTIN_KINDS: tuple[ActionKind, ...] = (
    ActionKind(
        name="note.record",
        description="Record a note in opsdesk's own database",
        payload_model=NoteRecordPayload,
        handler=record_note,
        editable=frozenset({"body"}),
    ),
    ActionKind(
        name="webhook.post",
        description="POST a JSON event to WEBHOOK_POST_URL with an idempotency key",
        payload_model=WebhookPostPayload,
        handler=post_webhook,
    ),
)
