"""Kafka inbound: topic readers of profile changes and erasures, and one handler per batch."""

from __future__ import annotations

from collections.abc import Callable

from clientela.scoring.adapters.inbound.profile_wire import decode_profile_change
from clientela.scoring.application.erase_profiles import EraseProfiles
from clientela.scoring.application.ports import (
    ErasureMessage,
    ProfileChangeMessage,
    ScoringUnitOfWork,
)
from clientela.scoring.application.score_profiles import ScoreProfiles
from clientela.shared.codec import decode_event
from clientela.shared.consumer import BatchProcessor, RecordMeta, TopicReader
from clientela.shared.contracts import ProfileChangedEvent, ProfileErasedEvent
from clientela.shared.kafka import KafkaPublisher

Item = ProfileChangeMessage | ErasureMessage


def read_profile_change(value: bytes, meta: RecordMeta) -> ProfileChangeMessage:
    """Return a profile change, read leanly; a record the lean reading refuses meets its contract.

    The contract either accepts it (the lean reading was only stricter) or raises DecodeError
    with the reason its dead letter carries.
    """
    change = decode_profile_change(value)
    event = change if change is not None else decode_event(ProfileChangedEvent, value)
    meta.trace(event.event_id)
    return ProfileChangeMessage(event, meta.accepted_at_ms)


def read_erasure(value: bytes, meta: RecordMeta) -> ErasureMessage:
    """Return the erasure a ProfileErased record asks for."""
    event = decode_event(ProfileErasedEvent, value)
    meta.trace(event.event_id)
    return ErasureMessage(event.event_id, event.data.profile_id)


def batch_processor(
    score: ScoreProfiles,
    erase: EraseProfiles,
    unit_of_work: Callable[[], ScoringUnitOfWork],
    *,
    profiles_topic: str,
    erasures_topic: str,
    publisher: KafkaPublisher,
    dead_letter_topic: str,
    consumer_name: str,
) -> BatchProcessor[Item]:
    """Return the front-end of scoring's topics: erasures first, then profile changes."""

    async def handle(items: list[Item]) -> None:
        erasures = [i for i in items if isinstance(i, ErasureMessage)]
        changes = [i for i in items if isinstance(i, ProfileChangeMessage)]
        if erasures:
            await erase(erasures, unit_of_work())
        if changes:
            await score(changes, unit_of_work())

    return BatchProcessor(
        readers={
            # Tombstones on profiles.v1 are deletions: erasures arrive on their own topic.
            profiles_topic: TopicReader(read_profile_change, tombstones=True),
            erasures_topic: TopicReader(read_erasure),
        },
        handler=handle,
        publisher=publisher,
        dead_letter_topic=dead_letter_topic,
        consumer_name=consumer_name,
    )
