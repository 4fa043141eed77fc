"""RFM: recency, frequency and monetary value as quantile groups of the customer population."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clientela.scoring.domain.facts import SECONDS_PER_DAY, FactColumns, FloatArray

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RfmEdges:
    """Inner quantile boundaries per dimension; `groups` groups, 1 (worst) .. groups (best)."""

    groups: int
    recency_days: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]

    @classmethod
    def empty(cls, groups: int = 5) -> RfmEdges:
        """Return edges that put everyone in the middle group (no population yet)."""
        return cls(groups, (), (), ())


def fit_rfm_edges(facts: FactColumns, as_of_s: float, groups: int = 5) -> RfmEdges:
    """Return the quantile boundaries of the population as of a moment (exact, one pass)."""
    if not 2 <= groups <= 5:
        raise ValueError("RFM groups must be between 2 and 5")
    if len(facts) == 0:
        return RfmEdges.empty(groups)
    probabilities = np.arange(1, groups) / groups

    def edges(column: FloatArray) -> tuple[float, ...]:
        return tuple(float(v) for v in np.quantile(column, probabilities))

    return RfmEdges(
        groups=groups,
        recency_days=edges(_recency_days(facts, as_of_s)),
        frequency=edges(facts.purchase_days),
        monetary=edges(facts.total_spend),
    )


def _recency_days(facts: FactColumns, as_of_s: float) -> FloatArray:
    return np.asarray(
        np.maximum(0.0, (as_of_s - facts.last_purchase_s) / SECONDS_PER_DAY), dtype=np.float64
    )


@dataclass(frozen=True, slots=True)
class RfmScores:
    """R, F and M group per customer (the highest group is the best) and days since buying."""

    recency: IntArray
    frequency: IntArray
    monetary: IntArray
    recency_days: FloatArray


def rfm_scores(facts: FactColumns, as_of_s: float, edges: RfmEdges) -> RfmScores:
    """Return each customer's groups: recent, frequent and big spenders score high."""
    days = _recency_days(facts, as_of_s)
    middle = (edges.groups + 1) // 2

    def group(values: FloatArray, bounds: tuple[float, ...], *, lower_is_better: bool) -> IntArray:
        if not bounds:
            return np.full(values.shape, middle, dtype=np.int64)
        if lower_is_better:
            # Fewer days since the last purchase is better: count the bounds at or above.
            return (len(bounds) + 1 - np.searchsorted(bounds, values, side="left")).astype(np.int64)
        return (1 + np.searchsorted(bounds, values, side="left")).astype(np.int64)

    return RfmScores(
        recency=group(days, edges.recency_days, lower_is_better=True),
        frequency=group(facts.purchase_days, edges.frequency, lower_is_better=False),
        monetary=group(facts.total_spend, edges.monetary, lower_is_better=False),
        recency_days=days,
    )
