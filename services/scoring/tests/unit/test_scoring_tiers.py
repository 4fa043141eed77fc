"""Pareto cut-offs and tier moves."""

from __future__ import annotations

import numpy as np
import pytest

from clientela.scoring.domain.tiers import (
    Cutoffs,
    TieringPolicy,
    compute_cutoffs,
    pareto_curve,
    tier_move,
)
from clientela.shared.contracts import Tier, TierMove

POLICY = TieringPolicy(a_share=0.80, b_share=0.95)


def tiers(values: list[float], policy: TieringPolicy = POLICY) -> list[Tier]:
    cutoffs = compute_cutoffs(values, policy)
    return [cutoffs.tier_for(v) for v in values]


def test_top_customer_bringing_the_a_share_is_a_and_the_next_is_b() -> None:
    cutoffs = compute_cutoffs([90, 10], POLICY)
    assert (cutoffs.a_cutoff, cutoffs.b_cutoff) == (90, 10)
    assert tiers([90, 10]) == [Tier.A, Tier.B]


def test_classic_pareto_population() -> None:
    values = [50.0, 30.0, 10.0, 5.0, 3.0, 2.0]
    cutoffs = compute_cutoffs(values, POLICY)
    # 50+30 = 80% closes A; +10+5 = 95% closes B; 3 and 2 are the tail.
    assert (cutoffs.a_cutoff, cutoffs.b_cutoff) == (30.0, 5.0)
    assert tiers(values) == [Tier.A, Tier.A, Tier.B, Tier.B, Tier.C, Tier.C]
    assert cutoffs.customer_count == 6
    assert cutoffs.total_value == pytest.approx(100)


def test_order_of_input_does_not_matter() -> None:
    assert compute_cutoffs([2, 50, 5, 30, 3, 10], POLICY) == compute_cutoffs(
        [50, 30, 10, 5, 3, 2], POLICY
    )


def test_equal_values_share_the_better_tier() -> None:
    # The second 45 is not needed to reach 80%, but a tie must not split a tier.
    assert tiers([45, 45, 10]) == [Tier.A, Tier.A, Tier.B]
    assert tiers([50, 50]) == [Tier.A, Tier.A]
    assert tiers([80, 10, 10]) == [Tier.A, Tier.B, Tier.B]


def test_one_customer_is_a() -> None:
    cutoffs = compute_cutoffs([12.5], POLICY)
    assert cutoffs.a_cutoff == 12.5
    assert cutoffs.b_cutoff is None
    assert cutoffs.tier_for(12.5) is Tier.A


def test_b_closes_at_the_b_share() -> None:
    cutoffs = compute_cutoffs([90, 6, 4], POLICY)
    assert (cutoffs.a_cutoff, cutoffs.b_cutoff) == (90, 6)
    assert tiers([90, 6, 4]) == [Tier.A, Tier.B, Tier.C]


def test_empty_b_when_a_alone_brings_the_b_share() -> None:
    cutoffs = compute_cutoffs([100, 1], POLICY)
    assert (cutoffs.a_cutoff, cutoffs.b_cutoff) == (100, None)
    assert tiers([100, 1]) == [Tier.A, Tier.C]


def test_customers_worth_nothing_are_c() -> None:
    assert tiers([100, 0, 0]) == [Tier.A, Tier.C, Tier.C]
    cutoffs = compute_cutoffs([0, 0], POLICY)
    assert (cutoffs.a_cutoff, cutoffs.b_cutoff) == (None, None)
    assert cutoffs.customer_count == 2
    assert tiers([0, 0]) == [Tier.C, Tier.C]


def test_empty_population_has_no_cutoffs() -> None:
    cutoffs = compute_cutoffs([], POLICY)
    assert (cutoffs.a_cutoff, cutoffs.b_cutoff, cutoffs.customer_count) == (None, None, 0)
    assert cutoffs.tier_for(5) is Tier.C


def test_float_rounding_does_not_push_a_customer_out_of_a() -> None:
    # Ten 0.1s sum to 0.9999999999999999: the eighth still completes 80%.
    values = [0.1] * 10
    cutoffs = compute_cutoffs(values, POLICY)
    assert cutoffs.a_cutoff == 0.1
    assert tiers(values) == [Tier.A] * 10


def test_reasons_carry_the_cutoffs() -> None:
    reasons = {r["code"]: r["value"] for r in compute_cutoffs([90, 10], POLICY).reasons()}
    assert reasons == {"a_cutoff": 90, "b_cutoff": 10, "customer_count": 2, "hysteresis": 0.05}


def test_policy_refuses_shares_out_of_order() -> None:
    with pytest.raises(ValueError, match="shares"):
        TieringPolicy(a_share=0.9, b_share=0.8)
    with pytest.raises(ValueError, match="shares"):
        TieringPolicy(a_share=0, b_share=0.8)


@pytest.mark.parametrize(
    ("before", "after", "move"),
    [
        (None, Tier.A, TierMove.ENTERED),
        (None, Tier.P, TierMove.ENTERED),
        (Tier.P, Tier.C, TierMove.UP),
        (Tier.C, Tier.B, TierMove.UP),
        (Tier.B, Tier.A, TierMove.UP),
        (Tier.P, Tier.A, TierMove.UP),
        (Tier.A, Tier.B, TierMove.DOWN),
        (Tier.B, Tier.C, TierMove.DOWN),
        (Tier.C, Tier.P, TierMove.DOWN),
        (Tier.A, Tier.A, None),
        (Tier.P, Tier.P, None),
    ],
)
def test_tier_move(before: Tier | None, after: Tier, move: TierMove | None) -> None:
    assert tier_move(before, after) == move


@pytest.mark.parametrize(
    ("previous", "value", "expected"),
    [
        (None, 101.0, Tier.A),
        (None, 99.0, Tier.B),
        (Tier.B, 104.0, Tier.B),
        (Tier.B, 106.0, Tier.A),
        (Tier.A, 96.0, Tier.A),
        (Tier.A, 94.0, Tier.B),
        (Tier.A, 40.0, Tier.C),
        (Tier.C, 51.0, Tier.C),
        (Tier.C, 53.0, Tier.B),
        (Tier.P, 51.0, Tier.B),
    ],
)
def test_hysteresis_holds_a_tier_inside_the_band(
    previous: Tier | None, value: float, expected: Tier
) -> None:
    cutoffs = Cutoffs(
        a_cutoff=100.0,
        b_cutoff=50.0,
        customer_count=10,
        total_value=1000.0,
        policy=TieringPolicy(hysteresis=0.05),
    )
    assert cutoffs.tier_for(value, previous) is expected


def test_vectorised_cutoffs_match_a_plain_running_sum() -> None:
    rng = np.random.default_rng(7)
    values = rng.pareto(1.5, 10_000)
    cutoffs = compute_cutoffs(values, POLICY)
    ranked = sorted(values, reverse=True)
    running, a_cut = 0.0, None
    for v in ranked:
        running += v
        if running >= 0.8 * sum(ranked) * (1 - 1e-9):
            a_cut = v
            break
    assert cutoffs.a_cutoff == a_cut


def test_pareto_curve_ends_at_everything() -> None:
    curve = pareto_curve(np.array([80.0, 10.0, 5.0, 5.0]), points=4)
    assert [(p.customer_share, p.value_share) for p in curve] == [
        (0.25, 0.8),
        (0.5, 0.9),
        (0.75, 0.95),
        (1.0, 1.0),
    ]
