"""Pareto value tiers: A brings most of the value, B the next slice, C the rest, P prospects."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clientela.scoring.domain.reasons import ReasonData, reason
from clientela.shared.contracts import Tier, TierMove

# Relative slack when comparing running sums with a share of the total: float addition of many
# small values must not push a customer who completes the share into the next tier.
_SHARE_TOLERANCE = 1e-9

TierCodes = npt.NDArray[np.int8]

# Tier codes in numpy columns; their order is the tier order (A > B > C > P).
CODE: dict[Tier, int] = {Tier.P: 0, Tier.C: 1, Tier.B: 2, Tier.A: 3}
TIER_OF_CODE: tuple[Tier, ...] = (Tier.P, Tier.C, Tier.B, Tier.A)
NO_TIER = -1


@dataclass(frozen=True, slots=True)
class TieringPolicy:
    """The value shares that close tier A and tier B, and the hysteresis band around them."""

    a_share: float = 0.80
    b_share: float = 0.95
    hysteresis: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.a_share <= self.b_share <= 1:
            raise ValueError("tier shares must satisfy 0 < a_share <= b_share <= 1")
        if not 0 <= self.hysteresis < 1:
            raise ValueError("hysteresis must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Smallest predicted value inside tier A and inside tier B (None when a tier is empty)."""

    a_cutoff: float | None
    b_cutoff: float | None
    customer_count: int
    total_value: float
    policy: TieringPolicy
    top_value: float | None = None

    def tier_for(self, value: float, previous: Tier | None = None) -> Tier:
        """Return the customer tier of a predicted value, held in place inside the band."""
        codes = self.tiers_for(
            np.array([value]),
            np.array([CODE[previous] if previous is not None else NO_TIER], dtype=np.int8),
        )
        return TIER_OF_CODE[int(codes[0])]

    def tiers_for(
        self, values: npt.NDArray[np.float64], previous: TierCodes | None = None
    ) -> TierCodes:
        """Return tier codes; a customer crosses a cut-off only by more than the band.

        Moving up needs a value above the cut-off times (1 + band); moving down needs one below
        the cut-off times (1 - band). A customer near a boundary therefore keeps their tier.
        Without a previous tier (or from P) the plain cut-offs decide; equal values share a tier.
        """
        plain = self._raw(values, 1.0)
        band = self.policy.hysteresis
        if previous is None or band == 0:
            return plain
        up = self._raw(values, 1.0 + band)
        down = self._raw(values, 1.0 - band)
        known = previous >= CODE[Tier.C]
        held = np.where(up > previous, up, np.where(down < previous, down, previous))
        return np.where(known, held, plain).astype(np.int8)

    def _raw(self, values: npt.NDArray[np.float64], factor: float) -> TierCodes:
        codes = np.full(values.shape, CODE[Tier.C], dtype=np.int8)
        if self.b_cutoff is not None:
            codes[values >= self._line(self.b_cutoff, factor)] = CODE[Tier.B]
        if self.a_cutoff is not None:
            codes[values >= self._line(self.a_cutoff, factor)] = CODE[Tier.A]
        return codes

    def _line(self, cutoff: float, factor: float) -> float:
        # The band never lifts a line above the best customer: the top of the ranking can
        # always reach tier A, however small the population.
        line = cutoff * factor
        return min(line, self.top_value) if self.top_value is not None else line

    def reasons(self) -> tuple[ReasonData, ...]:
        """Return the population figures that decided the tier, as reasons."""
        return _cutoff_reasons(self)


@functools.lru_cache(maxsize=8)
def _cutoff_reasons(cutoffs: Cutoffs) -> tuple[ReasonData, ...]:
    # Every customer of a batch (or a sweep) shares these: build them once per ranking.
    return (
        reason(
            code="a_cutoff",
            value=_rounded(cutoffs.a_cutoff),
            detail=f"top customers bringing {cutoffs.policy.a_share:.0%} of predicted value",
        ),
        reason(
            code="b_cutoff",
            value=_rounded(cutoffs.b_cutoff),
            detail=f"customers bringing up to {cutoffs.policy.b_share:.0%} cumulatively",
        ),
        reason(code="customer_count", value=cutoffs.customer_count, detail="customers ranked"),
        reason(
            code="hysteresis",
            value=cutoffs.policy.hysteresis,
            detail="how far past a cut-off a customer must be to change tier",
        ),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def compute_cutoffs(
    values: Iterable[float] | npt.NDArray[np.float64], policy: TieringPolicy
) -> Cutoffs:
    """Rank predicted values descending and find the last value inside A and inside B.

    A is the shortest run of top customers whose values reach `a_share` of the total; B the
    following run until `b_share` cumulatively. Customers worth nothing bring no share, so
    they are never A or B: an all-zero (or empty) population has no cut-offs at all.
    """
    all_values = np.asarray(
        values if isinstance(values, np.ndarray) else list(values), dtype=np.float64
    )
    ranked = -np.sort(-all_values[all_values > 0])
    running = np.cumsum(ranked)
    total = float(running[-1]) if running.size else 0.0
    tolerance = total * _SHARE_TOLERANCE
    a_cutoff: float | None = None
    b_cutoff: float | None = None
    if ranked.size:
        a_end = int(np.searchsorted(running, policy.a_share * total - tolerance, side="left"))
        a_end = min(a_end, ranked.size - 1)
        a_cutoff = float(ranked[a_end])
        b_end = int(np.searchsorted(running, policy.b_share * total - tolerance, side="left"))
        b_end = min(b_end, ranked.size - 1)
        # B ends with the customer who completes b_share; it is empty when A already did.
        if b_end > a_end and running[a_end] < policy.b_share * total - tolerance:
            b_cutoff = float(ranked[b_end])
    return Cutoffs(
        a_cutoff=a_cutoff,
        b_cutoff=b_cutoff,
        customer_count=int(all_values.size),
        total_value=total,
        policy=policy,
        top_value=float(ranked[0]) if ranked.size else None,
    )


@dataclass(frozen=True, slots=True)
class ParetoPoint:
    """The top `customer_share` of customers bring `value_share` of the predicted value."""

    customer_share: float
    value_share: float


def pareto_curve(values: npt.NDArray[np.float64], points: int = 20) -> list[ParetoPoint]:
    """Return the Pareto (Lorenz) curve of predicted value at evenly spaced customer shares."""
    if values.size == 0:
        return []
    ranked = -np.sort(-values)
    running = np.cumsum(ranked)
    total = float(running[-1])
    shares = np.linspace(0, 1, points + 1)[1:]
    counts = np.maximum(1, np.ceil(shares * ranked.size).astype(np.int64))
    return [
        ParetoPoint(float(s), float(running[c - 1] / total) if total > 0 else 0.0)
        for s, c in zip(shares, counts, strict=True)
    ]


def tier_move(from_tier: Tier | None, to_tier: Tier) -> TierMove | None:
    """Return how a profile moved between tiers (A > B > C > P), or None when it did not."""
    if from_tier is None:
        return TierMove.ENTERED
    if from_tier == to_tier:
        return None
    return TierMove.UP if CODE[to_tier] > CODE[from_tier] else TierMove.DOWN
