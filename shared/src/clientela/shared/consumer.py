"""The consumer front-end (topic readers, dead letters, retries) and partition ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from clientela.shared import metrics
from clientela.shared.codec import DecodeError, accepted_at_ms, decode_event, now_ms, to_record
from clientela.shared.contracts import DeadLetter, DeadLetterEvent, Envelope, derived_event_id
from clientela.shared.kafka import KafkaPublisher, Record, RecordBatch
from clientela.shared.tracing import BatchTrace, TraceContext

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Envelope)


@dataclass(frozen=True, slots=True)
class Incoming(Generic[E]):
    """A decoded event with where it came from and the trace it is processed in."""

    event: E
    topic: str
    partition: int
    offset: int
    accepted_at_ms: int | None
    trace: TraceContext | None = None
    # The record's value as delivered (the event's JSON): stored as is where a consumer keeps
    # the whole event, instead of encoding the decoded model again.
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for transient failures inside one delivery of a batch."""

    attempts: int = 6
    first_delay_s: float = 0.1
    max_delay_s: float = 5.0


class RecordMeta:
    """Where a record sits and what its headers say, for a topic reader."""

    __slots__ = ("_trace", "accepted_at_ms", "headers", "offset", "partition", "topic")

    def __init__(self, record: Record, batch_trace: BatchTrace) -> None:
        self.topic: str = record.topic
        self.partition: int = record.partition
        self.offset: int = record.offset
        self.headers: Sequence[tuple[str, bytes]] = record.headers or ()
        # When ingest accepted the originating touchpoint (read once: the front-end's
        # latency sample and the reader both use it).
        self.accepted_at_ms: int | None = accepted_at_ms(self.headers)
        self._trace = batch_trace

    def trace(self, key: str) -> TraceContext | None:
        """Register the record in the batch's trace under `key` (its event id, usually)."""
        return self._trace.add(key, self.topic, self.partition, self.offset, self.headers)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TopicReader(Generic[T]):
    """How one topic's records become what a service handles.

    `read` returns the item, None for a record that cannot matter to this consumer, or
    raises DecodeError (the record is dead-lettered with the reason). `skip` decides from the
    headers alone, before any decode, that a record cannot matter. With `tombstones` a null
    value is a deletion on a compacted topic and skipped; otherwise it is dead-lettered.
    """

    read: Callable[[bytes, RecordMeta], T | None]
    skip: Callable[[Sequence[tuple[str, bytes]]], bool] | None = None
    tombstones: bool = False


def contract_reader(contract: type[E], *, tombstones: bool = False) -> TopicReader[Incoming[E]]:
    """Return a reader that validates each record against its pydantic contract."""

    def read(value: bytes, meta: RecordMeta) -> Incoming[E]:
        event = decode_event(contract, value)
        return Incoming(
            event,
            meta.topic,
            meta.partition,
            meta.offset,
            meta.accepted_at_ms,
            meta.trace(event.event_id),
            value,
        )

    return TopicReader(read, tombstones=tombstones)


