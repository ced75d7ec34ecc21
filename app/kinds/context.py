"""What a handler is given: the claimed action, and the ways back to the core.

A handler gets a `HandlerContext` and returns a JSON-able result. Before it makes an outside call
that could take effect, it calls `ctx.mark_dispatched()`: a worker that dies after that point
leaves the action `unknown` for a person, never re-sent blindly. A handler that makes several
outside requests calls `ctx.heartbeat()` before each: its lease then runs another full term, so
a slow but live attempt is never taken for a dead one (it raises StaleAttempt once superseded).

What a handler needs of the approval queue comes through the context too, bound by the executor,
so no kind imports the queue: `send_back` (outside facts changed since approval: back to a person
with the draft they now give), `follow_up` (queue another action, keyed to this one), and
`uncertain` / `note_uncertain` (when an earlier attempt may have reached the outside world).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict

from app.clients import Clients
from app.core.database import Database
from app.core.models import ActionRequest, Reason, SubmitResult, Tier
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
    requested_at: datetime | None = None
    decided_at: datetime | None = None  # approved (by a person, or the policy's auto-run)

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
    # the action goes back to pending with this payload (the draft the changed facts give), tiered
    # again, because the approval was for something that can no longer happen; never returns
    send_back: Callable[[dict[str, Any], str], NoReturn]
    # submit another action on this one's behalf (actor `action:<id>`), through the same policy
    follow_up: Callable[[ActionRequest], SubmitResult]
    # when an attempt of this action first may have reached the outside world, and how long ago
    uncertain: Callable[[], dict[str, Any]]
    # record that this attempt may have reached it (the first such attempt's time is kept)
    note_uncertain: Callable[[], dict[str, Any]]
