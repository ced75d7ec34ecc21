"""Checks the executor makes on a claimed action just before its handler runs.

Facts can change between approval and run (a longer recipient list, a higher amount, stricter
thresholds in the settings). A check that finds the action no longer covered by its approval
returns a `SendBack`; the executor then puts the action back to `pending` for a person instead of
running it. The executor runs `default_checks` in order; a new check is one more callable in that
tuple.

Facts that live outside opsdesk (a HubSpot deal's current stage) are re-read by the kind's
handler, which reads them anyway just before it acts: when they changed, it calls `ctx.send_back`
(`send_back` here, bound by the executor) with the draft they now give, instead of failing. The email quota is
checked by the email handlers when they reserve it: a full day defers the send to the next quota
day without using an attempt (QuotaExhausted is a RateLimited), so it is not a check here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from app.approvals import sql
from app.approvals.risk_policy import Assessment, RiskThresholds, reassess
from app.core.database import Database
from app.core.errors import SentBack
from app.core.models import Impact, Reason, Tier
from app.core.settings import Settings
from app.kinds.base import ActionKind
from app.kinds.context import ClaimedAction


@dataclass(frozen=True)
class SendBack:
    tier: Tier
    reasons: list[Reason]
    why: str


PreRunCheck = Callable[[ClaimedAction, ActionKind], SendBack | None]


class PolicyRecheck:
    """The risk policy again, computed as `ApprovalQueue.submit` computes it, on what the action is
    now: its stored facts, the facts its (possibly edited) payload implies, its kind's rules and
    today's thresholds. A tier above the one it was approved at sends it back."""

    def __init__(self, settings: Settings) -> None:
        self.thresholds = RiskThresholds.from_settings(settings)

    def __call__(self, action: ClaimedAction, kind: ActionKind) -> SendBack | None:
        _, assessment = assess_now(kind, action.requested_action, action, self.thresholds)
        if assessment.tier.rank <= action.risk_level.rank:
            return None
        details = "; ".join(reason.detail for reason in assessment.reasons if reason.tier is assessment.tier)
        return SendBack(
            tier=assessment.tier,
            reasons=assessment.reasons,
            why=f"approved as {action.risk_level.value}, the policy now says {assessment.tier.value}: {details}",
        )


def assess_now(
    kind: ActionKind, payload: Mapping[str, Any], action: ClaimedAction, thresholds: RiskThresholds
) -> tuple[Impact, Assessment]:
    """The policy on `payload` as `ApprovalQueue.submit` computes it (risk_policy.reassess)."""
    assessed = reassess(
        kind, payload, action.model_dump(include={"estimated_impact", "metadata", "risk_reasons"}), thresholds
    )
    return assessed.impact, assessed.assessment


def send_back(
    db: Database, settings: Settings, action: ClaimedAction, kind: ActionKind, payload: dict[str, Any], why: str
) -> NoReturn:
    """For a handler that re-read outside facts and found them changed since approval (the
    executor binds this as `HandlerContext.send_back`): the action goes back to pending with
    `payload` (the draft those facts give), tiered again, with a fresh expiry; the approval was for
    something that can no longer happen. Never returns."""
    draft = kind.validate_payload(payload)
    impact, assessment = assess_now(kind, draft, action, RiskThresholds.from_settings(settings))
    sql.requeue_action(
        db,
        id=action.id,
        attempt_token=action.attempt_token,
        risk_level=assessment.tier.value,
        risk_reasons=[reason.model_dump(mode="json") for reason in assessment.reasons],
        ttl_seconds=settings.approval_ttl_hours(assessment.tier.value) * 3600,
        reason=why,
        requested_action=draft,
        estimated_impact=impact.model_dump(mode="json"),
    )
    raise SentBack(f"action {action.id} is back to pending: {why}")


def default_checks(settings: Settings) -> tuple[PreRunCheck, ...]:
    return (PolicyRecheck(settings),)
