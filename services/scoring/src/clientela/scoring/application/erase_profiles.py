"""Use case: forget erased people: scores, history, the in-memory population, scores.v1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from clientela.scoring.application.population import Population, RankingCache
from clientela.scoring.application.ports import ErasureMessage, ScoringUnitOfWork
from clientela.shared.contracts.topics import SCORES

log = logging.getLogger(__name__)


class EraseProfiles:
    """Deletes what scoring holds about erased profiles and tombstones their scores.

    In one transaction: the inbox claim, the deletion of every row keyed by the profile id, a
    keyed marker that stops a ProfileChanged still in flight from scoring the profile again,
    and a tombstone on the compacted scores.v1 (through the outbox). The population forgets
    the profiles once that committed. A repeated erasure is a no-op.
    """

    def __init__(self, population: Population, ranking: RankingCache, lock: asyncio.Lock) -> None:
        self._population = population
        self._ranking = ranking
        self._lock = lock

    async def __call__(self, messages: Sequence[ErasureMessage], uow: ScoringUnitOfWork) -> int:
        """Apply a batch of erasures; return how many profiles were erased."""
        async with self._lock, uow:
            fresh = await uow.claim_new([m.event_id for m in messages])
            ids = sorted({m.profile_id for m in messages if m.event_id in fresh})
            if ids:
                await uow.erase(ids)
                await uow.stage_tombstones(SCORES, ids)
            await uow.commit()
            if ids:
                self._population.remove(ids)
                # The cut-offs counted the erased customers' values: rank again at next use.
                self._ranking.invalidate()
        if ids:
            log.info("erased %d profile(s) from scoring", len(ids))
        return len(ids)
