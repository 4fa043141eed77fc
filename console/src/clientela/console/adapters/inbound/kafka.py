"""Kafka inbound adapter: a decoded batch of topic events goes to the projection."""

from __future__ import annotations

from clientela.console.application.projection import ReadModelWriter, project
from clientela.shared.consumer import Incoming
from clientela.shared.contracts import Envelope


class ReadModelTranslator:
    """Hands one decoded batch to the projection (BatchProcessor retries it on failure)."""

    def __init__(self, writer: ReadModelWriter) -> None:
        self._writer = writer

    async def __call__(self, batch: list[Incoming[Envelope]]) -> None:
        """Project the batch's events in offset order."""
        await project([incoming.event for incoming in batch], self._writer)
