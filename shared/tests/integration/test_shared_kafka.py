"""Batch subscribers on a real broker: failed batches come back; bad records dead-letter."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition

from clientela.shared.codec import OutgoingRecord, to_record
from clientela.shared.consumer import BatchProcessor, Incoming, RetryPolicy
from clientela.shared.contracts import Envelope, TouchpointRecorded, topics
from clientela.shared.embedded_broker import EmbeddedBroker, port_is_free
from clientela.shared.kafka import (
    KafkaPublisher,
    RecordBatch,
    ensure_topics,
    make_broker,
    subscribe_batch,
)
from clientela.shared.settings import KafkaSettings


def touchpoint(n: int) -> TouchpointRecorded:
    """Return a small valid touchpoint event."""
    return TouchpointRecorded.model_validate(
        {
            "source": "test",
            "data": {
                "kind": "web_visit",
                "channel": "web",
                "direction": "inbound",
                "identifiers": {"anonymous_id": f"a{n}"},
                "web_visit": {},
            },
        }
    )


async def test_failed_batches_are_redelivered_and_bad_records_dead_lettered(
    kafka_settings: KafkaSettings,
) -> None:
    await ensure_topics(kafka_settings, topics.ALL_TOPICS)
    topic = kafka_settings.topic(topics.TOUCHPOINTS)
    dlq = kafka_settings.topic(topics.PROFILE_DLQ)
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    seen: list[str] = []
    failures = {"left": 1}

    async def handler(batch: list[Incoming[Envelope]]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database down")
        seen.extend(i.event.event_id for i in batch)

    async def processor(records: RecordBatch) -> None:
        await BatchProcessor(
            contracts={topic: TouchpointRecorded},
            handler=handler,
            publisher=publisher,
            dead_letter_topic=dlq,
            consumer_name="test",
            retry=RetryPolicy(attempts=1),
        )(records)

    events = [touchpoint(n) for n in range(5)]
    await publisher.publish(
        [to_record(topic, f"k{n}", e) for n, e in enumerate(events)]
        + [OutgoingRecord(topic, b"k", b"{not json")]
    )
    broker = make_broker(kafka_settings)
    group = f"g-{uuid.uuid4().hex[:6]}"
    subscribe_batch(broker, kafka_settings, [topic], group, processor)
    await broker.start()
    try:
        async with asyncio.timeout(30):
            while len(set(seen)) < 5:
                await asyncio.sleep(0.1)
    finally:
        await broker.stop()
    assert set(seen) == {e.event_id for e in events}

    consumer = AIOKafkaConsumer(
        dlq, bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(10):
            batch: dict[TopicPartition, list[object]] = {}
            while not batch:
                batch = await consumer.getmany(timeout_ms=500)
        letters = [json.loads(r.value) for rs in batch.values() for r in rs]  # type: ignore[attr-defined]
    finally:
        await consumer.stop()
    assert {d["data"]["reason_code"] for d in letters} == {"undecodable"}
    assert letters[0]["data"]["source_topic"] == topic
    await publisher.stop()


def test_embedded_broker_starts_on_a_free_port_and_stops() -> None:
    with EmbeddedBroker(prefer_port=0) as broker:
        assert broker.running
        host, port = broker.bootstrap_servers.split(":")
        assert not port_is_free(host, int(port))
    assert not broker.running
    assert port_is_free(host, int(port))
