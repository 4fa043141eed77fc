"""Kafka inbound adapter: a batch of touchpoints, read by the fast reader, is one use-case call."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import ProfileCache, ReceivedTouchpoint, UnitOfWork
from clientela.profile.domain.policy import ProfilePolicy
from clientela.shared.consumer import BatchProcessor, RecordMeta, TopicReader
from clientela.shared.contracts import topics
from clientela.shared.kafka import Consumers, KafkaPublisher, subscribe_batch
from clientela.shared.readers.touchpoint import TOUCHPOINTS
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[ReceivedTouchpoint]], Awaitable[None]]


def read_touchpoint(value: bytes, meta: RecordMeta) -> ReceivedTouchpoint:
    """Return a delivered touchpoint; a bad record raises DecodeError with the contract's reason."""
    view = TOUCHPOINTS.read(value)
    meta.trace(view.event_id)
    return ReceivedTouchpoint(view, meta.accepted_at_ms, value)


def touchpoint_handler(
    unit_of_work: Callable[[], UnitOfWork],
    policy: ProfilePolicy,
    source: str,
    cache: ProfileCache | None = None,
) -> BatchHandler:
    """Return the handler that applies a read batch of touchpoints."""

    async def handle(received: list[ReceivedTouchpoint]) -> None:
        outcome = await handle_touchpoints(
            received, unit_of_work(), policy, source=source, cache=cache
        )
        log.debug(
            "touchpoints applied=%d duplicates=%d created=%d changed=%d merges=%d "
            "conflicts=%d over_limit=%d attempts=%d",
            outcome.applied,
            outcome.duplicates,
            outcome.profiles_created,
            outcome.profiles_changed,
            outcome.merges,
            outcome.conflicts,
            outcome.over_limit,
            outcome.attempts,
        )

    return handle


def subscribe_touchpoints(
    broker: Consumers,
    kafka: KafkaSettings,
    *,
    group_id: str,
    publisher: KafkaPublisher,
    handler: BatchHandler,
    consumer_name: str,
) -> None:
    """Register the touchpoints batch consumer; unreadable records go to the DLQ."""
    topic = kafka.topic(topics.TOUCHPOINTS)
    processor = BatchProcessor(
        readers={topic: TopicReader(read_touchpoint)},
        handler=handler,
        publisher=publisher,
        dead_letter_topic=kafka.topic(topics.PROFILE_DLQ),
        consumer_name=consumer_name,
    )
    subscribe_batch(broker, kafka, [topic], group_id, processor)
