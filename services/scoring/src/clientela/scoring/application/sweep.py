"""Use case: re-score the whole population at once, because value decays even without events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import numpy as np
import numpy.typing as npt

from clientela.scoring.application.model_registry import ModelRegistry
from clientela.scoring.application.population import Population, RankingCache, RankingContext
from clientela.scoring.application.ports import ScoringUnitOfWork
from clientela.scoring.application.publishing import Cause, Publication, publish
from clientela.scoring.application.scorer import (
    CustomerScores,
    ScoredProfile,
    ScoredProspect,
    ScoringPolicy,
    all_reasons,
    customer_payloads,
    kept_segment,
    prospect_payload,
    score_customers,
    within_contract,
)
from clientela.scoring.domain.facts import FactColumns
from clientela.scoring.domain.potential import ProspectFeatures
from clientela.scoring.domain.rfm import fit_rfm_edges
from clientela.scoring.domain.tiers import compute_cutoffs
from clientela.shared.contracts import derived_event_id, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """What a sweep did and how long its parts took."""

    sweep_id: str
    customers: int
    changed: int
    tier_changes: int
    compute_s: float
    write_s: float


class SweepPopulation:
    """Recomputes every customer's value and the exact cut-offs, and publishes what moved.

    Written and announced (a ScoresUpdated, plus a TierChanged for a tier move), in
    transactions of `chunk` profiles: customers whose tier or at-risk flag changed, and every
    profile whose cost to serve moved since its scores were published (streaming stores it
    without publishing), so a published cost is at most one sweep interval old. The rest of
    the population keeps its stored scores and gets its new value in memory.
    """

    def __init__(
        self,
        models: ModelRegistry,
        population: Population,
        ranking: RankingCache,
        policy: ScoringPolicy,
        lock: asyncio.Lock,
        unit_of_work: Callable[[], ScoringUnitOfWork],
        clock: Callable[[], datetime] = utc_now,
        chunk: int = 1000,
    ) -> None:
        self._models = models
        self._population = population
        self._ranking = ranking
        self._policy = policy
        self._lock = lock
        self._uow = unit_of_work
        self._clock = clock
        self._chunk = chunk

    async def __call__(self) -> SweepOutcome:
        """Run one sweep under the writer lock."""
        async with self._lock:
            return await self._sweep()

    async def _sweep(self) -> SweepOutcome:
        started = time.perf_counter()
        now = self._clock()
        sweep_id = derived_event_id("scoring.sweep", now.isoformat())
        population = self._population
        model = self._models.model
        columns = population.columns()
        values = within_contract(model.estimate(columns.facts, now)).predicted_value
        context = RankingContext(
            cutoffs=compute_cutoffs(values, population.policy),
            rfm_edges=fit_rfm_edges(columns.facts, now.timestamp(), population.rfm_groups),
            reference=population.reference(),
        )
        scored = score_customers(model, columns.facts, now, columns.tiers, context, self._policy)
        moved = (scored.tiers != columns.tiers) | (scored.at_risk != columns.at_risk)
        async with self._uow() as uow:
            stale = await uow.stale_ids()
        stale_rows = population.rows_of(stale)
        if stale_rows:
            moved[stale_rows] = True
        changed = np.flatnonzero(moved)
        population.set_values(scored.estimates.predicted_value)
        self._ranking.put(context)
        computed = time.perf_counter()
        cause = Cause(sweep_id, sweep_id)
        moves = 0
        for start in range(0, changed.size, self._chunk):
            rows = changed[start : start + self._chunk]
            moves += await self._write(
                rows, columns.ids, scored, columns.facts, context, now, cause, model.model_version
            )
        customers = set(columns.ids)
        prospects = [pid for pid in stale if pid not in customers]
        for start in range(0, len(prospects), self._chunk):
            await self._write_prospects(
                prospects[start : start + self._chunk], context, now, cause, model.model_version
            )
        written = time.perf_counter()
        outcome = SweepOutcome(
            sweep_id=sweep_id,
            customers=len(columns.ids),
            changed=int(changed.size) + len(prospects),
            tier_changes=moves,
            compute_s=computed - started,
            write_s=written - computed,
        )
        log.info(
            "swept %d customer(s): %d changed, %d tier move(s), %.2fs compute, %.2fs write",
            outcome.customers,
            outcome.changed,
            outcome.tier_changes,
            outcome.compute_s,
            outcome.write_s,
        )
        return outcome

    async def _write(
        self,
        rows: npt.NDArray[np.intp],
        ids: list[str],
        scored: CustomerScores,
        facts: FactColumns,
        context: RankingContext,
        now: datetime,
        cause: Cause,
        model_version: str,
    ) -> int:
        """Store and announce the changed customers at rows, in one transaction."""
        chunk_ids = [ids[int(r)] for r in rows]
        async with self._uow() as uow:
            stored = await uow.scores.get_many(chunk_ids, with_state=True)
            kept = [
                (int(row), before)
                for row, pid in zip(rows, chunk_ids, strict=True)
                if (before := stored.get(pid)) is not None and before.facts is not None
            ]
            profiles = []
            for _, before in kept:
                profiles.append(
                    ScoredProfile(
                        before.profile_id,
                        before.profile_version,
                        before.lifecycle,
                        kept_segment(before.state) if before.state else None,
                    )
                )
            payloads = customer_payloads(
                scored,
                np.array([row for row, _ in kept], dtype=np.intp),
                profiles,
                model_version=model_version,
                facts=facts,
                as_of=now,
                context=context,
                policy=self._policy,
            )
            publications: list[Publication] = [
                publish(
                    data,
                    before,
                    cause,
                    now,
                    facts=before.facts,
                    prospect_features=before.prospect_features,
                    tier_reasons=partial(all_reasons, data),
                    # Same facts and kept segment: the inputs the digest covers are unchanged.
                    inputs_digest=before.inputs_digest,
                )
                for data, (_, before) in zip(payloads, kept, strict=True)
            ]
            transitions = [p.transition for p in publications if p.transition is not None]
            await uow.write_scored(
                [p.record for p in publications],
                transitions,
                [e for p in publications for e in p.events],
            )
            await uow.commit()
        self._population.apply(p.record for p in publications)
        return len(transitions)

    async def _write_prospects(
        self,
        ids: list[str],
        context: RankingContext,
        now: datetime,
        cause: Cause,
        model_version: str,
    ) -> None:
        """Store and announce the scores of prospects whose cost to serve moved."""
        async with self._uow() as uow:
            stored = await uow.scores.get_many(ids)
            publications: list[Publication] = []
            for pid in ids:
                before = stored.get(pid)
                # Gone (erased), or a customer by now: the customers' pass covered it.
                if before is None or before.facts is not None:
                    continue
                features = before.prospect_features or ProspectFeatures({}, 0.0, 0.0)
                data = prospect_payload(
                    ScoredProspect(pid, before.profile_version, before.cost_to_serve),
                    features,
                    context.reference,
                    model_version,
                    now,
                )
                publications.append(
                    publish(
                        data,
                        before,
                        cause,
                        now,
                        facts=None,
                        prospect_features=before.prospect_features,
                        tier_reasons=partial(all_reasons, data),
                        inputs_digest=before.inputs_digest,
                    )
                )
            await uow.write_scored(
                [p.record for p in publications],
                [p.transition for p in publications if p.transition is not None],
                [e for p in publications for e in p.events],
            )
            await uow.commit()
        self._population.apply(p.record for p in publications)
