"""BG/NBD (repeat purchases, probability alive) and Gamma-Gamma (spend), fitted by likelihood.

Everything is vectorised over customers and computed in log space (gammaln, betaln,
logsumexp), so a customer with thousands of purchases neither overflows nor loses precision.
Time is in model periods (weeks in this service); x counts repeat purchases (purchase days
after the first), t_x is the time of the last purchase and `age` (T in the papers) the time
since the first purchase, both
measured from the first purchase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1, logsumexp

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

# Parameters are fitted as logs: the optimiser then stays inside the positive orthant, and a
# small L2 pull towards log 1 (as the reference implementation does) keeps flat directions
# of tiny populations from running off; on real populations its effect is far below 1e-4.
_PENALTY = 1e-6

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """BG/NBD: purchase rates ~ Gamma(r, alpha); dropout after each purchase ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        """Return (r, alpha, a, b)."""
        return (self.r, self.alpha, self.a, self.b)


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Gamma-Gamma: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma) across customers."""

    p: float
    q: float
    gamma: float

    def as_tuple(self) -> tuple[float, float, float]:
        """Return (p, q, gamma)."""
        return (self.p, self.q, self.gamma)


@dataclass(frozen=True, slots=True)
class Fit(Generic[P]):
    """A fitted model: parameters, total log-likelihood, customers used, optimiser verdict."""

    params: P
    log_likelihood: float
    customer_count: int
    converged: bool


def _arrays(*columns: ArrayLike) -> list[FloatArray]:
    return [np.asarray(c, dtype=np.float64) for c in columns]


def bgnbd_log_likelihood(
    params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Return each customer's BG/NBD log-likelihood (Fader, Hardie and Lee 2005, eq. 6)."""
    r, alpha, a, b = params.as_tuple()
    xs, tx, ages = _arrays(x, t_x, age)
    head = gammaln(r + xs) - gammaln(r) + r * np.log(alpha) + betaln(a, b + xs) - betaln(a, b)
    alive = -(r + xs) * np.log(alpha + ages)
    repeat = xs > 0
    # For x = 0 the dropout term does not exist; -inf makes logsumexp ignore it.
    b_x = np.where(repeat, b + xs - 1, 1.0)
    dropped = np.where(repeat, np.log(a) - np.log(b_x) - (r + xs) * np.log(alpha + tx), -np.inf)
    return np.asarray(head + logsumexp(np.stack([alive, dropped]), axis=0), dtype=np.float64)


def fit_bgnbd(
    x: ArrayLike,
    t_x: ArrayLike,
    age: ArrayLike,
    initial: BgNbdParams | None = None,
) -> Fit[BgNbdParams]:
    """Fit BG/NBD by maximum likelihood over the population (identical rows are pooled)."""
    xs, tx, ages = _arrays(x, t_x, age)
    (ux, utx, uage), weights = _pooled(xs, tx, ages)
    start = np.log(np.asarray(initial.as_tuple() if initial else (1.0, 1.0, 1.0, 1.0)))

    def negative(log_params: FloatArray) -> float:
        params = BgNbdParams(*np.exp(log_params))
        ll = float(np.dot(weights, bgnbd_log_likelihood(params, ux, utx, uage)))
        return -ll / float(weights.sum()) + _PENALTY * float(np.dot(log_params, log_params))

    solution, converged = _minimise(negative, start)
    fitted = BgNbdParams(*(float(v) for v in np.exp(solution)))
    total = float(np.dot(weights, bgnbd_log_likelihood(fitted, ux, utx, uage)))
    return Fit(fitted, total, int(xs.size), converged)


def _minimise(
    objective: Callable[[FloatArray], float], start: FloatArray
) -> tuple[FloatArray, bool]:
    """Bounded quasi-Newton on the log-parameters, then a short Nelder-Mead polish.

    The objective is a mean per customer, so the tolerances mean the same for 100 customers
    as for a million; the bounds (e^-12 .. e^12) stop flat directions (dropout parameters of
    a population where nobody seems to leave) from wandering off for thousands of steps.
    """
    bounds = [(-12.0, 12.0)] * int(start.size)
    first = minimize(objective, start, method="L-BFGS-B", bounds=bounds)
    polished = minimize(
        objective,
        np.asarray(first.x, dtype=np.float64),
        method="Nelder-Mead",
        bounds=bounds,
        options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 2_000},
    )
    best = polished if polished.fun <= first.fun else first
    return np.asarray(best.x, dtype=np.float64), bool(first.success or polished.success)


