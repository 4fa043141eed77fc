"""Kafka translator: decoded batch records -> one use-case call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from clientela.campaign.application.decide_campaigns import CampaignDecider, CampaignInputs
from clientela.campaign.application.ports import Received, UnitOfWork
from clientela.shared.consumer import Incoming
from clientela.shared.contracts import (
    Envelope,
    ProfileChangedEvent,
    ScoresUpdatedEvent,
    TierChangedEvent,
    TouchpointRecorded,
)

E = TypeVar("E", bound=Envelope)


class CampaignBatchHandler:
    """Handles one decoded batch of profile, score, tier and touchpoint events."""

    def __init__(self, decider: CampaignDecider, unit_of_work: Callable[[], UnitOfWork]) -> None:
        self._decider = decider
        self._uow = unit_of_work

    async def __call__(self, batch: Sequence[Incoming[Envelope]]) -> None:
        """Split the batch by contract and hand it to the use case in one call."""
        inputs = CampaignInputs(
            profile_changes=_of(batch, ProfileChangedEvent),
            tier_changes=_of(batch, TierChangedEvent),
            scores=_of(batch, ScoresUpdatedEvent),
            touchpoints=_of(batch, TouchpointRecorded),
        )
        await self._decider.handle_batch(inputs, self._uow())


def _of(batch: Sequence[Incoming[Envelope]], contract: type[E]) -> list[Received[E]]:
    return [
        Received(i.event, i.accepted_at_ms, i.trace.fields if i.trace is not None else ())
        for i in batch
        if isinstance(i.event, contract)
    ]
