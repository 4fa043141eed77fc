"""Thin Kafka plumbing: a batch publisher, topic creation, and batch subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from clientela.shared.codec import OutgoingRecord
from clientela.shared.contracts import TopicSpec
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)

RecordBatch = Sequence[ConsumerRecord[bytes | None, bytes | None]]
BatchHandler = Callable[[RecordBatch], Awaitable[None]]


class PublishError(Exception):
    """The broker did not acknowledge every record of a batch."""


class KafkaPublisher:
    """Produces batches of records and returns once the broker acknowledged all of them."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect the producer."""
        s = self._settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            acks="all",
            enable_idempotence=s.enable_idempotence,
            linger_ms=s.linger_ms,
            max_batch_size=s.max_batch_bytes,
            request_timeout_ms=s.request_timeout_ms,
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Send every record, then await every acknowledgement; raise PublishError on failure."""
        if not records:
            return
        producer = self._producer
        if producer is None:
            raise PublishError("publisher is not started")
        try:
            futures = [
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records
            ]
            await asyncio.gather(*futures)
        except (KafkaError, OSError) as exc:
            raise PublishError(f"broker did not acknowledge the batch: {exc!r}") from exc

    async def ready(self) -> bool:
        """Return whether the broker answers a metadata request."""
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True


async def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> None:
    """Create the given topics when missing, with their partitions and cleanup policy."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(settings.topic(spec), spec.partitions, 1, topic_configs=spec.config)
            for spec in specs
            if settings.topic(spec) not in existing
        ]
        if missing:
            # Another service may create the same topic in between; that is the goal anyway.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics: %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()


def make_broker(settings: KafkaSettings) -> KafkaBroker:
    """Build (without connecting) the FastStream broker that runs subscribers."""
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=settings.client_id,
        request_timeout_ms=settings.request_timeout_ms,
        logger=logging.getLogger("clientela.kafka"),
        log_level=logging.DEBUG,
    )


async def _raw_body(message: Any) -> Any:
    # Handlers read the raw records; skipping FastStream's JSON decoding saves a parse per record.
    return message.body


def subscribe_batch(
    broker: KafkaBroker,
    settings: KafkaSettings,
    topics: Sequence[str],
    group_id: str,
    handler: BatchHandler,
) -> None:
    """Register a batch subscriber that commits offsets only after the handler succeeded."""
    subscriber = broker.subscriber(
        *topics,
        group_id=group_id,
        batch=True,
        max_records=settings.max_poll_records,
        batch_timeout_ms=settings.poll_timeout_ms,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        # A failed batch is sought back and redelivered; nothing is committed past it.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw_body,
    )

    @subscriber
    async def _consume(body: list[Any], message: KafkaMessage) -> None:
        records = message.raw_message
        await handler(records if isinstance(records, tuple) else (records,))
