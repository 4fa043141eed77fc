"""Builds the console: service client, read model (engine, consumer) and the web app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from clientela.console.adapters.inbound.kafka import ReadModelTranslator
from clientela.console.adapters.inbound.web import WebContext, install
from clientela.console.adapters.outbound import tables
from clientela.console.adapters.outbound.services_http import HttpServices
from clientela.console.adapters.outbound.sql_read_model import SqlReadModel
from clientela.console.application.ports import Services
from clientela.console.config import ConsoleSettings
from clientela.shared import http
from clientela.shared.consumer import BatchProcessor
from clientela.shared.contracts import (
    ALL_TOPICS,
    CleanupPolicy,
    DeadLetterEvent,
    Envelope,
    ProfileChangedEvent,
    ProfileErasedEvent,
    ProfilesMergedEvent,
    ScoresUpdatedEvent,
    TierChangedEvent,
    TopicSpec,
)
from clientela.shared.contracts.topics import (
    PROFILE_ERASURES,
    PROFILE_MERGES,
    PROFILES,
    SCORES,
    TIER_CHANGES,
)
from clientela.shared.db import create_engine, create_tables
from clientela.shared.kafka import (
    Consumers,
    KafkaPublisher,
    ensure_topics,
    make_broker,
    subscribe_batch,
)

log = logging.getLogger(__name__)

# Records the console cannot decode. Declared here until the shared registry lists it.
CONSOLE_DLQ = TopicSpec(
    name="console.dlq.v1",
    key="source topic",
    partitions=1,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=DeadLetterEvent,
    producer="console",
    description="Records the console's read model could not decode, with the reason.",
)
CONSUMED: Mapping[TopicSpec, type[Envelope]] = {
    TIER_CHANGES: TierChangedEvent,
    SCORES: ScoresUpdatedEvent,
    PROFILES: ProfileChangedEvent,
    PROFILE_MERGES: ProfilesMergedEvent,
    PROFILE_ERASURES: ProfileErasedEvent,
}


@dataclass(slots=True)
class Container:
    """The running parts of the console."""

    settings: ConsoleSettings
    services: Services
    read_model: SqlReadModel | None
    publisher: KafkaPublisher | None
    broker: Consumers | None


@asynccontextmanager
async def build(
    settings: ConsoleSettings,
    *,
    services: Services | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    start_consumer: bool = True,
) -> AsyncIterator[Container]:
    """Start the service client and (when enabled) the read model; stop them on exit."""
    async with AsyncExitStack() as stack:
        if services is None:
            client = httpx.AsyncClient(timeout=settings.service_timeout_s, transport=transport)
            stack.push_async_callback(client.aclose)
            services = HttpServices(
                client,
                profile=settings.profile_url,
                scoring=settings.scoring_url,
                campaign=settings.campaign_url,
            )
        container = Container(settings, services, None, None, None)
        if settings.read_model:
            engine = create_engine(settings.database, tables.SERVICE)
            stack.push_async_callback(engine.dispose)
            await create_tables(engine, tables.metadata, tables.SERVICE, settings.database)
            container.read_model = read_model = SqlReadModel(engine)
            if start_consumer:
                await _start_consumer(settings, read_model, container, stack)
        log.info("console started (read model %s)", "on" if settings.read_model else "off")
        yield container


async def _start_consumer(
    settings: ConsoleSettings,
    read_model: SqlReadModel,
    container: Container,
    stack: AsyncExitStack,
) -> None:
    kafka = settings.kafka
    if kafka.create_topics:
        await ensure_topics(kafka, (*ALL_TOPICS, CONSOLE_DLQ))
    publisher = container.publisher = KafkaPublisher(kafka)
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    broker = container.broker = make_broker(kafka)
    contracts = {kafka.topic(spec): contract for spec, contract in CONSUMED.items()}
    processor = BatchProcessor(
        contracts=contracts,
        handler=ReadModelTranslator(read_model),
        publisher=publisher,
        dead_letter_topic=kafka.topic(CONSOLE_DLQ),
        consumer_name=settings.group_id,
        tombstone_topics=frozenset({kafka.topic(PROFILES), kafka.topic(SCORES)}),
    )
    subscribe_batch(broker, kafka, list(contracts), settings.group_id, processor)
    await broker.start()
    stack.push_async_callback(broker.stop)


def create_app(
    settings: ConsoleSettings,
    *,
    services: Services | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    start_consumer: bool = True,
) -> FastAPI:
    """Return the console app; its lifespan starts and stops everything it runs."""
    context = WebContext(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build(
            settings, services=services, transport=transport, start_consumer=start_consumer
        ) as container:
            app.state.container = container
            context.attach(container.services, container.read_model)
            yield
            context.detach()

    def readiness(app: FastAPI) -> dict[str, http.ReadinessCheck]:
        container: Container | None = getattr(app.state, "container", None)
        if container is None:
            return {"started": _false}
        checks: dict[str, http.ReadinessCheck] = {"started": _true}
        if container.read_model is not None:
            checks["database"] = container.read_model.ping
        if container.publisher is not None:
            checks["broker"] = container.publisher.ready
        return checks

    app = http.create_app(
        title="Clientela console",
        description="Customer 360, the customer base and campaign results, for people.",
        lifespan=lifespan,
        readiness=readiness,
    )
    install(app, context)
    return app


async def _true() -> bool:
    return True


async def _false() -> bool:
    return False
