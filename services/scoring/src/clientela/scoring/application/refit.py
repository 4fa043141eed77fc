"""Use case: fit BG/NBD and Gamma-Gamma on the population, store the parameters, use them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from clientela.scoring.application.model_registry import ModelRegistry
from clientela.scoring.application.population import Population
from clientela.scoring.application.ports import ScoringUnitOfWork
from clientela.scoring.domain import clv
from clientela.scoring.domain.facts import FactColumns, model_inputs
from clientela.scoring.domain.value_model import FittedParameters
from clientela.shared.contracts import utc_now

log = logging.getLogger(__name__)

PERIOD_DAYS = 7.0


class NotEnoughDataError(Exception):
    """The population is too small (or has too few repeat buyers) to fit the models."""


@dataclass(frozen=True, slots=True)
class FitPolicy:
    """How much data a fit needs and how much of a large population it reads."""

    min_customers: int = 200
    min_repeat_customers: int = 20
    sample_size: int = 200_000
    seed: int = 0


def fit_parameters(
    facts: FactColumns,
    as_of: datetime,
    version: int,
    policy: FitPolicy,
    fitted_at: datetime,
) -> FittedParameters:
    """Fit both models on (a uniform sample of) the customers as of a moment.

    The likelihoods are sums over customers, so a uniform sample of a few hundred thousand
    gives the population's parameters to well within their standard errors, at a bounded cost.
    """
    n = len(facts)
    if n > policy.sample_size:
        rows = np.random.default_rng(policy.seed).choice(n, policy.sample_size, replace=False)
        facts = facts.take(np.sort(rows))
    inputs = model_inputs(facts, as_of.timestamp(), PERIOD_DAYS)
    repeaters = int((inputs.x > 0).sum())
    if len(facts) < policy.min_customers or repeaters < policy.min_repeat_customers:
        raise NotEnoughDataError(
            f"{len(facts)} customer(s) and {repeaters} repeat buyer(s); a fit needs at least "
            f"{policy.min_customers} and {policy.min_repeat_customers}"
        )
    bg = clv.fit_bgnbd(inputs.x, inputs.t_x, inputs.age)
    gg = clv.fit_gamma_gamma(inputs.spend_days, inputs.mean_spend)
    return FittedParameters(
        version=version,
        bgnbd=bg.params,
        gamma_gamma=gg.params,
        period_days=PERIOD_DAYS,
        fitted_at=fitted_at,
        as_of=as_of,
        customer_count=bg.customer_count,
        repeat_customer_count=repeaters,
        bgnbd_log_likelihood=bg.log_likelihood,
        gamma_gamma_log_likelihood=gg.log_likelihood,
    )


class RefitModel:
    """Fits on the in-memory population (in a worker thread), stores and installs the result."""

    def __init__(
        self,
        models: ModelRegistry,
        population: Population,
        lock: asyncio.Lock,
        unit_of_work: Callable[[], ScoringUnitOfWork],
        policy: FitPolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._models = models
        self._population = population
        self._lock = lock
        self._uow = unit_of_work
        self._policy = policy
        self._clock = clock
        self._fitting = asyncio.Lock()

    async def __call__(self) -> FittedParameters:
        """Fit, store and install new parameters; raise NotEnoughDataError when too little data."""
        async with self._fitting:
            async with self._lock:
                facts = self._population.columns().facts
            now = self._clock()
            async with self._uow() as uow:
                latest = await uow.parameters.latest()
            version = (latest.version if latest is not None else 0) + 1
            # The optimiser is CPU-bound: keep the event loop (consumer, API) responsive.
            fitted = await asyncio.to_thread(fit_parameters, facts, now, version, self._policy, now)
            async with self._uow() as uow:
                await uow.parameters.add(fitted)
                await uow.commit()
            self._models.install(fitted)
        log.info(
            "fitted model v%d on %d customers (%d repeat buyers)",
            fitted.version,
            fitted.customer_count,
            fitted.repeat_customer_count,
        )
        return fitted
