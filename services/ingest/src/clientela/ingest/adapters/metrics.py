"""Prometheus metrics of ingest: events by outcome, rejections by reason, latencies."""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram

from clientela.ingest.application.accept_touchpoints import IntakeReport, Outcome
from clientela.ingest.application.ports import EventPublisher
from clientela.ingest.domain.touchpoints import RecordedTouchpoint

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)


class IngestMetrics:
    """The metrics of one process; rendered for all worker processes in multiprocess mode."""

    def __init__(self) -> None:
        self._multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode values live in shared files and are collected at scrape time.
        self._registry: CollectorRegistry | None = (
            None if self._multiprocess else (CollectorRegistry())
        )
        registry = self._registry
        self.events = Counter(
            "clientela_ingest_events",
            "Submitted events by interface and outcome.",
            ["interface", "outcome"],
            registry=registry,
        )
        self.rejections = Counter(
            "clientela_ingest_rejections",
            "Rejected events by interface and reason code.",
            ["interface", "reason"],
            registry=registry,
        )
        self.requests = Counter(
            "clientela_ingest_requests",
            "HTTP submissions by endpoint and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "clientela_ingest_request_duration_seconds",
            "Time from arrival to answer of an HTTP submission.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "clientela_ingest_publish_duration_seconds",
            "Time the broker took to acknowledge a batch of accepted events.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "clientela_ingest_dead_letters",
            "Raw-topic records set aside on the dead-letter topic, by reason code.",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "clientela_ingest_rate_limited",
            "Submissions refused with 429, by key name.",
            ["key"],
            registry=registry,
        )

    def observe_report(self, interface: str, report: IntakeReport) -> None:
        """Count a submission's events by outcome and its rejections by reason."""
        outcomes = Tally(o.status for o in report.outcomes)
        for status, count in outcomes.items():
            self.events.labels(interface, status.value).inc(count)
        if outcomes[Outcome.REJECTED]:
            reasons = Tally(
                o.code or "invalid" for o in report.outcomes if o.status is Outcome.REJECTED
            )
            for reason, count in reasons.items():
                self.rejections.labels(interface, reason).inc(count)

    def observe_request(self, endpoint: str, status: int, started: float) -> None:
        """Count an HTTP submission and record how long it took."""
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(time.perf_counter() - started)

    @property
    def registry(self) -> CollectorRegistry | None:
        """The registry to expose; None in multiprocess mode (the shared /metrics reads files)."""
        return self._registry


class MeasuredPublisher:
    """An EventPublisher that records how long the broker takes to acknowledge."""

    def __init__(self, inner: EventPublisher, metrics: IngestMetrics) -> None:
        self._inner = inner
        self._histogram = metrics.publish_seconds

    async def publish(self, events: Sequence[RecordedTouchpoint], accepted_at_ms: int) -> None:
        """Publish through the wrapped publisher, timing it."""
        started = time.perf_counter()
        try:
            await self._inner.publish(events, accepted_at_ms)
        finally:
            self._histogram.observe(time.perf_counter() - started)
