"""The decayed-spend value model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from clientela.scoring.domain.value_model import DecayedSpendModel, ValueEstimate, ValueModel
from clientela.shared.contracts import Lifecycle, ProfileChangedEvent

MakeProfile = Callable[..., ProfileChangedEvent]


def reasons(estimate: ValueEstimate) -> dict[str, float | str | None]:
    return {r.code: r.value for r in estimate.reasons}


def test_prospect_is_worth_nothing(profile_changed: MakeProfile, now: datetime) -> None:
    estimate = DecayedSpendModel().estimate(profile_changed(spend="0").data, now)
    assert estimate.is_prospect
    assert estimate.lifecycle is Lifecycle.PROSPECT
    assert estimate.predicted_value == 0
    assert reasons(estimate)["purchase_count"] == 0


def test_recent_spend_counts_in_full(profile_changed: MakeProfile, now: datetime) -> None:
    estimate = DecayedSpendModel().estimate(profile_changed(spend="120.50").data, now)
    assert not estimate.is_prospect
    assert estimate.predicted_value == pytest.approx(120.50)
    assert reasons(estimate) == {
        "predicted_value": 120.5,
        "total_spend": 120.5,
        "purchase_count": 1,
        "days_since_last_purchase": 0.0,
        "half_life_days": 365.0,
    }


@pytest.mark.parametrize(
    ("days_ago", "factor"), [(365, 0.5), (730, 0.25), (182.5, 0.5**0.5), (0, 1.0)]
)
def test_spend_halves_every_half_life(
    profile_changed: MakeProfile, now: datetime, days_ago: float, factor: float
) -> None:
    estimate = DecayedSpendModel().estimate(
        profile_changed(spend="1000", days_ago=days_ago).data, now
    )
    assert estimate.predicted_value == pytest.approx(1000 * factor)
    assert reasons(estimate)["days_since_last_purchase"] == pytest.approx(days_ago, abs=0.05)


def test_half_life_is_configurable(profile_changed: MakeProfile, now: datetime) -> None:
    estimate = DecayedSpendModel(half_life_days=30).estimate(
        profile_changed(spend="100", days_ago=30).data, now
    )
    assert estimate.predicted_value == pytest.approx(50)


def test_purchase_in_the_future_counts_as_today(
    profile_changed: MakeProfile, now: datetime
) -> None:
    estimate = DecayedSpendModel().estimate(profile_changed(spend="100", days_ago=-3).data, now)
    assert estimate.predicted_value == pytest.approx(100)


def test_a_buyer_labelled_prospect_is_scored_as_customer(
    profile_changed: MakeProfile, now: datetime
) -> None:
    event = profile_changed(spend="10")
    data = event.data.model_copy(update={"lifecycle": Lifecycle.PROSPECT})
    assert DecayedSpendModel().estimate(data, now).lifecycle is Lifecycle.CUSTOMER


def test_model_is_a_value_model_with_a_version() -> None:
    model: ValueModel = DecayedSpendModel()
    assert model.model_version == "decayed-spend-v0"
    with pytest.raises(ValueError, match="half_life_days"):
        DecayedSpendModel(half_life_days=0)
