"""A librdkafka (confluent-kafka) publisher: batches of records, one future per batch.

librdkafka batches, compresses and retries in its own threads and costs a fraction of
aiokafka's CPU per record (ADR 2); delivery reports are collected by a poll thread and resolve one
asyncio future per published batch, so the event loop is woken once per batch, not per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from clientela.shared.codec import OutgoingRecord
from clientela.shared.kafka import PublishError, Row
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)

__all__ = ["ConfluentPublisher", "Row", "producer_config"]

_POLL_S = 0.05
_QUEUE_FULL_BACKOFF_S = 0.005


class _Batch:
    """Counts the delivery reports of one published batch and resolves its future."""

    __slots__ = ("error", "future", "lock", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: str | None = None
        # Reports arrive on the poll thread while `abandon` may run on the loop's thread.
        self.lock = threading.Lock()

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        # Runs in the poll thread.
        with self.lock:
            if error is not None and self.error is None:
                self.error = str(error)
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self._wake()

    def abandon(self, count: int, reason: str) -> None:
        """Account for records that were never handed to the producer."""
        with self.lock:
            if self.error is None:
                self.error = reason
            self.remaining -= count
            done = self.remaining == 0
        if done:
            self._wake()

    def _wake(self) -> None:
        # A closed loop raises: nobody awaits this batch any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self.future.done():
            return
        if self.error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(PublishError(f"broker did not acknowledge: {self.error}"))


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    """Return the librdkafka configuration of a durable (acks=all) producer."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "acks": "all",
        # Java's (and aiokafka's) key hash: a key lands on the same partition whichever client
        # produced it, so a compacted topic keeps one value per key and a key's order holds.
        "partitioner": "murmur2_random",
        "enable.idempotence": settings.enable_idempotence,
        # Without idempotence a retried request may overtake the next one and reorder a key's
        # records; one request in flight per broker keeps the order (as aiokafka does).
        "max.in.flight.requests.per.connection": 5 if settings.enable_idempotence else 1,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.max_batch_bytes,
        "compression.type": settings.compression,
        # A record not acknowledged within this time is reported failed (PublishError).
        "message.timeout.ms": settings.request_timeout_ms,
        "request.timeout.ms": min(settings.request_timeout_ms, 30_000),
        "log_level": 3,
        # Through Python logging (served by poll), not raw lines on stderr.
        "logger": log,
    }


class ConfluentPublisher:
    """Produces record batches and returns once the broker acknowledged every record."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        """Create the producer and its delivery-report thread."""
        self._producer = Producer(producer_config(self._settings))
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._poll, args=(self._producer,), name="kafka-delivery", daemon=True
        )
        self._thread.start()

    def _poll(self, producer: Producer) -> None:
        while not self._stopping.is_set():
            producer.poll(_POLL_S)

    async def stop(self) -> None:
        """Flush what is queued, then stop the delivery thread."""
        producer, thread = self._producer, self._thread
        if producer is None or thread is None:
            return
        remaining = await asyncio.to_thread(producer.flush, 10)
        if remaining:
            log.warning("%d record(s) were not delivered before shutdown", remaining)
        self._stopping.set()
        await asyncio.to_thread(thread.join, 5)
        self._producer = self._thread = None

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
        batch = _Batch(asyncio.get_running_loop(), len(rows))
        produce, on_delivery = producer.produce, batch.on_delivery
        for index, (topic, key, value, headers) in enumerate(rows):
            while True:
                try:
                    # The stubs want str-or-bytes values; bytes are what we have.
                    produce(topic, value, key, headers=headers, on_delivery=on_delivery)  # type: ignore[arg-type]
                    break
                except BufferError:
                    # The local queue is full: let the broker drain it.
                    await asyncio.sleep(_QUEUE_FULL_BACKOFF_S)
                except (KafkaException, TypeError, ValueError) as exc:
                    batch.abandon(len(rows) - index, repr(exc))
                    await batch.future
                    return
        await batch.future

    async def ready(self) -> bool:
        """Return whether the broker answers a metadata request."""
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.to_thread(producer.list_topics, None, 2)
        except KafkaException:
            return False
        return True
