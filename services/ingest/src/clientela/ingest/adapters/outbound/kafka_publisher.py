"""Publishes accepted touchpoints and dead letters to their topics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clientela.ingest.application.ports import PublishFailedError
from clientela.ingest.domain.touchpoints import RecordedTouchpoint
from clientela.shared import tracing
from clientela.shared.codec import (
    HEADER_EVENT_ID,
    HEADER_REFERS_TO_MESSAGE,
    OutgoingRecord,
    contract_headers,
    to_record,
)
from clientela.shared.contracts import DeadLetterEvent, TouchpointRecorded
from clientela.shared.kafka import PublishError, Row

# Consumers that only want answers to campaign messages skip the others undecoded.
_NAMES_A_MESSAGE = {
    True: (HEADER_REFERS_TO_MESSAGE, b"1"),
    False: (HEADER_REFERS_TO_MESSAGE, b"0"),
}


class RecordPublisher(Protocol):
    """Produces records and returns once all are acknowledged (raises PublishError if not)."""

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Publish the records."""
        ...


class RowPublisher(Protocol):
    """Produces (topic, key, value, headers) rows and returns once all are acknowledged."""

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        """Publish the rows; raise PublishError unless all are acknowledged."""
        ...


class KafkaTouchpointPublisher:
    """Writes accepted touchpoints to one topic, keyed by identity, and awaits the acks."""

    def __init__(self, publisher: RowPublisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    async def publish(self, events: Sequence[RecordedTouchpoint], accepted_at_ms: int) -> None:
        """Publish the encoded events; raise PublishFailedError unless all are acknowledged."""
        trace = tracing.current()  # the request's trace, or a new one
        topic = self._topic
        # Every header but the event id is the same for the whole batch: built once, by the
        # shared builder (so order and values stay its own), and spliced around each id.
        template = contract_headers(TouchpointRecorded, "", accepted_at_ms, trace)
        at = next(i for i, (name, _) in enumerate(template) if name == HEADER_EVENT_ID)
        head, tail = template[:at], template[at + 1 :]
        tails = {flag: [*tail, header] for flag, header in _NAMES_A_MESSAGE.items()}
        rows = [
            (
                topic,
                e.key.encode(),
                e.value,
                [*head, (HEADER_EVENT_ID, e.event_id.encode()), *tails[e.refers_to_message]],
            )
            for e in events
        ]
        try:
            await self._publisher.publish_rows(rows)
        except PublishError as exc:
            raise PublishFailedError(str(exc)) from exc


class KafkaDeadLetterPublisher:
    """Writes dead letters to the dead-letter topic, keyed by their source topic."""

    def __init__(self, publisher: RecordPublisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    async def publish(self, dead_letters: Sequence[DeadLetterEvent]) -> None:
        """Publish the dead letters; raise PublishFailedError unless all are acknowledged."""
        records = [to_record(self._topic, d.data.source_topic, d) for d in dead_letters]
        try:
            await self._publisher.publish(records)
        except PublishError as exc:
            raise PublishFailedError(str(exc)) from exc
