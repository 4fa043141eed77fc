"""Kafka translator: decoded batch records -> one use-case call."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clientela.campaign.application.decide_campaigns import CampaignDecider, CampaignInputs
from clientela.campaign.application.ports import ReceivedTrigger, UnitOfWork
from clientela.shared.consumer import Incoming
from clientela.shared.contracts import Envelope, ProfileChangedEvent, TierChangedEvent


class CampaignBatchHandler:
    """Handles one decoded batch of profile and tier changes, then wakes the outbox relay."""

    def __init__(
        self,
        decider: CampaignDecider,
        unit_of_work: Callable[[], UnitOfWork],
        on_staged: Callable[[], None],
    ) -> None:
        self._decider = decider
        self._uow = unit_of_work
        self._on_staged = on_staged

    async def __call__(self, batch: Sequence[Incoming[Envelope]]) -> None:
        """Split the batch by contract and hand it to the use case in one call."""
        inputs = CampaignInputs(
            profile_changes=[i.event for i in batch if isinstance(i.event, ProfileChangedEvent)],
            tier_changes=[
                ReceivedTrigger(i.event, i.accepted_at_ms)
                for i in batch
                if isinstance(i.event, TierChangedEvent)
            ],
        )
        outcome = await self._decider.handle_batch(inputs, self._uow())
        if outcome.messages:
            self._on_staged()
