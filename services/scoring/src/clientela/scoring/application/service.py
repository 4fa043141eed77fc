"""The scoring application assembled from its parts, independent of any adapter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from clientela.scoring.application.erase_profiles import EraseProfiles
from clientela.scoring.application.model_registry import ModelRegistry
from clientela.scoring.application.population import Population, RankingCache
from clientela.scoring.application.ports import ScoringUnitOfWork
from clientela.scoring.application.refit import FitPolicy, NotEnoughDataError, RefitModel
from clientela.scoring.application.score_profiles import ScoreProfiles
from clientela.scoring.application.scorer import ScoringPolicy
from clientela.scoring.application.sweep import SweepPopulation
from clientela.scoring.domain.tiers import TieringPolicy
from clientela.scoring.domain.value_model import DecayedSpendModel
from clientela.shared.contracts import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Everything the use cases are configured with."""

    tiering: TieringPolicy = field(default_factory=TieringPolicy)
    scoring: ScoringPolicy = field(default_factory=ScoringPolicy)
    fit: FitPolicy = field(default_factory=FitPolicy)
    half_life_days: float = 365.0
    rfm_groups: int = 5
    cutoff_refresh_s: float = 5.0
    sweep_chunk: int = 1000


class ScoringApplication:
    """Population, model, and the streaming, erasure, sweep and refit use cases sharing one lock."""

    def __init__(
        self,
        config: ScoringConfig,
        unit_of_work: Callable[[], ScoringUnitOfWork],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.lock = asyncio.Lock()
        self.population = Population(config.tiering, config.rfm_groups)
        self.ranking = RankingCache(self.population, config.cutoff_refresh_s)
        self.models = ModelRegistry(
            DecayedSpendModel(config.half_life_days), config.scoring.horizon_weeks
        )
        self.unit_of_work = unit_of_work
        self.score_profiles = ScoreProfiles(
            self.models, self.population, self.ranking, config.scoring, self.lock, clock
        )
        self.erase_profiles = EraseProfiles(self.population, self.ranking, self.lock)
        self.sweep = SweepPopulation(
            self.models,
            self.population,
            self.ranking,
            config.scoring,
            self.lock,
            unit_of_work,
            clock,
            config.sweep_chunk,
        )
        self.refit = RefitModel(
            self.models, self.population, self.lock, unit_of_work, config.fit, clock
        )

    async def load(self) -> None:
        """Rebuild the population and install the newest parameters from storage."""
        async with self.lock, self.unit_of_work() as uow:
            records = await uow.scores.all_records()
            parameters = await uow.parameters.latest()
        self.population.apply(records)
        self.models.install(parameters)
        self.ranking.invalidate()
        log.info(
            "loaded %d customer(s), %d prospect(s); model %s",
            len(self.population),
            len(self.population.prospects),
            self.models.model.model_version,
        )

    async def run_schedule(self, sweep_interval_s: float, refit_interval_s: float) -> None:
        """Sweep every sweep_interval_s, refitting first when refit_interval_s has passed."""
        if sweep_interval_s <= 0:
            return
        loop = asyncio.get_running_loop()
        last_fit = loop.time() if self.models.parameters is not None else None
        while True:
            await asyncio.sleep(sweep_interval_s)
            try:
                due = last_fit is None or loop.time() - last_fit >= refit_interval_s
                if refit_interval_s > 0 and due:
                    try:
                        await self.refit()
                        last_fit = loop.time()
                    except NotEnoughDataError as exc:
                        log.info("no refit yet: %s", exc)
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduled sweep failed; retrying at the next interval")
