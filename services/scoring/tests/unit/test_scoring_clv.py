"""BG/NBD and Gamma-Gamma against the published CDNOW figures and against `lifetimes`."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import numpy as np
import pytest

from clientela.scoring.domain import clv
from clientela.scoring.evaluate import (
    CDNOW_CUTOFF,
    CDNOW_END,
    cdnow_sample_path,
    evaluate,
    profiles_of,
    read_cdnow,
)

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    """Return x, t_x, T (weeks) and the repeat-purchase mean of the calibration period."""
    transactions = read_cdnow(cdnow_sample_path())
    days: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for t in transactions:
        if t.day <= CDNOW_CUTOFF:
            days[t.customer_id][t.day] += t.amount
    x, t_x, age, repeat_mean = [], [], [], []
    for spend in days.values():
        ordered = sorted(spend)
        first = ordered[0]
        x.append(len(ordered) - 1)
        t_x.append((ordered[-1] - first).days / 7)
        age.append((CDNOW_CUTOFF - first).days / 7)
        repeats = [float(spend[d]) for d in ordered[1:]]
        repeat_mean.append(sum(repeats) / len(repeats) if repeats else 0.0)
    return {
        k: np.array(v, dtype=np.float64)
        for k, v in {"x": x, "t_x": t_x, "age": age, "m": repeat_mean}.items()
    }


@pytest.fixture(scope="module")
def bgnbd_fit(cdnow: dict[str, np.ndarray]) -> clv.Fit[clv.BgNbdParams]:
    return clv.fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["age"])


def test_cdnow_calibration_has_the_published_size(cdnow: dict[str, np.ndarray]) -> None:
    assert cdnow["x"].size == 2357
    assert int((cdnow["x"] > 0).sum()) == 946


def test_bgnbd_reproduces_the_published_parameters(bgnbd_fit: clv.Fit[clv.BgNbdParams]) -> None:
    fitted = bgnbd_fit.params
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(fitted, name) == pytest.approx(published, rel=0.01), name
    assert bgnbd_fit.log_likelihood == pytest.approx(PUBLISHED_LL, abs=0.1)
    assert bgnbd_fit.converged


def test_gamma_gamma_reproduces_the_published_parameters(cdnow: dict[str, np.ndarray]) -> None:
    fit = clv.fit_gamma_gamma(cdnow["x"], cdnow["m"])
    for name, published in PUBLISHED_GG.items():
        assert getattr(fit.params, name) == pytest.approx(published, rel=0.01), name
    assert fit.customer_count == 946


def test_predictions_match_lifetimes_on_the_same_parameters(
    cdnow: dict[str, np.ndarray], bgnbd_fit: clv.Fit[clv.BgNbdParams]
) -> None:
    lifetimes = pytest.importorskip("lifetimes")
    x, t_x, age, m = cdnow["x"], cdnow["t_x"], cdnow["age"], cdnow["m"]
    oracle = lifetimes.BetaGeoFitter()
    oracle.fit(x, t_x, age)
    params = clv.BgNbdParams(*(float(oracle.params_[k]) for k in ("r", "alpha", "a", "b")))
    for name in ("r", "alpha", "a", "b"):
        assert getattr(bgnbd_fit.params, name) == pytest.approx(getattr(params, name), rel=1e-3)
    theirs = oracle.conditional_expected_number_of_purchases_up_to_time(39, x, t_x, age)
    np.testing.assert_allclose(clv.expected_purchases(params, 39, x, t_x, age), theirs, rtol=1e-9)
    np.testing.assert_allclose(
        clv.probability_alive(params, x, t_x, age),
        oracle.conditional_probability_alive(x, t_x, age),
        rtol=1e-9,
    )

    repeaters = x > 0
    gg = lifetimes.GammaGammaFitter()
    gg.fit(x[repeaters], m[repeaters])
    gg_params = clv.GammaGammaParams(*(float(gg.params_[k]) for k in ("p", "q", "v")))
    np.testing.assert_allclose(
        clv.expected_spend(gg_params, x[repeaters], m[repeaters]),
        gg.conditional_expected_average_profit(x[repeaters], m[repeaters]),
        rtol=1e-9,
    )


def test_thousands_of_purchases_stay_finite_and_sensible(
    bgnbd_fit: clv.Fit[clv.BgNbdParams],
) -> None:
    params = bgnbd_fit.params
    x = np.array([5000.0, 5000.0, 3000.0])
    t_x = np.array([100.0, 10.0, 50.0])
    age = np.array([100.1, 104.0, 50.0])
    expected = clv.expected_purchases(params, 52, x, t_x, age)
    alive = clv.probability_alive(params, x, t_x, age)
    ll = clv.bgnbd_log_likelihood(params, x, t_x, age)
    assert np.isfinite(expected).all()
    assert np.isfinite(alive).all()
    assert np.isfinite(ll).all()
    # Buying 50 times a week until a moment ago: up to 52 * 50 purchases next year, less the
    # chance of dropping out after any one of them.
    assert 0.6 * 52 * 50 < expected[0] < 52 * 50
    # The same rate, but silent for 94 weeks: gone.
    assert alive[1] < 1e-12
    assert expected[1] < 1e-6


def test_unconditional_curve_grows_with_time(bgnbd_fit: clv.Fit[clv.BgNbdParams]) -> None:
    curve = clv.unconditional_expected_purchases(bgnbd_fit.params, np.array([1.0, 10.0, 52.0]))
    assert np.all(np.diff(curve) > 0)


def test_holdout_evaluation_through_the_service_path() -> None:
    result = evaluate(read_cdnow(cdnow_sample_path()), CDNOW_CUTOFF, CDNOW_END)
    assert result.parameters.bgnbd.r == pytest.approx(PUBLISHED_BGNBD["r"], rel=0.01)
    assert result.customers == 2357
    assert result.predicted_repeat == pytest.approx(result.actual_repeat, rel=0.15)
    assert result.correlation > 0.5
    assert result.top20_share_by_prediction > 0.6


def test_profiles_count_same_day_purchases_once() -> None:
    from clientela.scoring.evaluate import Transaction

    day = date(2024, 1, 1)
    (profile,) = profiles_of([Transaction("c", day, Decimal(5)), Transaction("c", day, Decimal(7))])
    assert (profile.aggregates.purchase_count, profile.aggregates.purchase_days) == (2, 1)
    assert profile.aggregates.total_spend == Decimal(12)
