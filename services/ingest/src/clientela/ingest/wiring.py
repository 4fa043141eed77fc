"""Builds the ingest process: cache, producer, use case, raw-topic consumer, HTTP app."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from clientela.ingest.adapters.inbound.http import (
    HttpIntake,
    install_error_handlers,
    intake_router,
    serve_native_fast,
)
from clientela.ingest.adapters.inbound.raw_topic import RawTopicHandler
from clientela.ingest.adapters.metrics import IngestMetrics, MeasuredPublisher
from clientela.ingest.adapters.outbound.cache_deduplicator import CacheDeduplicator
from clientela.ingest.adapters.outbound.kafka_publisher import (
    KafkaDeadLetterPublisher,
    KafkaTouchpointPublisher,
)
from clientela.ingest.adapters.outbound.redis_deduplicator import RedisDeduplicator
from clientela.ingest.adapters.outbound.redis_rate_limiter import RedisRateLimiter
from clientela.ingest.application.accept_touchpoints import TouchpointIntake
from clientela.ingest.application.ports import Deduplicator, EventPublisher
from clientela.ingest.config import IngestSettings
from clientela.ingest.domain.rate_limit import RateLimiter
from clientela.shared.auth import KeyRing
from clientela.shared.cache import Cache, make_cache
from clientela.shared.confluent import ConfluentPublisher
from clientela.shared.contracts import ALL_TOPICS
from clientela.shared.contracts import topics as topic_registry
from clientela.shared.http import ReadinessCheck
from clientela.shared.http import create_app as create_service_app
from clientela.shared.kafka import ensure_topics, make_broker, subscribe_batch
from clientela.shared.metrics import add_registry

GC_YOUNG_THRESHOLD = 50_000


@dataclass(frozen=True, slots=True)
class Container:
    """The started components of one ingest process."""

    settings: IngestSettings
    cache: Cache
    kafka: ConfluentPublisher
    intake: TouchpointIntake

    def readiness(self) -> dict[str, ReadinessCheck]:
        """Return the checks /readyz runs."""
        return {"broker": self.kafka.ready, "cache": self.cache.ping}


@asynccontextmanager
async def build(
    settings: IngestSettings,
    *,
    metrics: IngestMetrics | None = None,
    cache: Cache | None = None,
    touchpoint_publisher: EventPublisher | None = None,
) -> AsyncIterator[Container]:
    """Start every component, yield them, and stop them in reverse order.

    `cache` and `touchpoint_publisher` replace the configured ones (tests); an injected cache
    is left open for its owner to close.
    """
    metrics = metrics or IngestMetrics()
    injected_cache = cache
    if settings.kafka.create_topics:
        await ensure_topics(settings.kafka, ALL_TOPICS)
    async with AsyncExitStack() as stack:
        if cache is None:
            cache = make_cache(settings.cache)
            stack.push_async_callback(cache.close)
        kafka = ConfluentPublisher(settings.kafka)
        await kafka.start()
        stack.push_async_callback(kafka.stop)
        publisher = touchpoint_publisher or KafkaTouchpointPublisher(
            kafka, settings.kafka.topic(topic_registry.TOUCHPOINTS)
        )
        deduplicator: Deduplicator = CacheDeduplicator(cache, settings.dedup_ttl_s)
        if injected_cache is None and settings.cache.url.startswith(("redis://", "rediss://")):
            redis_dedup = RedisDeduplicator(
                settings.cache.url, settings.cache.key_prefix, settings.dedup_ttl_s
            )
            stack.push_async_callback(redis_dedup.close)
            deduplicator = redis_dedup
        intake = TouchpointIntake(
            policy=settings.intake_policy(),
            deduplicator=deduplicator,
            publisher=MeasuredPublisher(publisher, metrics),
        )
        if settings.consume_raw:
            broker = make_broker(settings.kafka)
            handler = RawTopicHandler(
                intake,
                KafkaDeadLetterPublisher(
                    kafka, settings.kafka.topic(topic_registry.TOUCHPOINTS_DLQ)
                ),
                metrics,
                consumer=settings.group_id,
            )
            subscribe_batch(
                broker,
                settings.kafka,
                [settings.kafka.topic(topic_registry.RAW_TOUCHPOINTS)],
                settings.group_id,
                handler,
            )
            await broker.start()
            stack.push_async_callback(broker.stop)
        yield Container(settings=settings, cache=cache, kafka=kafka, intake=intake)


def tune_gc() -> None:
    """Freeze the objects built at start and collect the young generation less often.

    A 100-event request allocates thousands of short-lived, acyclic objects; the default
    threshold (700) runs a collection several times per request, each walking whatever
    survived. Objects that live for the whole process are moved out of the collector's way.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def _not_started() -> Mapping[str, ReadinessCheck]:
    async def started() -> bool:
        return False

    return {"started": started}


_SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "basic": {"type": "http", "scheme": "basic", "description": "The key as user name."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def create_app(
    settings: IngestSettings | None = None,
    *,
    cache: Cache | None = None,
    touchpoint_publisher: EventPublisher | None = None,
) -> FastAPI:
    """Build the ingest HTTP app; its lifespan starts and stops the container."""
    settings = settings or IngestSettings()
    metrics = IngestMetrics()
    local = RateLimiter(
        settings.rate_limit_events_per_s,
        settings.rate_limit_burst,
        time.monotonic,
        overrides=settings.rate_limits,
    )
    limiter: RateLimiter | RedisRateLimiter = local
    if cache is None and settings.cache.url.startswith(("redis://", "rediss://")):
        # Every worker and instance spends from one bucket per key, so a limit means what it says.
        limiter = RedisRateLimiter(settings.cache.url, settings.cache.key_prefix, local)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with build(
                settings, metrics=metrics, cache=cache, touchpoint_publisher=touchpoint_publisher
            ) as container:
                app.state.container = container
                app.state.intake = container.intake
                if settings.gc_tuning:
                    tune_gc()
                yield
        finally:
            if isinstance(limiter, RedisRateLimiter):
                await limiter.close()

    def readiness(app: FastAPI) -> Mapping[str, ReadinessCheck]:
        container: Container | None = getattr(app.state, "container", None)
        return container.readiness() if container else _not_started()

    app = create_service_app(
        title="Clientela ingest",
        description="Validates, normalises and deduplicates touchpoints, then publishes them. "
        "Accepts native touchpoints, the Segment spec and CloudEvents 1.0.",
        lifespan=lifespan,
        readiness=readiness,
        auth=settings.auth,
    )
    if metrics.registry is not None:
        add_registry(app, metrics.registry)
    deps = HttpIntake(
        keyring=KeyRing.from_settings(settings.auth),
        metrics=metrics,
        limiter=limiter,
        segment=settings.segment_mapping(),
        max_body_bytes=settings.max_body_bytes,
        max_event_bytes=settings.max_event_bytes,
    )
    app.include_router(intake_router(deps))
    install_error_handlers(app, settings.retry_after_s)
    serve_native_fast(app, deps)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        schema.setdefault("components", {}).setdefault("securitySchemes", _SECURITY_SCHEMES)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
