"""The raw-topic consumer against a real broker: republish the good, dead-letter the bad."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cloudevents.v1 import kafka as ce_kafka
from cloudevents.v1.http import CloudEvent

from clientela.ingest.config import IngestSettings
from clientela.ingest.domain.cloudevents import cloudevent_id
from clientela.ingest.wiring import create_app
from clientela.shared.contracts import DeadLetterEvent, TouchpointRecorded, topics
from clientela.shared.settings import KafkaSettings

from .conftest import read_topic, with_event_id


def visit(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "web_visit",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"anonymous_id": f"a-{uuid.uuid4()}"},
        "web_visit": {"url": "https://example.com/"},
        **extra,
    }


async def until(check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_raw_records_are_republished_or_dead_lettered(kafka_settings: KafkaSettings) -> None:
    group = f"ingest-raw-{uuid.uuid4().hex[:8]}"
    settings = IngestSettings(kafka=kafka_settings, group_id=group)
    raw_topic = kafka_settings.topic(topics.RAW_TOUCHPOINTS)
    native_id = f"raw-{uuid.uuid4()}"
    ce = CloudEvent(
        {
            "type": "com.example.visit",
            "source": "/shop",
            "id": str(uuid.uuid4()),
            "datacontenttype": "application/json",
        },
        visit(),
    )
    ce_binary = CloudEvent(
        {
            "type": "com.example.visit",
            "source": "/shop",
            "id": str(uuid.uuid4()),
            "datacontenttype": "application/json",
        },
        visit(),
    )
    structured, binary = ce_kafka.to_structured(ce), ce_kafka.to_binary(ce_binary)
    bad_value = json.dumps(visit(event_id=f"bad-{uuid.uuid4()}", kind="teleport")).encode()
    records: list[tuple[bytes | None, list[tuple[str, bytes]]]] = [
        (json.dumps(visit(event_id=native_id)).encode(), []),
        (json.dumps(visit(event_id=native_id)).encode(), []),  # a repeat: not republished
        (structured.value, list(structured.headers.items())),
        (binary.value, list(binary.headers.items())),
        (bad_value, [("origin", b"pos-7")]),
        (b"\x00not json", []),
    ]

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers)
        await producer.start()
        try:
            sent = [
                await producer.send_and_wait(raw_topic, value, key=b"k", partition=0, headers=h)
                for value, h in records
            ]
        finally:
            await producer.stop()

        async def dead_letters() -> list[DeadLetterEvent]:
            found = [
                DeadLetterEvent.model_validate_json(r.value or b"")
                for r in await read_topic(kafka_settings, topics.TOUCHPOINTS_DLQ)
            ]
            return [d for d in found if d.data.source_offset in {sent[4].offset, sent[5].offset}]

        dead = await until(lambda: _complete(dead_letters, 2))
        accepted = await read_topic(kafka_settings, topics.TOUCHPOINTS)
        committed = await until(
            lambda: _committed(kafka_settings, group, raw_topic, sent[-1].offset)
        )

    assert len(with_event_id(accepted, native_id)) == 1
    for event in (ce, ce_binary):
        (record,) = with_event_id(accepted, cloudevent_id("/shop", event["id"]))
        assert TouchpointRecorded.model_validate_json(record.value or b"").source == "/shop"

    by_offset = {d.data.source_offset: d.data for d in dead}
    invalid, undecodable = by_offset[sent[4].offset], by_offset[sent[5].offset]
    assert (invalid.reason_code, undecodable.reason_code) == ("invalid", "undecodable")
    assert invalid.source_topic == raw_topic
    assert invalid.source_partition == 0
    assert invalid.errors[0].path == "kind"
    assert base64.b64decode(invalid.original_value_b64 or "") == bad_value
    assert invalid.original_headers == {"origin": "pos-7"}
    assert committed, "offsets were not committed after the batch was handled"


async def _complete(fetch: Any, count: int) -> list[Any]:
    found: list[Any] = await fetch()
    return found if len(found) >= count else []


async def _committed(kafka: KafkaSettings, group: str, topic: str, last_offset: int) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group)
    await consumer.start()
    try:
        offset = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    return offset is not None and offset > last_offset
