"""Kafka inbound: profile changes and erasures -> one call of a use case per kind and batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from clientela.scoring.adapters.inbound.profile_wire import decode_profile_change
from clientela.scoring.application.erase_profiles import EraseProfiles
from clientela.scoring.application.ports import (
    ErasureMessage,
    ProfileChangeMessage,
    ScoringUnitOfWork,
)
from clientela.scoring.application.score_profiles import ScoreProfiles
from clientela.shared import metrics
from clientela.shared.codec import accepted_at_ms, now_ms
from clientela.shared.consumer import (
    BatchProcessor,
    Incoming,
    RetryPolicy,
    batch_metrics,
    with_retry,
)
from clientela.shared.contracts import Envelope, ProfileChangedEvent, ProfileErasedEvent
from clientela.shared.kafka import RecordBatch
from clientela.shared.tracing import BatchTrace

log = logging.getLogger(__name__)


class ProfileChangesTranslator:
    """The BatchProcessor handler: contract-decoded erasures, then profile changes."""

    def __init__(
        self,
        use_case: ScoreProfiles,
        unit_of_work: Callable[[], ScoringUnitOfWork],
        erase: EraseProfiles | None = None,
    ) -> None:
        self._use_case = use_case
        self._erase = erase
        self._uow = unit_of_work

    async def __call__(self, batch: list[Incoming[Envelope]]) -> None:
        """Erase, then score, one decoded batch."""
        erasures = [
            ErasureMessage(item.event.event_id, item.event.data.profile_id)
            for item in batch
            if isinstance(item.event, ProfileErasedEvent)
        ]
        messages = [
            ProfileChangeMessage(item.event, item.accepted_at_ms)
            for item in batch
            if isinstance(item.event, ProfileChangedEvent)
        ]
        if len(messages) + len(erasures) != len(batch) or (erasures and self._erase is None):
            log.warning("ignored event(s) of an unexpected type in a batch of %d", len(batch))
        if erasures and self._erase is not None:
            await self._erase(erasures, self._uow())
        if messages:
            await self._use_case(messages, self._uow())


class ProfileStream:
    """The subscriber's batch handler: most ProfileChanged records skip the contract decode.

    Records of profiles.v1 that the lean decoder accepts are scored here; everything else
    (erasures, records it refuses) goes first through the shared BatchProcessor, which
    decodes with the contracts, dead-letters what is invalid and calls the translator.
    Tombstones on profiles.v1 are skipped: erasures arrive on profiles.erasures.v1.
    """

    def __init__(
        self,
        *,
        profiles_topic: str,
        fallback: BatchProcessor[Incoming[Envelope]],
        use_case: Callable[[list[ProfileChangeMessage], ScoringUnitOfWork], Awaitable[object]],
        unit_of_work: Callable[[], ScoringUnitOfWork],
        consumer_name: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._profiles = profiles_topic
        self._fallback = fallback
        self._use_case = use_case
        self._uow = unit_of_work
        self._consumer = consumer_name
        self._retry = retry or RetryPolicy()

    async def __call__(self, records: RecordBatch) -> None:
        """Process one batch; raise to have it redelivered."""
        started = time.perf_counter()
        changes: list[ProfileChangeMessage] = []
        rest = []
        batch_trace = BatchTrace(self._consumer)
        skipped = 0
        for record in records:
            if record.topic == self._profiles:
                if record.value is None:
                    skipped += 1  # a tombstone on a compacted topic is a deletion
                    continue
                change = decode_profile_change(record.value)
                if change is not None:
                    changes.append(ProfileChangeMessage(change, accepted_at_ms(record.headers)))
                    batch_trace.add(
                        change.event_id,
                        record.topic,
                        record.partition,
                        record.offset,
                        record.headers,
                    )
                    continue
            rest.append(record)
        if rest:
            await self._fallback(rest)
        if not changes:
            return
        metrics.consumer_records.labels(self._consumer, self._profiles).inc(len(changes) + skipped)
        metrics.observe_chain_latency(
            self._consumer, [m.accepted_at_ms for m in changes if m.accepted_at_ms], now_ms()
        )
        with batch_metrics(self._consumer, started), batch_trace:
            await with_retry(
                lambda: self._use_case(changes, self._uow()), self._retry, self._consumer
            )
