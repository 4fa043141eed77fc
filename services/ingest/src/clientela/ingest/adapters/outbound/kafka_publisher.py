"""Publishes accepted touchpoints to the touchpoints topic, keyed by identity."""

from __future__ import annotations

from collections.abc import Sequence

from clientela.ingest.application.ports import PublishFailedError
from clientela.ingest.domain.identity import identity_key
from clientela.shared.codec import to_record
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.kafka import KafkaPublisher, PublishError


class KafkaTouchpointPublisher:
    """Writes TouchpointRecorded events to one topic and waits for the broker's acks."""

    def __init__(self, publisher: KafkaPublisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    async def publish(self, events: Sequence[TouchpointRecorded], accepted_at_ms: int) -> None:
        """Publish the events keyed by identity; raise PublishFailedError unless all are acked."""
        records = [
            to_record(self._topic, identity_key(e.data.identifiers), e, accepted_at_ms)
            for e in events
        ]
        try:
            await self._publisher.publish(records)
        except PublishError as exc:
            raise PublishFailedError(str(exc)) from exc
