"""Kafka translator: decoded profile changes -> one call of the scoring use case."""

from __future__ import annotations

import logging
from collections.abc import Callable

from clientela.scoring.application.ports import ProfileChangeMessage, ScoringUnitOfWork
from clientela.scoring.application.score_profiles import ScoreProfiles
from clientela.shared.consumer import Incoming
from clientela.shared.contracts import Envelope, ProfileChangedEvent

log = logging.getLogger(__name__)


class ProfileChangesTranslator:
    """The BatchProcessor handler for profiles.v1 (the unit of work wakes the relay)."""

    def __init__(
        self, use_case: ScoreProfiles, unit_of_work: Callable[[], ScoringUnitOfWork]
    ) -> None:
        self._use_case = use_case
        self._uow = unit_of_work

    async def __call__(self, batch: list[Incoming[Envelope]]) -> None:
        """Score one decoded batch."""
        messages = [
            ProfileChangeMessage(item.event, item.accepted_at_ms)
            for item in batch
            if isinstance(item.event, ProfileChangedEvent)
        ]
        if len(messages) != len(batch):
            log.warning("ignored %d event(s) of an unexpected type", len(batch) - len(messages))
        await self._use_case(messages, self._uow())
