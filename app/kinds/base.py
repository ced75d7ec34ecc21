"""The action kinds opsdesk knows: each one's payload shape, editable fields, facts the policy must
assume whatever the caller says, what an edit may not change, and the handler that performs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from app.approvals.risk_policy import Assessment, RiskThresholds, assess
from app.core.errors import InvalidInput
from app.core.models import Impact, Reason, Tier
from app.core.untrusted import validation_errors
from app.kinds.context import HandlerContext, NoteRecordPayload, WebhookPostPayload, post_webhook, record_note


def impact_as_given(payload: Mapping[str, Any], impact: Impact) -> Impact:
    return impact


def any_edit(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Every edit of the editable fields is fine: nothing in them carries a fact."""


@dataclass(frozen=True)
class ActionKind:
    name: str
    description: str
    payload_model: type[BaseModel]
    handler: Callable[[HandlerContext], dict[str, Any]]
    editable: frozenset[str] = frozenset()
    always_public: bool = False
    always_irreversible: bool = False
    # facts only the payload shows (a deal stage moving backwards is irreversible): computed by
    # code at submission, so the policy never relies on the caller's word for them
    impact_for: Callable[[Mapping[str, Any], Impact], Impact] = impact_as_given
    # an edit that would make the draft's text and its facts disagree raises InvalidInput, naming
    # the field (a task's text given money it does not carry); given the draft before and after
    check_edit: Callable[[Mapping[str, Any], Mapping[str, Any]], None] = any_edit

    def validate_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.payload_model.model_validate(payload).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidInput(
                f"payload does not fit {self.name}",
                details={"errors": validation_errors(exc)},
            ) from exc

    def enforce(self, impact: Impact) -> Impact:
        """A caller can make an action riskier, never less risky than its kind is."""
        return impact.model_copy(
            update={
                "public": impact.public or self.always_public,
                "reversible": impact.reversible and not self.always_irreversible,
            }
        )

    def reassess(self, payload: Mapping[str, Any], stored: Mapping[str, Any], thresholds: RiskThresholds) -> Assessed:
        """The policy on `payload` as `ApprovalQueue.submit` computes it, for an action already
        stored (`stored`: its estimated_impact, metadata and risk_reasons): its facts, what the payload
        implies, this kind's rules, the model's suggested tier, and what the submitter's own checks
        flagged (a settings floor, unsourced links), which stay. Used again whenever the draft or the
        thresholds may have changed: an edit, and just before the action runs."""
        impact = self.enforce(self.impact_for(payload, Impact.model_validate(stored["estimated_impact"])))
        suggested = (stored.get("metadata") or {}).get("suggested_tier")
        flags = [
            Reason.model_validate(reason)
            for reason in stored.get("risk_reasons") or []
            if Reason.model_validate(reason).dimension in ("content", "policy")
        ]
        return Assessed(impact, assess(impact, thresholds, Tier(suggested) if suggested else None, flags))


@dataclass(frozen=True)
class Assessed:
    impact: Impact
    assessment: Assessment


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


def kind_registry() -> dict[str, ActionKind]:
    """Every kind opsdesk can run. Integration kinds live beside their handlers and import this
    module for ActionKind, so they are gathered here at call time, not at import time."""
    from app.kinds.email import EMAIL_KINDS
    from app.kinds.hubspot import HUBSPOT_KINDS
    from app.kinds.notion import NOTION_KINDS

    kinds = [*BUILTIN_KINDS, *EMAIL_KINDS, *HUBSPOT_KINDS, *NOTION_KINDS]
    return {kind.name: kind for kind in kinds}


def lookup(kinds: Mapping[str, ActionKind], name: str) -> ActionKind:
    try:
        return kinds[name]
    except KeyError:
        raise InvalidInput(f"unknown action kind {name!r}", details={"known_kinds": sorted(kinds)}) from None
