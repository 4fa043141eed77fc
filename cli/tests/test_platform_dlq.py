"""`clientela dlq` on a real broker: every letter read (batched), truncated ones not replayed."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clientela.platform import dlq
from clientela.shared.codec import to_record
from clientela.shared.consumer import partition_ends
from clientela.shared.contracts import DeadLetter, DeadLetterEvent, topics
from clientela.shared.kafka import ensure_topics
from clientela.shared.settings import KafkaSettings


def _letter(offset: int, value: bytes, source: str) -> DeadLetterEvent:
    return DeadLetterEvent(
        source="clientela-profile",
        data=DeadLetter.of_record(
            reason_code="undecodable",
            reason="not JSON",
            errors=[],
            source_topic=source,
            source_partition=0,
            source_offset=offset,
            consumer="clientela-profile",
            key=b"k",
            value=value,
            headers=[],
        ),
    )


async def _write(settings: KafkaSettings, letters: list[DeadLetterEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=100)
    await producer.start()
    try:
        topic = settings.topic(topics.PROFILE_DLQ)
        # Sent together, so the broker stores them as one record batch.
        futures = []
        for letter in letters:
            record = to_record(topic, letter.data.source_topic, letter)
            futures.append(await producer.send(topic, record.value, key=record.key))
        for future in futures:
            await future
    finally:
        await producer.stop()


async def _count(settings: KafkaSettings, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await partition_ends(consumer, [tp]))[tp]
    finally:
        await consumer.stop()


async def test_dlq_reads_every_letter_and_replays_only_whole_originals(
    kafka_settings: KafkaSettings,
) -> None:
    settings = kafka_settings.model_copy(
        update={"topic_prefix": f"{kafka_settings.topic_prefix}dlq{uuid.uuid4().hex[:6]}."}
    )
    source = settings.topic(topics.TOUCHPOINTS_DLQ)  # any single-partition topic will do
    await ensure_topics(settings, topics.ALL_TOPICS)
    small = [_letter(n, b"bad %d" % n, source) for n in range(5)]
    large = _letter(99, b"z" * 400_000, source)
    await _write(settings, [*small, large])

    stored = [s async for s in dlq.read_letters(settings, ["profile"])]
    assert [s.letter.data.source_offset for s in stored] == [0, 1, 2, 3, 4, 99]
    assert [dlq.replayable(s) for s in stored] == [True] * 5 + [False]
    assert "original_value" not in dlq.describe_letter(stored[-1])

    replayed = await dlq.replay(settings, stored)
    assert replayed == 5
    assert await asyncio.wait_for(_count(settings, source), 30) == 5
