"""What the value models read from a profile, as one row or as columns over a population."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clientela.scoring.domain.profile_view import ProfileView

FloatArray = npt.NDArray[np.float64]
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """Purchase history of one customer, reduced to what the models need (no personal data)."""

    purchase_days: int
    purchase_count: int
    first_purchase_s: float
    last_purchase_s: float
    total_spend: float
    cost_to_serve: float


def facts_of(profile: ProfileView) -> CustomerFacts | None:
    """Return the purchase facts of a profile, or None for a prospect (no sale recorded)."""
    agg = profile.aggregates
    if agg.purchase_count == 0:
        return None
    first = agg.first_purchase_at or agg.last_purchase_at or agg.first_seen_at or profile.created_at
    last = agg.last_purchase_at or first
    first_s = first.timestamp()
    return CustomerFacts(
        # Profiles written before purchase_days existed report 0: one day per sale is the
        # closest reading of what they knew.
        purchase_days=max(1, agg.purchase_days or agg.purchase_count),
        purchase_count=agg.purchase_count,
        first_purchase_s=first_s,
        last_purchase_s=max(first_s, last.timestamp()),
        total_spend=float(agg.total_spend),
        cost_to_serve=float(agg.cost_to_serve),
    )


@dataclass(frozen=True, slots=True)
class FactColumns:
    """CustomerFacts of many customers as numpy columns (one row per customer)."""

    purchase_days: FloatArray
    purchase_count: FloatArray
    first_purchase_s: FloatArray
    last_purchase_s: FloatArray
    total_spend: FloatArray
    cost_to_serve: FloatArray

    def __len__(self) -> int:
        return int(self.purchase_days.size)

    @classmethod
    def of(cls, facts: Sequence[CustomerFacts]) -> FactColumns:
        """Return the columns of a list of facts."""

        def column(name: str) -> FloatArray:
            return np.fromiter((getattr(f, name) for f in facts), np.float64, len(facts))

        return cls(*(column(name) for name in _FIELDS))

    def take(self, index: npt.NDArray[np.intp] | slice) -> FactColumns:
        """Return a copy of the rows at index."""
        return FactColumns(*(np.array(getattr(self, name)[index]) for name in _FIELDS))


_FIELDS = (
    "purchase_days",
    "purchase_count",
    "first_purchase_s",
    "last_purchase_s",
    "total_spend",
    "cost_to_serve",
)


@dataclass(frozen=True, slots=True)
class RfmInputs:
    """BG/NBD inputs (x, t_x, age = T) in model periods and Gamma-Gamma inputs, per customer.

    Gamma-Gamma reads every purchase day (`spend_days`, mean `mean_spend`), the first one
    included: the aggregates do not keep the first purchase's amount apart, and averaging it
    in while counting only repeats would understate the spread of spend and degenerate the fit.
    """

    x: FloatArray
    t_x: FloatArray
    age: FloatArray
    spend_days: FloatArray
    mean_spend: FloatArray


def model_inputs(facts: FactColumns, as_of_s: float, period_days: float) -> RfmInputs:
    """Return BG/NBD and Gamma-Gamma inputs as of a moment, time in periods of period_days.

    Repeat purchases are purchase days after the first (same-day sales count once). A first
    purchase after as_of (clock skew upstream) counts as made at as_of.
    """
    period_s = period_days * SECONDS_PER_DAY
    first = np.minimum(facts.first_purchase_s, as_of_s)
    last = np.clip(facts.last_purchase_s, first, as_of_s)
    days = np.maximum(facts.purchase_days, 1.0)
    return RfmInputs(
        x=days - 1.0,
        t_x=(last - first) / period_s,
        age=(as_of_s - first) / period_s,
        spend_days=days,
        mean_spend=facts.total_spend / days,
    )
