"""Pareto value tiers: A brings most of the value, B the next slice, C the rest, P prospects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from clientela.shared.contracts import Reason, Tier, TierMove

# Relative slack when comparing running sums with a share of the total: float addition of many
# small values must not push a customer who completes the share into the next tier.
_SHARE_TOLERANCE = 1e-9

_RANK: dict[Tier, int] = {Tier.A: 3, Tier.B: 2, Tier.C: 1, Tier.P: 0}


@dataclass(frozen=True, slots=True)
class TieringPolicy:
    """The value shares that close tier A and tier B."""

    a_share: float = 0.80
    b_share: float = 0.95

    def __post_init__(self) -> None:
        if not 0 < self.a_share <= self.b_share <= 1:
            raise ValueError("tier shares must satisfy 0 < a_share <= b_share <= 1")


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Smallest predicted value inside tier A and inside tier B (None when a tier is empty)."""

    a_cutoff: float | None
    b_cutoff: float | None
    customer_count: int
    total_value: float
    policy: TieringPolicy

    def tier_for(self, value: float) -> Tier:
        """Return the customer tier of a predicted value; equal values share a tier."""
        if self.a_cutoff is not None and value >= self.a_cutoff:
            return Tier.A
        if self.b_cutoff is not None and value >= self.b_cutoff:
            return Tier.B
        return Tier.C

    def reasons(self) -> tuple[Reason, ...]:
        """Return the population figures that decided the tier, as reasons."""
        return (
            Reason(
                code="a_cutoff",
                value=_rounded(self.a_cutoff),
                detail=f"top customers bringing {self.policy.a_share:.0%} of predicted value",
            ),
            Reason(
                code="b_cutoff",
                value=_rounded(self.b_cutoff),
                detail=f"customers bringing up to {self.policy.b_share:.0%} cumulatively",
            ),
            Reason(code="customer_count", value=self.customer_count, detail="customers ranked"),
        )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def compute_cutoffs(values: Iterable[float], policy: TieringPolicy) -> Cutoffs:
    """Rank predicted values descending and find the last value inside A and inside B.

    A is the shortest run of top customers whose values reach `a_share` of the total; B the
    following run until `b_share` cumulatively. Customers worth nothing bring no share, so
    they are never A or B: an all-zero (or empty) population has no cut-offs at all.
    """
    all_values = list(values)
    ranked = sorted((v for v in all_values if v > 0), reverse=True)
    total = sum(ranked)
    tolerance = total * _SHARE_TOLERANCE
    a_target = policy.a_share * total - tolerance
    b_target = policy.b_share * total - tolerance
    a_cutoff: float | None = None
    b_cutoff: float | None = None
    running = 0.0
    a_closed = False
    for value in ranked:
        if not a_closed:
            a_cutoff = value
            running += value
            a_closed = running >= a_target
            continue
        if running >= b_target:
            break
        b_cutoff = value
        running += value
    return Cutoffs(
        a_cutoff=a_cutoff,
        b_cutoff=b_cutoff,
        customer_count=len(all_values),
        total_value=total,
        policy=policy,
    )


def tier_move(from_tier: Tier | None, to_tier: Tier) -> TierMove | None:
    """Return how a profile moved between tiers (A > B > C > P), or None when it did not."""
    if from_tier is None:
        return TierMove.ENTERED
    if from_tier == to_tier:
        return None
    return TierMove.UP if _RANK[to_tier] > _RANK[from_tier] else TierMove.DOWN
