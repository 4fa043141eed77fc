"""Prometheus metrics every service exposes at /metrics: HTTP, consumers, outbox relay.

The metrics live in prometheus-client's default registry (with its process and platform
collectors), one set per process; labels tell consumers and relays apart. Labels never hold
personal data: HTTP requests are counted by route template, never by path. With
PROMETHEUS_MULTIPROC_DIR set (several worker processes per pod), values are written to files
there and /metrics aggregates every process's.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From ingest's acceptance to a consumer: includes broker and relay hops, hence longer buckets.
_CHAIN_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

http_requests = Counter(
    "clientela_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
http_request_seconds = Histogram(
    "clientela_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=_SECONDS,
)
consumer_batches = Counter(
    "clientela_consumer_batches",
    "Record batches a consumer finished, by outcome (ok, or failed: redelivered later).",
    ["consumer", "outcome"],
)
consumer_records = Counter(
    "clientela_consumer_records",
    "Records a consumer received, by topic.",
    ["consumer", "topic"],
)
consumer_dead_letters = Counter(
    "clientela_consumer_dead_letters",
    "Records a consumer set aside on its dead-letter topic, by reason code.",
    ["consumer", "reason"],
)
consumer_batch_seconds = Histogram(
    "clientela_consumer_batch_duration_seconds",
    "Time a consumer took for one batch: decoding, dead letters and handler, retries included.",
    ["consumer"],
    buckets=_SECONDS,
)
consumer_handler_failures = Counter(
    "clientela_consumer_handler_failures",
    "Failed attempts of a consumer's batch handler (each is retried, then redelivered).",
    ["consumer"],
)
consumer_chain_seconds = Histogram(
    "clientela_consumer_chain_latency_seconds",
    "Time from ingest accepting the originating touchpoint to a consumer receiving the record.",
    ["consumer"],
    buckets=_CHAIN_SECONDS,
)
outbox_published = Counter(
    "clientela_outbox_published",
    "Events the outbox relay published (broker acknowledged), by relay.",
    ["relay"],
)
outbox_relay_failures = Counter(
    "clientela_outbox_relay_failures",
    "Failed relay rounds (database or broker unavailable; retried with backoff), by relay.",
    ["relay"],
)
outbox_pending = Gauge(
    "clientela_outbox_pending",
    "Events waiting in the outbox, by relay (sampled every few seconds).",
    ["relay"],
    multiprocess_mode="livemax",
)


def observe_chain_latency(consumer: str, accepted_at_ms: list[int], now_ms: int) -> None:
    """Record, for each received record, how long ago ingest accepted its touchpoint."""
    histogram = consumer_chain_seconds.labels(consumer)
    for accepted in accepted_at_ms:
        histogram.observe(max(0, now_ms - accepted) / 1000)


def render(extra: tuple[CollectorRegistry, ...] = ()) -> bytes:
    """Return the exposition text: this process's metrics, or every worker's in multiprocess."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return b"".join(generate_latest(r) for r in (REGISTRY, *extra))


def add_registry(app: FastAPI, registry: CollectorRegistry) -> None:
    """Also expose a service's own registry at the app's /metrics."""
    app.state.metrics_registries = (*registries(app), registry)


def registries(app: FastAPI) -> tuple[CollectorRegistry, ...]:
    """Return the service registries exposed besides the default one."""
    found: tuple[CollectorRegistry, ...] = getattr(app.state, "metrics_registries", ())
    return found


def observe_request(method: str, route: str | None, status_code: int, seconds: float) -> None:
    """Count one answered HTTP request and its duration, by route template (never the path)."""
    method = method if method in _METHODS else "OTHER"
    route = route or "unmatched"
    http_requests.labels(method, route, str(status_code)).inc()
    http_request_seconds.labels(method, route).observe(seconds)
