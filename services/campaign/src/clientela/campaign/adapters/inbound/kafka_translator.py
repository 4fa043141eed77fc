"""Kafka translator: a record batch -> only what can matter, read cheaply -> one use-case call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from aiokafka import ConsumerRecord

from clientela.campaign.adapters.inbound.wire import (
    CONTEXT_FREE,
    READERS,
    Context,
    Item,
    inputs_of,
)
from clientela.campaign.application.decide_campaigns import CampaignDecider
from clientela.campaign.application.ports import UnitOfWork
from clientela.shared import metrics
from clientela.shared.codec import (
    HEADER_REFERS_TO_MESSAGE,
    DecodeError,
    accepted_at_ms,
    header,
    now_ms,
)
from clientela.shared.consumer import (
    RetryPolicy,
    batch_metrics,
    dead_letter_for,
    publish_dead_letters,
    with_retry,
)
from clientela.shared.contracts import DeadLetterEvent, TouchpointRecorded
from clientela.shared.kafka import KafkaPublisher, RecordBatch
from clientela.shared.tracing import BatchTrace

Record: TypeAlias = ConsumerRecord[bytes | None, bytes | None]
TOUCHPOINT = TouchpointRecorded.EVENT_TYPE


class CampaignBatchHandler:
    """Reads a batch of records from the consumed topics and hands it to the use case.

    Like the shared BatchProcessor, it dead-letters what cannot be read (with the reason and
    the original bytes) and retries the batch on transient failures; unlike it, it builds no
    full event for records that cannot matter, and tombstones are skipped. A touchpoint
    whose header says it names no campaign message is skipped before any decoding; one
    without the header (older records, other producers) is read to find out.
    """

    def __init__(
        self,
        decider: CampaignDecider,
        unit_of_work: Callable[[], UnitOfWork],
        *,
        topics: Mapping[str, str],
        publisher: KafkaPublisher,
        dead_letter_topic: str,
        consumer_name: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._decider = decider
        self._uow = unit_of_work
        # Topic name -> event type read there.
        self._topics = topics
        self._publisher = publisher
        self._dlq = dead_letter_topic
        self._consumer = consumer_name
        self._retry = retry or RetryPolicy()

    async def __call__(self, records: RecordBatch) -> None:
        """Process one batch; raise to have it redelivered."""
        with batch_metrics(self._consumer):
            await self._process(records)

    async def _process(self, records: RecordBatch) -> None:
        items: list[Item] = []
        dead: list[DeadLetterEvent] = []
        accepted: list[int] = []
        trace = BatchTrace(self._consumer)
        by_topic: dict[str, int] = {}
        for record in records:
            by_topic[record.topic] = by_topic.get(record.topic, 0) + 1
            kind = self._topics.get(record.topic)
            if kind == TOUCHPOINT:
                if header(record.headers, HEADER_REFERS_TO_MESSAGE) == b"0":
                    continue  # its producer says it answers no message: nothing to read
            elif record.value is None and kind is not None:
                continue  # a tombstone (erasure on a compacted topic) is handled via erasures
            try:
                if kind is None:
                    raise DecodeError("unknown_topic", f"no contract for topic {record.topic}")
                if record.value is None:
                    raise DecodeError("empty", "record has no value")
                if len(record.value) > 1_048_576:
                    raise DecodeError("oversized", f"record of {len(record.value)} bytes")
                if kind in CONTEXT_FREE:
                    at, ctx = None, None
                else:
                    at = accepted_at_ms(record.headers)
                    ctx = Context(at, _trace_fields(trace, record))
                item = READERS[kind](record.value, ctx)
            except DecodeError as exc:
                dead.append(dead_letter_for(self._consumer, record, exc))
                metrics.consumer_dead_letters.labels(self._consumer, exc.code).inc()
                continue
            if item is not None:
                items.append(item)
                if at is not None:
                    accepted.append(at)
        for topic, count in by_topic.items():
            metrics.consumer_records.labels(self._consumer, topic).inc(count)
        # A sample is enough for the latency histogram, and observing costs per value.
        step = max(1, len(accepted) // 50)
        metrics.observe_chain_latency(self._consumer, accepted[::step], now_ms())
        with trace:
            await publish_dead_letters(self._publisher, self._dlq, dead, self._retry)
            if items:
                inputs = inputs_of(items)
                await with_retry(
                    lambda: self._decider.handle_batch(inputs, self._uow()),
                    self._retry,
                    self._consumer,
                )


def _trace_fields(trace: BatchTrace, record: Record) -> tuple[tuple[str, str], ...]:
    if not record.headers:
        return ()
    # Keyed by position: messages carry their trigger's trace explicitly, not by cause id.
    position = f"{record.topic}:{record.partition}:{record.offset}"
    found = trace.add(position, record.topic, record.partition, record.offset, record.headers)
    return found.fields if found is not None else ()