def _pooled(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Return the distinct rows and how often each occurs: the likelihood only needs those."""
    stacked = np.stack(columns, axis=1)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(np.float64)


def probability_alive(
    params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Return P(still a customer at T | x, t_x, T); 1 for a customer with no repeat purchase."""
    r, alpha, a, b = params.as_tuple()
    xs, tx, ages = _arrays(x, t_x, age)
    repeat = xs > 0
    b_x = np.where(repeat, b + xs - 1, 1.0)
    log_odds_dead = np.log(a) - np.log(b_x) + (r + xs) * (np.log(alpha + ages) - np.log(alpha + tx))
    return np.asarray(np.where(repeat, expit(-log_odds_dead), 1.0), dtype=np.float64)


def expected_purchases(
    params: BgNbdParams, t: float | ArrayLike, x: ArrayLike, t_x: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Return the expected purchases in the next t periods given (x, t_x, T) (eq. 10).

    The Gauss hypergeometric term is evaluated after Euler's transformation,
    ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1;
    a+b+x-1; z), whose parameters no longer grow with x: the series converges faster the more
    purchases a customer has, instead of multiplying a vanishing power by an exploding sum.
    """
    r, alpha, a, b = params.as_tuple()
    xs, tx, ages = np.broadcast_arrays(*_arrays(x, t_x, age))
    horizon = np.asarray(t, dtype=np.float64)
    z = np.broadcast_to(horizon / (alpha + ages + horizon), xs.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        tail = np.exp((a - 1) * np.log1p(-z)) * hyp2f1(a + b - 1 - r, a - 1, a + b + xs - 1, z)
        # With a and b both large (dropout nearly the same for everyone) the transformed
        # series overflows instead; the original form is well behaved exactly there.
        bad = ~np.isfinite(tail)
        if bad.any():
            zb, xb = z[bad], xs[bad]
            tail[bad] = np.exp((r + xb) * np.log1p(-zb)) * hyp2f1(
                r + xb, b + xb, a + b + xb - 1, zb
            )
    numerator = (a + b + xs - 1) / (a - 1) * (1 - tail)
    return np.asarray(numerator * probability_alive(params, xs, tx, ages), dtype=np.float64)


def unconditional_expected_purchases(params: BgNbdParams, t: ArrayLike) -> FloatArray:
    """Return E[X(t)] for a customer just acquired (eq. 9): the model's population curve."""
    r, alpha, a, b = params.as_tuple()
    horizon = np.asarray(t, dtype=np.float64)
    z = horizon / (alpha + horizon)
    tail = np.exp(r * np.log1p(-z)) * hyp2f1(r, b, a + b - 1, z)
    return np.asarray((a + b - 1) / (a - 1) * (1 - tail), dtype=np.float64)


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, x: ArrayLike, mean_spend: ArrayLike
) -> FloatArray:
    """Return each customer's Gamma-Gamma log-likelihood of their mean spend over x purchases."""
    p, q, gamma = params.as_tuple()
    xs, m = _arrays(x, mean_spend)
    px = p * xs
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(xs)
        - (px + q) * np.log(gamma + xs * m),
        dtype=np.float64,
    )


def fit_gamma_gamma(
    x: ArrayLike, mean_spend: ArrayLike, initial: GammaGammaParams | None = None
) -> Fit[GammaGammaParams]:
    """Fit Gamma-Gamma on customers with at least one repeat purchase and a positive mean."""
    xs, m = _arrays(x, mean_spend)
    keep = (xs > 0) & (m > 0)
    (ux, um), weights = _pooled(xs[keep], m[keep])
    start = np.log(np.asarray(initial.as_tuple() if initial else (1.0, 1.0, 1.0)))

    def negative(log_params: FloatArray) -> float:
        params = GammaGammaParams(*np.exp(log_params))
        ll = float(np.dot(weights, gamma_gamma_log_likelihood(params, ux, um)))
        return -ll / float(weights.sum()) + _PENALTY * float(np.dot(log_params, log_params))

    solution, converged = _minimise(negative, start)
    fitted = GammaGammaParams(*(float(v) for v in np.exp(solution)))
    total = float(np.dot(weights, gamma_gamma_log_likelihood(fitted, ux, um)))
    return Fit(fitted, total, int(keep.sum()), converged)


def expected_spend(
    params: GammaGammaParams,
    x: ArrayLike,
    mean_spend: ArrayLike,
) -> FloatArray:
    """Return the expected spend per future purchase: a weighted mean of own and population."""
    p, q, gamma = params.as_tuple()
    xs, m = _arrays(x, mean_spend)
    # Without a repeat purchase there is no own spend to weigh: x = 0 gives the population
    # mean p * gamma / (q - 1).
    observed = np.where(xs > 0, np.nan_to_num(m), 0.0)
    return np.asarray((p * (gamma + xs * observed)) / (p * xs + q - 1), dtype=np.float64)