class BatchProcessor(Generic[T]):
    """The consumer front-end: reads a batch by topic, dead-letters what is bad, applies the rest.

    Every service consumes through it: a table of topic readers, one use case. Records are
    read in `prepare` (while the consumer applies the previous batch, see BatchConsumer);
    the returned coroutine publishes the dead letters, then calls the handler with retries,
    inside the batch's trace and metrics.
    """

    def __init__(
        self,
        *,
        handler: Callable[[list[T]], Awaitable[object]],
        publisher: KafkaPublisher,
        dead_letter_topic: str,
        consumer_name: str,
        readers: Mapping[str, TopicReader[T]] | None = None,
        contracts: Mapping[str, type[Envelope]] | None = None,
        tombstone_topics: frozenset[str] = frozenset(),
        retry: RetryPolicy | None = None,
        max_record_bytes: int = 1_048_576,
    ) -> None:
        found: dict[str, TopicReader[Any]] = dict(readers or {})
        for topic, contract in (contracts or {}).items():
            found[topic] = contract_reader(contract, tombstones=topic in tombstone_topics)
        self._readers: Mapping[str, TopicReader[T]] = found
        self._handler = handler
        self._publisher = publisher
        self._dlq = dead_letter_topic
        self._consumer = consumer_name
        self._retry = retry or RetryPolicy()
        self._max_bytes = max_record_bytes

    async def __call__(self, records: RecordBatch) -> None:
        """Process one batch; raise to have it redelivered."""
        await self.prepare(records)()

    def prepare(self, records: RecordBatch) -> Callable[[], Coroutine[Any, Any, None]]:
        """Read a batch; return the coroutine function that applies it."""
        started = time.perf_counter()
        items: list[T] = []
        dead: list[DeadLetterEvent] = []
        accepted: list[int] = []
        batch_trace = BatchTrace(self._consumer)
        by_topic: dict[str, int] = {}
        for record in records:
            by_topic[record.topic] = by_topic.get(record.topic, 0) + 1
            try:
                item = self._read(record, batch_trace, accepted)
            except DecodeError as exc:
                dead.append(dead_letter_for(self._consumer, record, exc))
                metrics.consumer_dead_letters.labels(self._consumer, exc.code).inc()
                continue
            if item is not None:
                items.append(item)
        for topic, count in by_topic.items():
            metrics.consumer_records.labels(self._consumer, topic).inc(count)
        # A sample is enough for the latency histogram, and observing costs per value.
        step = max(1, len(accepted) // 50)
        metrics.observe_chain_latency(self._consumer, accepted[::step], now_ms())

        async def apply() -> None:
            with batch_metrics(self._consumer, started), batch_trace:
                await publish_dead_letters(self._publisher, self._dlq, dead, self._retry)
                if items:
                    await with_retry(lambda: self._handler(items), self._retry, self._consumer)

        return apply

    def _read(self, record: Record, batch_trace: BatchTrace, accepted: list[int]) -> T | None:
        reader = self._readers.get(record.topic)
        if reader is None:
            raise DecodeError("unknown_topic", f"no contract for topic {record.topic}")
        value = record.value
        if value is None:
            if reader.tombstones:
                return None  # a tombstone on a compacted topic is a deletion, not an error
            raise DecodeError("empty", "record has no value")
        if reader.skip is not None and record.headers and reader.skip(record.headers):
            return None
        if len(value) > self._max_bytes:
            raise DecodeError(
                "oversized", f"record of {len(value)} bytes exceeds {self._max_bytes}"
            )
        meta = RecordMeta(record, batch_trace)
        item = reader.read(value, meta)
        if item is not None and meta.accepted_at_ms is not None:
            accepted.append(meta.accepted_at_ms)
        return item


@contextlib.contextmanager
def batch_metrics(consumer: str, started: float | None = None) -> Iterator[None]:
    """Count one batch as ok or failed and observe its duration (from `started` if given)."""
    began = time.perf_counter() if started is None else started
    outcome = "failed"
    try:
        yield
        outcome = "ok"
    finally:
        metrics.consumer_batches.labels(consumer, outcome).inc()
        metrics.consumer_batch_seconds.labels(consumer).observe(time.perf_counter() - began)


async def with_retry(
    call: Callable[[], Awaitable[object]], policy: RetryPolicy, consumer: str | None = None
) -> None:
    """Run `call`, retrying with exponential backoff; count failures when `consumer` is set."""
    delay = policy.first_delay_s
    for attempt in range(1, policy.attempts + 1):
        try:
            await call()
            return
        except Exception:
            if consumer is not None:
                metrics.consumer_handler_failures.labels(consumer).inc()
            if attempt == policy.attempts:
                raise
            log.exception("batch failed (attempt %d), retrying in %.1fs", attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_delay_s)


async def publish_dead_letters(
    publisher: KafkaPublisher, topic: str, dead: Sequence[DeadLetterEvent], retry: RetryPolicy
) -> None:
    """Publish a batch's dead letters (with retries) before the batch itself is handled."""
    # Published before the batch commits, so a crash redelivers them rather than losing them;
    # a duplicate dead letter carries the same event id.
    if not dead:
        return
    records = [to_record(topic, d.data.source_topic, d) for d in dead]
    await with_retry(lambda: publisher.publish(records), retry)
    log.warning("dead-lettered %d record(s) to %s", len(dead), topic)


def dead_letter_for(consumer: str, record: ConsumerRecord, exc: DecodeError) -> DeadLetterEvent:
    """Build the dead letter of a record the consumer could not decode (one id per position)."""
    key: bytes | None = record.key
    value: bytes | None = record.value
    return DeadLetterEvent(
        event_id=derived_event_id(
            "dead-letter", consumer, record.topic, str(record.partition), str(record.offset)
        ),
        source=consumer,
        data=DeadLetter.of_record(
            reason_code=exc.code,
            reason=exc.reason,
            errors=exc.errors,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            consumer=consumer,
            key=key,
            value=value,
            headers=record.headers or (),
        ),
    )


async def partition_ends(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], timeout_s: float = 30.0
) -> dict[TopicPartition, int]:
    """Return the end offset (high watermark) of each partition, also where the broker errs.

    The embedded broker answers ListOffsets with the base offset of a partition's last record
    batch plus one, short of the real end whenever producers batch; its fetch responses carry
    the true high watermark. So each non-empty partition is fetched once from just before the
    reported end, and the larger of the two answers is kept (on Apache Kafka they agree).
    The consumer is assigned to the partitions: assign and seek it afterwards.
    """
    tps = list(dict.fromkeys(partitions))
    if not tps:
        return {}
    ends: dict[TopicPartition, int] = dict(await consumer.end_offsets(tps))
    pending = [tp for tp in tps if ends[tp] > 0]
    if not pending:
        return ends
    consumer.assign(pending)
    for tp in pending:
        consumer.seek(tp, ends[tp] - 1)
    async with asyncio.timeout(timeout_s):
        while pending:
            await consumer.getmany(*pending, timeout_ms=200)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[tp] = max(ends[tp], highwater)
                    pending.remove(tp)
    return ends
