"""Large bad records are dead-lettered on a real broker, their bytes capped, and flow goes on."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from clientela.shared.codec import to_record
from clientela.shared.consumer import BatchProcessor, Incoming, RetryPolicy, partition_ends
from clientela.shared.contracts import Envelope, TouchpointRecorded, topics
from clientela.shared.contracts.dead_letter import MAX_ORIGINAL_VALUE_BYTES
from clientela.shared.kafka import KafkaPublisher, ensure_topics
from clientela.shared.settings import KafkaSettings


def _record(topic: str, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 0, 0, b"key", value, None, 3, len(value), ())


async def _letters(settings: KafkaSettings, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        end = (await partition_ends(consumer, [tp]))[tp]
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        out: list[dict[str, Any]] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                out.extend(json.loads(r.value)["data"] for r in records)
        return out
    finally:
        await consumer.stop()


async def test_large_bad_records_are_dead_lettered_within_the_message_limit(
    kafka_settings: KafkaSettings,
) -> None:
    # Topics of its own: other tests read the whole dead-letter topic of the session prefix.
    kafka_settings = kafka_settings.model_copy(
        update={"topic_prefix": f"{kafka_settings.topic_prefix}cap{uuid.uuid4().hex[:6]}."}
    )
    await ensure_topics(kafka_settings, topics.ALL_TOPICS)
    source = kafka_settings.topic(topics.TOUCHPOINTS)
    dlq = kafka_settings.topic(topics.PROFILE_DLQ)
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    handled: list[str] = []

    async def handler(batch: list[Incoming[Envelope]]) -> None:
        handled.extend(i.event.event_id for i in batch)

    processor = BatchProcessor(
        contracts={source: TouchpointRecorded},
        handler=handler,
        publisher=publisher,
        dead_letter_topic=dlq,
        consumer_name="cap-test",
        retry=RetryPolicy(attempts=2, first_delay_s=0.05),
    )
    invalid = b'{"padding": "' + b"x" * 800_000 + b'"}'  # base64 of it alone is over 1 MiB
    oversized = b"y" * 1_100_000  # over the consumer's record limit
    small = b"not json"
    good = to_record(
        source,
        "a1",
        TouchpointRecorded.model_validate(
            {
                "source": "test",
                "data": {
                    "kind": "web_visit",
                    "channel": "web",
                    "direction": "inbound",
                    "identifiers": {"anonymous_id": "a1"},
                    "web_visit": {},
                },
            }
        ),
    )
    try:
        await processor(
            [
                _record(source, 10, invalid),
                _record(source, 11, oversized),
                _record(source, 12, small),
                _record(source, 13, good.value or b""),
            ]
        )
    finally:
        await publisher.stop()

    assert len(handled) == 1  # the good record after the large ones was processed
    letters = {d["source_offset"]: d for d in await _letters(kafka_settings, dlq)}
    for offset, value, code in ((10, invalid, "unexpected_type"), (11, oversized, "oversized")):
        letter = letters[offset]
        assert letter["reason_code"] == code
        assert letter["original_value_truncated"] is True
        assert letter["original_value_bytes"] == len(value)
        assert letter["original_value_sha256"] == hashlib.sha256(value).hexdigest()
        assert base64.b64decode(letter["original_value_b64"]) == value[:MAX_ORIGINAL_VALUE_BYTES]
    assert letters[12]["original_value_truncated"] is False
    assert base64.b64decode(letters[12]["original_value_b64"]) == small
