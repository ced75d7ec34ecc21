"""The risk policy is a pure function: every boundary of DESIGN.md's table, and raise-only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.approvals.risk_policy import RiskThresholds, assess
from app.core.models import Impact, Tier
from tests.conftest import make_settings

T = RiskThresholds()


@pytest.mark.parametrize(
    ("recipients", "tier"),
    [
        (0, Tier.LOW),
        (49, Tier.LOW),
        (50, Tier.MEDIUM),
        (300, Tier.MEDIUM),
        (301, Tier.HIGH),
        (750, Tier.HIGH),
    ],
)
def test_recipients(recipients: int, tier: Tier) -> None:
    assert assess(Impact(recipients=recipients), T).tier is tier


@pytest.mark.parametrize(
    ("cost", "tier"),
    [
        ("0", Tier.LOW),
        ("9.99", Tier.LOW),
        ("10", Tier.MEDIUM),
        ("50", Tier.MEDIUM),
        ("50.01", Tier.HIGH),
        ("100", Tier.HIGH),
        ("100.01", Tier.CRITICAL),
        ("5000", Tier.CRITICAL),
    ],
)
def test_money(cost: str, tier: Tier) -> None:
    assert assess(Impact(cost_usd=Decimal(cost)), T).tier is tier


def test_public_is_at_least_medium_and_irreversible_at_least_high() -> None:
    assert assess(Impact(public=True), T).tier is Tier.MEDIUM
    assert assess(Impact(reversible=False), T).tier is Tier.HIGH
    assert assess(Impact(public=True, cost_usd=Decimal("200")), T).tier is Tier.CRITICAL


def test_the_highest_dimension_wins_and_every_raising_dimension_is_a_reason() -> None:
    result = assess(Impact(recipients=120, cost_usd=Decimal("75"), public=True), T)
    assert result.tier is Tier.HIGH
    assert [(r.dimension, r.tier) for r in result.reasons] == [
        ("recipients", Tier.MEDIUM),
        ("money", Tier.HIGH),
        ("public", Tier.MEDIUM),
    ]


def test_all_low_says_so() -> None:
    result = assess(Impact(recipients=3), T)
    assert result.tier is Tier.LOW and [r.dimension for r in result.reasons] == ["none"]


@pytest.mark.parametrize("suggested", list(Tier))
def test_a_suggested_tier_raises_but_never_lowers(suggested: Tier) -> None:
    result = assess(Impact(recipients=120), T, suggested)
    assert result.tier.rank == max(Tier.MEDIUM.rank, suggested.rank)
    assert any(r.dimension == "model" for r in result.reasons) == (suggested.rank > Tier.MEDIUM.rank)


def test_thresholds_come_from_settings() -> None:
    settings = make_settings(risk_recipients_medium=10, risk_money_high=15, risk_money_critical=20)
    thresholds = RiskThresholds.from_settings(settings)
    assert assess(Impact(recipients=10), thresholds).tier is Tier.MEDIUM
    assert assess(Impact(cost_usd=Decimal("21")), thresholds).tier is Tier.CRITICAL


def test_impact_refuses_negative_facts() -> None:
    with pytest.raises(ValueError):
        Impact(recipients=-1)
    with pytest.raises(ValueError):
        Impact(cost_usd=Decimal("-5"))
