"""Value models: what a profile is predicted to be worth, with the numbers behind it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from clientela.shared.contracts import Lifecycle, ProfileChanged, Reason

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class ValueEstimate:
    """A model's verdict on one profile: prospect or customer, predicted value, reasons."""

    lifecycle: Lifecycle
    predicted_value: float
    reasons: tuple[Reason, ...]

    @property
    def is_prospect(self) -> bool:
        """Return whether the profile has never bought (it then sits in tier P)."""
        return self.lifecycle is Lifecycle.PROSPECT


class ValueModel(Protocol):
    """A way to predict a profile's value; a new model is a new implementation of this port."""

    @property
    def model_version(self) -> str:
        """Return the name and version written on every score the model produces."""
        ...

    def estimate(self, profile: ProfileChanged, now: datetime) -> ValueEstimate:
        """Return the predicted value of the profile as of `now`, with its reasons."""
        ...


def scored_lifecycle(profile: ProfileChanged) -> Lifecycle:
    """Return the lifecycle scores report: a prospect exactly when no sale is recorded."""
    if profile.aggregates.purchase_count == 0:
        return Lifecycle.PROSPECT
    # A profile with sales is never a prospect, whatever an upstream label says.
    if profile.lifecycle is Lifecycle.PROSPECT:
        return Lifecycle.CUSTOMER
    return profile.lifecycle


@dataclass(frozen=True, slots=True)
class DecayedSpendModel:
    """Past spend, halved for every half-life that passed since the last purchase."""

    half_life_days: float = 365.0

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")

    @property
    def model_version(self) -> str:
        """Return the model's version name."""
        return "decayed-spend-v0"

    def estimate(self, profile: ProfileChanged, now: datetime) -> ValueEstimate:
        """Return total_spend * 0.5 ** (days since the last purchase / half-life)."""
        aggregates = profile.aggregates
        lifecycle = scored_lifecycle(profile)
        if lifecycle is Lifecycle.PROSPECT:
            return ValueEstimate(
                lifecycle=lifecycle,
                predicted_value=0.0,
                reasons=(
                    Reason(code="purchase_count", value=0, detail="no sale recorded yet"),
                    Reason(code="predicted_value", value=0.0, detail=aggregates.currency),
                ),
            )
        last = (
            aggregates.last_purchase_at or aggregates.last_seen_at or aggregates.first_purchase_at
        )
        # A purchase stamped in the future (clock skew upstream) counts as made just now.
        days = max(0.0, (now - last).total_seconds() / SECONDS_PER_DAY) if last else 0.0
        spend = float(aggregates.total_spend)
        predicted = spend * 0.5 ** (days / self.half_life_days)
        return ValueEstimate(
            lifecycle=lifecycle,
            predicted_value=predicted,
            reasons=(
                Reason(
                    code="predicted_value",
                    value=round(predicted, 2),
                    detail=aggregates.currency,
                ),
                Reason(code="total_spend", value=round(spend, 2), detail=aggregates.currency),
                Reason(
                    code="purchase_count",
                    value=aggregates.purchase_count,
                    detail="sales recorded",
                ),
                Reason(
                    code="days_since_last_purchase",
                    value=round(days, 1),
                    detail="" if last else "no purchase date known; counted as today",
                ),
                Reason(
                    code="half_life_days",
                    value=self.half_life_days,
                    detail="days after which past spend counts half",
                ),
            ),
        )
