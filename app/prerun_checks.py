"""Checks the executor makes on a claimed action just before its handler runs.

Facts can change between approval and run (a longer recipient list, a higher amount, stricter
thresholds in the settings). A check that finds the action no longer covered by its approval
returns a `SendBack`; the executor then puts the action back to `pending` for a person instead of
running it. The executor runs `default_checks` in order; a new check (the email quota, say) is one
more callable in that tuple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.action_kinds import ActionKind
from app.handlers import ClaimedAction
from app.models import Impact, Reason, Tier
from app.risk_policy import RiskThresholds, assess
from app.settings import Settings


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
        stored = Impact.model_validate(action.estimated_impact)
        impact = kind.enforce(kind.impact_for(action.requested_action, stored))
        suggested = action.metadata.get("suggested_tier")
        assessment = assess(impact, self.thresholds, Tier(suggested) if suggested else None)
        if assessment.tier.rank <= action.risk_level.rank:
            return None
        details = "; ".join(reason.detail for reason in assessment.reasons if reason.tier is assessment.tier)
        return SendBack(
            tier=assessment.tier,
            reasons=assessment.reasons,
            why=f"approved as {action.risk_level.value}, the policy now says {assessment.tier.value}: {details}",
        )


def default_checks(settings: Settings) -> tuple[PreRunCheck, ...]:
    return (PolicyRecheck(settings),)
