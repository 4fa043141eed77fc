"""Kafka translator of the raw topic: records in, one use-case call, retried on failure."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from datetime import UTC, datetime

from clientela.ingest.adapters.metrics import IngestMetrics
from clientela.ingest.application.accept_touchpoints import Outcome, TouchpointIntake
from clientela.ingest.application.ports import (
    DeadLetterPublisher,
    DeduplicationUnavailableError,
    PublishFailedError,
)
from clientela.ingest.application.relay_raw import relay_raw_records
from clientela.ingest.domain.raw_record import RawRecord
from clientela.shared.codec import now_ms
from clientela.shared.consumer import RetryPolicy
from clientela.shared.kafka import RecordBatch

log = logging.getLogger(__name__)


class RawTopicHandler:
    """Batch handler for the raw topic; returns only once the batch may be committed."""

    def __init__(
        self,
        intake: TouchpointIntake,
        dead_letters: DeadLetterPublisher,
        metrics: IngestMetrics,
        consumer: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._intake = intake
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._consumer = consumer
        self._retry = retry or RetryPolicy()

    async def __call__(self, batch: RecordBatch) -> None:
        """Relay one batch; raise (after retries) to have it delivered again."""
        records = [
            RawRecord(
                r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers or ())
            )
            for r in batch
        ]
        delay = self._retry.first_delay_s
        for attempt in range(1, self._retry.attempts + 1):
            ms = now_ms()
            try:
                report = await relay_raw_records(
                    records,
                    self._intake,
                    self._dead_letters,
                    consumer=self._consumer,
                    received_at=datetime.fromtimestamp(ms / 1000, UTC),
                    accepted_at_ms=ms,
                )
            except (PublishFailedError, DeduplicationUnavailableError) as exc:
                if attempt == self._retry.attempts:
                    raise
                log.warning("raw batch failed (attempt %d): %s; retrying", attempt, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry.max_delay_s)
                continue
            self._metrics.observe_report("raw_topic", report)
            reasons = Tally(
                o.code or "invalid" for o in report.outcomes if o.status is Outcome.REJECTED
            )
            for reason, count in reasons.items():
                self._metrics.dead_letters.labels(reason).inc(count)
            if reasons:
                log.warning("dead-lettered %d raw record(s)", sum(reasons.values()))
            return
