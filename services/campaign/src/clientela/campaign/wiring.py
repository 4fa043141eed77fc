"""Builds the campaign service: storage, consumer, outbox relay and the HTTP app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.campaign.adapters.inbound.http_routes import ReadSide, api_router
from clientela.campaign.adapters.inbound.kafka_translator import CampaignBatchHandler
from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.adapters.outbound.sql_read_model import SqlCampaignReadModel
from clientela.campaign.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.campaign.adapters.outbound.tables import CampaignTables, campaign_tables
from clientela.campaign.application.decide_campaigns import CampaignDecider
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.catalog import CampaignCatalog
from clientela.campaign.domain.decision import DecisionPolicy
from clientela.shared import http
from clientela.shared.auth import KeyRing
from clientela.shared.consumer import BatchProcessor
from clientela.shared.contracts import (
    ALL_TOPICS,
    ProfileChangedEvent,
    TierChangedEvent,
    utc_now,
)
from clientela.shared.contracts.topics import (
    CAMPAIGN_DLQ,
    CAMPAIGN_MESSAGES,
    PROFILES,
    TIER_CHANGES,
)
from clientela.shared.db import create_engine, create_tables
from clientela.shared.kafka import KafkaPublisher, ensure_topics, make_broker, subscribe_batch
from clientela.shared.outbox import OutboxRelay

SERVICE = CampaignSettings.service_name


@dataclass(slots=True)
class Container:
    """Everything the running service holds; built and torn down by `build`."""

    settings: CampaignSettings
    engine: AsyncEngine
    tables: CampaignTables
    catalog: CampaignCatalog
    decider: CampaignDecider
    read_model: SqlCampaignReadModel
    publisher: KafkaPublisher | None = None
    relay: OutboxRelay | None = None

    def unit_of_work(self) -> SqlUnitOfWork:
        """Return a fresh unit of work over the service's tables."""
        return SqlUnitOfWork(self.engine, self.tables, self.settings.kafka.topic(CAMPAIGN_MESSAGES))

    def readiness(self) -> Mapping[str, http.ReadinessCheck]:
        """Return the checks /readyz runs."""
        checks: dict[str, http.ReadinessCheck] = {"database": self.read_model.ready}
        if self.publisher is not None:
            checks["broker"] = self.publisher.ready
        return checks


def decision_policy(settings: CampaignSettings) -> DecisionPolicy:
    """Build the decision policy from settings."""
    return DecisionPolicy(
        global_holdout_share=settings.global_holdout_share,
        tier_channels={tier: tuple(chs) for tier, chs in settings.tier_channels.items()},
    )


@asynccontextmanager
async def build(
    settings: CampaignSettings,
    *,
    catalog: CampaignCatalog | None = None,
    clock: Callable[[], datetime] = utc_now,
    consume: bool = True,
) -> AsyncIterator[Container]:
    """Start the service's parts (the consumer and relay only when `consume`) and stop them."""
    catalog = catalog if catalog is not None else load_catalog(settings.campaigns_file)
    engine = create_engine(settings.database, SERVICE)
    tables = campaign_tables()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        await create_tables(engine, tables.metadata, SERVICE, settings.database)
        container = Container(
            settings=settings,
            engine=engine,
            tables=tables,
            catalog=catalog,
            decider=CampaignDecider(catalog, decision_policy(settings), clock),
            read_model=SqlCampaignReadModel(engine, tables),
        )
        if consume:
            await _start_consuming(container, stack)
        yield container


async def _start_consuming(container: Container, stack: AsyncExitStack) -> None:
    kafka = container.settings.kafka
    if kafka.create_topics:
        await ensure_topics(kafka, ALL_TOPICS)
    publisher = KafkaPublisher(kafka)
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    relay = OutboxRelay(
        container.engine, container.tables.outbox, container.tables.inbox, publisher, name=SERVICE
    )
    stack.push_async_callback(http.drain, asyncio.create_task(relay.run(), name="outbox-relay"))
    container.publisher, container.relay = publisher, relay

    profiles, tier_changes = kafka.topic(PROFILES), kafka.topic(TIER_CHANGES)
    processor = BatchProcessor(
        contracts={profiles: ProfileChangedEvent, tier_changes: TierChangedEvent},
        handler=CampaignBatchHandler(container.decider, container.unit_of_work, relay.wake),
        publisher=publisher,
        dead_letter_topic=kafka.topic(CAMPAIGN_DLQ),
        consumer_name=container.settings.consumer_name,
        tombstone_topics=frozenset({profiles}),
    )
    broker = make_broker(kafka)
    subscribe_batch(broker, kafka, [profiles, tier_changes], container.settings.group_id, processor)
    await broker.start()
    stack.push_async_callback(broker.stop)


def create_app(
    settings: CampaignSettings,
    *,
    catalog: CampaignCatalog | None = None,
    clock: Callable[[], datetime] = utc_now,
    consume: bool = True,
) -> FastAPI:
    """Build the HTTP app; its lifespan starts and stops the whole service."""
    keyring = KeyRing.from_settings(settings.auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build(settings, catalog=catalog, clock=clock, consume=consume) as container:
            app.state.container = container
            app.state.read_side = ReadSide(container.catalog, container.read_model)
            try:
                yield
            finally:
                app.state.read_side = None

    def readiness(app: FastAPI) -> Mapping[str, http.ReadinessCheck]:
        container: Container | None = getattr(app.state, "container", None)
        if container is None:
            return {"started": _not_started}
        return container.readiness()

    app = http.create_app(
        title="Clientela campaign",
        description="Turns value-tier moves into next-best-channel campaign messages.",
        lifespan=lifespan,
        readiness=readiness,
    )
    app.include_router(api_router(keyring))
    return app


async def _not_started() -> bool:
    return False
