"""Kafka inbound adapter: a decoded touchpoint batch becomes one use-case call."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, final

from faststream.kafka import KafkaBroker
from pydantic import ConfigDict, SkipValidation
from pydantic.config import ExtraValues

from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import ProfileCache, ReceivedTouchpoint, UnitOfWork
from clientela.profile.domain.policy import ProfilePolicy
from clientela.shared.consumer import BatchProcessor, Incoming
from clientela.shared.contracts import Envelope, TouchpointRecorded, topics
from clientela.shared.kafka import KafkaPublisher, subscribe_batch
from clientela.shared.readers.touchpoint import TOUCHPOINTS, TouchpointRecordedView
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Incoming[Envelope]]], Awaitable[None]]


@final
class ReadTouchpoint(Envelope):
    """A touchpoint record read by the fast reader, carried through the shared BatchProcessor.

    BatchProcessor decodes with its contracts' `model_validate_json`; until it takes readers,
    this one reads with `TOUCHPOINTS` instead of validating a model, and carries the view. A
    DecodeError raised here dead-letters the record with the contract's own reason.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    EVENT_TYPE: ClassVar[str] = TouchpointRecorded.EVENT_TYPE
    view: SkipValidation[TouchpointRecordedView]

    @classmethod
    def model_validate_json(
        cls,
        json_data: str | bytes | bytearray,
        *,
        strict: bool | None = None,
        extra: ExtraValues | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> ReadTouchpoint:
        """Return the record read by the touchpoint reader (raises DecodeError)."""
        value = json_data.encode() if isinstance(json_data, str) else bytes(json_data)
        view = TOUCHPOINTS.read(value)
        return cls.model_construct(
            event_id=view.event_id,
            type=view.type,
            source=view.source,
            occurred_at=view.occurred_at,
            correlation_id=view.correlation_id,
            causation_id=view.causation_id,
            view=view,
        )


def touchpoint_handler(
    unit_of_work: Callable[[], UnitOfWork],
    policy: ProfilePolicy,
    source: str,
    cache: ProfileCache | None = None,
) -> BatchHandler:
    """Return the handler that applies a decoded batch of touchpoints."""

    async def handle(batch: list[Incoming[Envelope]]) -> None:
        received = [
            ReceivedTouchpoint(item.event.view, item.accepted_at_ms, item.raw)
            for item in batch
            if isinstance(item.event, ReadTouchpoint)
        ]
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
    broker: KafkaBroker,
    kafka: KafkaSettings,
    *,
    group_id: str,
    publisher: KafkaPublisher,
    handler: BatchHandler,
    consumer_name: str,
) -> None:
    """Register the touchpoints batch subscriber; undecodable records go to the DLQ."""
    topic = kafka.topic(topics.TOUCHPOINTS)
    processor = BatchProcessor(
        contracts={topic: ReadTouchpoint},
        handler=handler,
        publisher=publisher,
        dead_letter_topic=kafka.topic(topics.PROFILE_DLQ),
        consumer_name=consumer_name,
    )
    subscribe_batch(broker, kafka, [topic], group_id, processor)
