"""Fixtures of the ingest integration tests: a live server on a port, and a topic reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from clientela.ingest.config import IngestSettings
from clientela.ingest.wiring import create_app
from clientela.shared.codec import HEADER_EVENT_ID, header
from clientela.shared.consumer import partition_ends
from clientela.shared.contracts import TopicSpec
from clientela.shared.embedded_broker import free_port
from clientela.shared.settings import KafkaSettings

Record = ConsumerRecord[bytes | None, bytes | None]
TopicReader = Callable[[TopicSpec], Awaitable[list[Record]]]


async def read_topic(kafka: KafkaSettings, spec: TopicSpec) -> list[Record]:
    """Read a topic from its start to its current end."""
    topic = kafka.topic(spec)
    partitions = [TopicPartition(topic, p) for p in range(spec.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        end = await partition_ends(consumer, partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Record] = []
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            batch = await consumer.getmany(*partitions, timeout_ms=500)
            found.extend(r for recs in batch.values() for r in recs)
        return found
    finally:
        await consumer.stop()


def with_event_id(records: list[Record], event_id: str) -> list[Record]:
    """Keep the records whose event-id header is the given id."""
    return [r for r in records if header(r.headers, HEADER_EVENT_ID) == event_id.encode()]


@dataclass(frozen=True)
class LiveIngest:
    """An ingest server listening on a local port."""

    url: str
    settings: IngestSettings


@pytest.fixture(scope="module")
def live_ingest(kafka_settings: KafkaSettings) -> Iterator[LiveIngest]:
    """Run ingest under uvicorn in a thread (for clients that need a real socket)."""
    settings = IngestSettings(kafka=kafka_settings, consume_raw=False)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("ingest did not become ready")
        time.sleep(0.1)
    yield LiveIngest(url, settings)
    server.should_exit = True
    thread.join(15)
