"""Dead-letter topics: list, inspect and replay what the services set aside."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clientela.shared.consumer import partition_ends
from clientela.shared.contracts import DeadLetterEvent, topics
from clientela.shared.settings import KafkaSettings

DLQ_TOPICS = {
    "ingest": topics.TOUCHPOINTS_DLQ,
    "profile": topics.PROFILE_DLQ,
    "scoring": topics.SCORING_DLQ,
    "campaign": topics.CAMPAIGN_DLQ,
}


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter and where it sits."""

    topic: str
    partition: int
    offset: int
    letter: DeadLetterEvent

    def row(self) -> dict[str, Any]:
        """Return the summary fields shown by `dlq list`."""
        data = self.letter.data
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason_code": data.reason_code,
            "reason": data.reason[:120],
            "source": f"{data.source_topic}[{data.source_partition}]@{data.source_offset}",
            "consumer": data.consumer,
            "failed_at": self.letter.occurred_at.isoformat(),
        }


async def read_letters(settings: KafkaSettings, services: list[str]) -> AsyncIterator[StoredLetter]:
    """Yield every dead letter currently stored on the given services' topics."""
    names = [settings.topic(DLQ_TOPICS[s]) for s in services]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [
            TopicPartition(name, p)
            for name in names
            for p in (consumer.partitions_for_topic(name) or set())
        ]
        if not parts:
            await consumer.topics()  # refresh metadata once, then look again
            parts = [
                TopicPartition(name, p)
                for name in names
                for p in (consumer.partitions_for_topic(name) or set())
            ]
        if not parts:
            return
        ends = await partition_ends(consumer, parts)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    if record.value is not None:
                        yield StoredLetter(
                            record.topic,
                            record.partition,
                            record.offset,
                            DeadLetterEvent.model_validate_json(record.value),
                        )
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


def describe_letter(stored: StoredLetter) -> dict[str, Any]:
    """Return a dead letter with its original bytes decoded where they are text."""
    body = stored.letter.model_dump(mode="json")
    raw = stored.letter.data.original_value_b64
    if raw is not None and not stored.letter.data.original_value_truncated:
        value = base64.b64decode(raw)
        try:
            body["original_value"] = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            body["original_value"] = value.decode("utf-8", "replace")
    return {"topic": stored.topic, "partition": stored.partition, "offset": stored.offset, **body}


def replayable(stored: StoredLetter) -> bool:
    """Return whether a dead letter holds its whole original value (so it can be replayed)."""
    data = stored.letter.data
    return data.original_value_b64 is not None and not data.original_value_truncated


async def replay(settings: KafkaSettings, letters: list[StoredLetter]) -> int:
    """Republish the whole original records to their source topics; consumers drop repeats."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        futures = []
        for stored in letters:
            data = stored.letter.data
            if data.original_value_b64 is None or not replayable(stored):
                continue
            futures.append(
                await producer.send(
                    data.source_topic,
                    base64.b64decode(data.original_value_b64),
                    key=base64.b64decode(data.original_key_b64) if data.original_key_b64 else None,
                    headers=[(k, v.encode()) for k, v in data.original_headers.items()],
                )
            )
        for future in futures:
            await future
        return len(futures)
    finally:
        await producer.stop()
