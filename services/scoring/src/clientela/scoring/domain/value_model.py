"""Value models: what customers are predicted to be worth, vectorised over a population."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

from clientela.scoring.domain import clv
from clientela.scoring.domain.facts import SECONDS_PER_DAY, FactColumns, FloatArray, model_inputs
from clientela.scoring.domain.profile_view import ProfileView
from clientela.shared.contracts import Lifecycle


@dataclass(frozen=True, slots=True)
class Estimates:
    """A model's verdict on many customers, one entry per row of the facts given."""

    predicted_value: FloatArray
    expected_purchases: FloatArray | None
    probability_alive: FloatArray | None
    expected_spend: FloatArray | None


class ValueModel(Protocol):
    """A way to predict customers' value; a new model is a new implementation of this port."""

    @property
    def model_version(self) -> str:
        """Return the name and version written on every score the model produces."""
        ...

    def estimate(self, facts: FactColumns, as_of: datetime) -> Estimates:
        """Return the predicted value of every customer as of a moment (vectorised)."""
        ...


def scored_lifecycle(profile: ProfileView) -> Lifecycle:
    """Return the lifecycle scores report: a prospect exactly when no sale is recorded."""
    if profile.aggregates.purchase_count == 0:
        return Lifecycle.PROSPECT
    # A profile with sales is never a prospect, whatever an upstream label says.
    if profile.lifecycle is Lifecycle.PROSPECT:
        return Lifecycle.CUSTOMER
    return profile.lifecycle


@dataclass(frozen=True, slots=True)
class DecayedSpendModel:
    """Past spend, halved for every half-life since the last purchase: the cold-start model.

    It needs no fitted parameters, so it scores a population too small (or too young) to fit
    BG/NBD and Gamma-Gamma on.
    """

    half_life_days: float = 365.0

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")

    @property
    def model_version(self) -> str:
        """Return the model's version name."""
        return "decayed-spend-v0"

    def estimate(self, facts: FactColumns, as_of: datetime) -> Estimates:
        """Return total_spend * 0.5 ** (days since the last purchase / half-life)."""
        days = np.maximum(0.0, (as_of.timestamp() - facts.last_purchase_s) / SECONDS_PER_DAY)
        value = facts.total_spend * np.exp2(-days / self.half_life_days)
        return Estimates(value, None, None, None)


@dataclass(frozen=True, slots=True)
class FittedParameters:
    """One fitted and stored parameter set: BG/NBD, Gamma-Gamma and how they were fitted."""

    version: int
    bgnbd: clv.BgNbdParams
    gamma_gamma: clv.GammaGammaParams
    period_days: float
    fitted_at: datetime
    as_of: datetime
    customer_count: int
    repeat_customer_count: int
    bgnbd_log_likelihood: float
    gamma_gamma_log_likelihood: float


@dataclass(frozen=True, slots=True)
class BgNbdGammaGammaModel:
    """Expected purchases over a horizon (BG/NBD) times expected spend (Gamma-Gamma)."""

    parameters: FittedParameters
    horizon_periods: float = 52.0

    @property
    def model_version(self) -> str:
        """Return bgnbd-gg-v<parameter version>."""
        return f"bgnbd-gg-v{self.parameters.version}"

    def estimate(self, facts: FactColumns, as_of: datetime) -> Estimates:
        """Return expected purchases, P(alive), expected spend and their product, the CLV."""
        inputs = model_inputs(facts, as_of.timestamp(), self.parameters.period_days)
        bg = self.parameters.bgnbd
        purchases = clv.expected_purchases(
            bg, self.horizon_periods, inputs.x, inputs.t_x, inputs.age
        )
        alive = clv.probability_alive(bg, inputs.x, inputs.t_x, inputs.age)
        spend = clv.expected_spend(
            self.parameters.gamma_gamma, inputs.spend_days, inputs.mean_spend
        )
        return Estimates(np.maximum(purchases * spend, 0.0), purchases, alive, spend)
