"""Thin Kafka plumbing: batch publishers, topic creation, and batch subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from clientela.shared.codec import Headers, OutgoingRecord
from clientela.shared.contracts import TopicSpec
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)

RecordBatch = Sequence[ConsumerRecord[bytes | None, bytes | None]]
BatchHandler = Callable[[RecordBatch], Awaitable[None]]


class PublishError(Exception):
    """The broker did not acknowledge every record of a batch."""


# (topic, key, value, headers): what a publisher sends, without an intermediate object.
Row = tuple[str, bytes | None, bytes | None, Headers]
ProducerClient = Literal["aiokafka", "confluent"]


class RecordPublisher(Protocol):
    """Produces batches and returns once the broker acknowledged all of them."""

    async def start(self) -> None:
        """Connect."""
        ...

    async def stop(self) -> None:
        """Flush and disconnect."""
        ...

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Publish the records; raise PublishError unless all are acknowledged."""
        ...

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        """Publish (topic, key, value, headers) rows; raise PublishError unless all are acked."""
        ...

    async def ready(self) -> bool:
        """Return whether the broker answers."""
        ...


class AiokafkaPublisher:
    """Produces batches of records with aiokafka and returns once the broker acked them all."""

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
        await self.publish_rows([(r.topic, r.key, r.value, r.headers) for r in records])

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        """Publish (topic, key, value, headers) rows; return once all are acknowledged."""
        if not rows:
            return
        producer = self._producer
        if producer is None:
            raise PublishError("publisher is not started")
        send = producer.send
        try:
            futures = [
                await send(topic, value, key=key, headers=headers)
                for topic, key, value, headers in rows
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


class KafkaPublisher:
    """Produces batches with the configured client and returns once all are acknowledged.

    The client is `client` when given, else the settings' `producer` (CLIENTELA_KAFKA_PRODUCER).
    """

    def __init__(self, settings: KafkaSettings, *, client: ProducerClient | None = None) -> None:
        self.client: ProducerClient = client or settings.producer
        self._impl: RecordPublisher
        if self.client == "confluent":
            # Imported on demand: librdkafka loads only in processes that use it.
            from clientela.shared.confluent import ConfluentPublisher

            self._impl = ConfluentPublisher(settings)
        else:
            self._impl = AiokafkaPublisher(settings)

    async def start(self) -> None:
        """Connect the producer."""
        await self._impl.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer."""
        await self._impl.stop()

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Send every record, then await every acknowledgement; raise PublishError on failure."""
        await self._impl.publish(records)

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        """Publish (topic, key, value, headers) rows; return once all are acknowledged."""
        await self._impl.publish_rows(rows)

    async def ready(self) -> bool:
        """Return whether the broker answers a metadata request."""
        return await self._impl.ready()


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
