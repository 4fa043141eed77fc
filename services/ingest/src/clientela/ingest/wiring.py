"""Builds the ingest process: cache, publisher, use case and the HTTP app around them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from clientela.ingest.adapters.inbound.http import install_error_handlers, touchpoint_router
from clientela.ingest.adapters.outbound.cache_deduplicator import CacheDeduplicator
from clientela.ingest.adapters.outbound.kafka_publisher import KafkaTouchpointPublisher
from clientela.ingest.application.accept_touchpoints import TouchpointIntake
from clientela.ingest.application.ports import EventPublisher
from clientela.ingest.config import IngestSettings
from clientela.shared.auth import KeyRing
from clientela.shared.cache import Cache, make_cache
from clientela.shared.contracts import ALL_TOPICS
from clientela.shared.contracts import topics as topic_registry
from clientela.shared.http import ReadinessCheck
from clientela.shared.http import create_app as create_service_app
from clientela.shared.kafka import KafkaPublisher, ensure_topics


@dataclass(frozen=True, slots=True)
class Container:
    """The started components of one ingest process."""

    settings: IngestSettings
    cache: Cache
    kafka: KafkaPublisher
    intake: TouchpointIntake

    def readiness(self) -> dict[str, ReadinessCheck]:
        """Return the checks /readyz runs."""
        return {"broker": self.kafka.ready, "cache": self.cache.ping}


@asynccontextmanager
async def build(
    settings: IngestSettings,
    *,
    cache: Cache | None = None,
    touchpoint_publisher: EventPublisher | None = None,
) -> AsyncIterator[Container]:
    """Start every component, yield them, and stop them in reverse order.

    `cache` and `touchpoint_publisher` replace the configured ones (tests); an injected cache
    is left open for its owner to close.
    """
    if settings.kafka.create_topics:
        await ensure_topics(settings.kafka, ALL_TOPICS)
    async with AsyncExitStack() as stack:
        if cache is None:
            cache = make_cache(settings.cache)
            stack.push_async_callback(cache.close)
        kafka = KafkaPublisher(settings.kafka)
        stack.push_async_callback(kafka.stop)
        await kafka.start()
        publisher = touchpoint_publisher or KafkaTouchpointPublisher(
            kafka, settings.kafka.topic(topic_registry.TOUCHPOINTS)
        )
        intake = TouchpointIntake(
            policy=settings.intake_policy(),
            deduplicator=CacheDeduplicator(cache, settings.dedup_ttl_s),
            publisher=publisher,
        )
        yield Container(settings=settings, cache=cache, kafka=kafka, intake=intake)


def _not_started() -> Mapping[str, ReadinessCheck]:
    async def started() -> bool:
        return False

    return {"started": started}


def create_app(
    settings: IngestSettings | None = None,
    *,
    cache: Cache | None = None,
    touchpoint_publisher: EventPublisher | None = None,
) -> FastAPI:
    """Build the ingest HTTP app; its lifespan starts and stops the container."""
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build(
            settings, cache=cache, touchpoint_publisher=touchpoint_publisher
        ) as container:
            app.state.container = container
            app.state.intake = container.intake
            yield

    def readiness(app: FastAPI) -> Mapping[str, ReadinessCheck]:
        container: Container | None = getattr(app.state, "container", None)
        return container.readiness() if container else _not_started()

    app = create_service_app(
        title="Clientela ingest",
        description="Validates, normalises and deduplicates touchpoints, then publishes them.",
        lifespan=lifespan,
        readiness=readiness,
    )
    app.include_router(
        touchpoint_router(KeyRing.from_settings(settings.auth), settings.max_body_bytes)
    )
    install_error_handlers(app, settings.retry_after_s)
    return app
