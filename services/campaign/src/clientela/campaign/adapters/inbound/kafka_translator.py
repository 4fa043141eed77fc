"""Kafka translator: topic readers for the shared front-end, and one use-case call per batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from clientela.campaign.adapters.inbound.wire import (
    CONTEXT_FREE,
    READERS,
    Context,
    Item,
    inputs_of,
)
from clientela.campaign.application.decide_campaigns import CampaignDecider
from clientela.campaign.application.ports import UnitOfWork
from clientela.shared.codec import HEADER_REFERS_TO_MESSAGE, header
from clientela.shared.consumer import BatchProcessor, RecordMeta, TopicReader
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.kafka import KafkaPublisher

TOUCHPOINT = TouchpointRecorded.EVENT_TYPE


def answers_no_message(headers: Sequence[tuple[str, bytes]]) -> bool:
    """Return whether a touchpoint's producer says it names no campaign message."""
    return header(headers, HEADER_REFERS_TO_MESSAGE) == b"0"


def topic_reader(kind: str) -> TopicReader[Item]:
    """Return how records of one event type become the use case's items."""
    read = READERS[kind]
    if kind in CONTEXT_FREE:

        def read_alone(value: bytes, meta: RecordMeta) -> Item | None:
            return read(value, None)

        reader = read_alone
    else:

        def read_in_chain(value: bytes, meta: RecordMeta) -> Item | None:
            # Keyed by position: messages carry their trigger's trace explicitly, not by
            # cause id.
            found = meta.trace(f"{meta.topic}:{meta.partition}:{meta.offset}")
            fields = found.fields if found is not None else ()
            return read(value, Context(meta.accepted_at_ms, fields))

        reader = read_in_chain
    if kind == TOUCHPOINT:
        # A touchpoint marked as naming no message is skipped before any decoding; one
        # without the mark (older records, other producers) is read to find out.
        return TopicReader(reader, skip=answers_no_message)
    # A tombstone (an erasure on a compacted topic) is handled through the erasures topic.
    return TopicReader(reader, tombstones=True)


def batch_processor(
    decider: CampaignDecider,
    unit_of_work: Callable[[], UnitOfWork],
    *,
    topics: Mapping[str, str],
    publisher: KafkaPublisher,
    dead_letter_topic: str,
    consumer_name: str,
) -> BatchProcessor[Item]:
    """Return the front-end for the consumed topics (topic name -> event type read there)."""

    async def handle(items: list[Item]) -> None:
        await decider.handle_batch(inputs_of(items), unit_of_work())

    return BatchProcessor(
        readers={topic: topic_reader(kind) for topic, kind in topics.items()},
        handler=handle,
        publisher=publisher,
        dead_letter_topic=dead_letter_topic,
        consumer_name=consumer_name,
    )
