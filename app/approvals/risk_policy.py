"""The deterministic risk policy: an action's facts in, a tier and its reasons out.

The tier is the highest any dimension gives (DESIGN.md's table, every number a setting). A tier the
model suggests may raise the result, never lower it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.core.models import Impact, Reason, Tier
from app.core.settings import Settings
from app.kinds.base import ActionKind


@dataclass(frozen=True)
class RiskThresholds:
    recipients_medium: int = 50  # at or above: MEDIUM
    recipients_high: int = 300  # above: HIGH
    money_medium: Decimal = Decimal("10")  # at or above: MEDIUM
    money_high: Decimal = Decimal("50")  # above: HIGH
    money_critical: Decimal = Decimal("100")  # above: CRITICAL

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskThresholds:
        return cls(
            recipients_medium=settings.risk_recipients_medium,
            recipients_high=settings.risk_recipients_high,
            money_medium=settings.risk_money_medium,
            money_high=settings.risk_money_high,
            money_critical=settings.risk_money_critical,
        )


@dataclass(frozen=True)
class Assessment:
    tier: Tier
    reasons: list[Reason]


def _recipients(count: int, t: RiskThresholds) -> Reason | None:
    if count > t.recipients_high:
        return Reason(dimension="recipients", tier=Tier.HIGH, detail=f"{count} recipients is over {t.recipients_high}")
    if count >= t.recipients_medium:
        return Reason(
            dimension="recipients",
            tier=Tier.MEDIUM,
            detail=f"{count} recipients is {t.recipients_medium}-{t.recipients_high}",
        )
    return None


def _money(amount: Decimal, t: RiskThresholds) -> Reason | None:
    shown = f"${amount:,.2f}"
    if amount > t.money_critical:
        return Reason(dimension="money", tier=Tier.CRITICAL, detail=f"{shown} is over ${t.money_critical}")
    if amount > t.money_high:
        return Reason(
            dimension="money", tier=Tier.HIGH, detail=f"{shown} is over ${t.money_high} (up to ${t.money_critical})"
        )
    if amount >= t.money_medium:
        return Reason(dimension="money", tier=Tier.MEDIUM, detail=f"{shown} is ${t.money_medium}-${t.money_high}")
    return None


def assess(
    impact: Impact, thresholds: RiskThresholds, suggested: Tier | None = None, flags: Sequence[Reason] = ()
) -> Assessment:
    """`flags`: what the submitter's own checks found in the draft; each can only raise the tier."""
    reasons = [
        r for r in (_recipients(impact.recipients, thresholds), _money(impact.cost_usd, thresholds)) if r is not None
    ]
    reasons.extend(flags)
    if impact.public:
        reasons.append(Reason(dimension="public", tier=Tier.MEDIUM, detail="public content"))
    if not impact.reversible:
        reasons.append(Reason(dimension="irreversible", tier=Tier.HIGH, detail="cannot be undone"))
    tier = max((r.tier for r in reasons), key=lambda t: t.rank, default=Tier.LOW)
    if suggested is not None and suggested.rank > tier.rank:
        reasons.append(
            Reason(dimension="model", tier=suggested, detail=f"the drafting model asked for {suggested.value}")
        )
        tier = suggested
    if not reasons:
        reasons.append(Reason(dimension="none", tier=Tier.LOW, detail="every dimension is low risk"))
    return Assessment(tier=tier, reasons=reasons)


@dataclass(frozen=True)
class Assessed:
    impact: Impact
    assessment: Assessment


def reassess(
    kind: ActionKind, payload: Mapping[str, Any], stored: Mapping[str, Any], thresholds: RiskThresholds
) -> Assessed:
    """The policy on `payload` as `ApprovalQueue.submit` computes it, for an action already
    stored (`stored`: its estimated_impact, metadata and risk_reasons): its facts, what the payload
    implies, its kind's rules, the model's suggested tier, and what the submitter's own checks
    flagged (a settings floor, unsourced links), which stay. Used again whenever the draft or the
    thresholds may have changed: an edit, and just before the action runs."""
    impact = kind.enforce(kind.impact_for(payload, Impact.model_validate(stored["estimated_impact"])))
    suggested = (stored.get("metadata") or {}).get("suggested_tier")
    flags = [
        Reason.model_validate(reason)
        for reason in stored.get("risk_reasons") or []
        if Reason.model_validate(reason).dimension in ("content", "policy")
    ]
    return Assessed(impact, assess(impact, thresholds, Tier(suggested) if suggested else None, flags))
