"""Builds the campaign service: storage, ledger, consumer, relay, sweeps and the HTTP app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.campaign.adapters.inbound.http_routes import ApiSide, api_router
from clientela.campaign.adapters.inbound.kafka_translator import batch_processor
from clientela.campaign.adapters.inbound.wire import Item
from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.adapters.outbound.contact_ledger import (
    MemoryContactLedger,
    RedisContactLedger,
)
from clientela.campaign.adapters.outbound.sql_campaign_store import SqlCampaignStore
from clientela.campaign.adapters.outbound.sql_read_model import SqlCampaignReadModel
from clientela.campaign.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.campaign.adapters.outbound.tables import CampaignTables, campaign_tables
from clientela.campaign.application.catalog import LiveCatalog, seed_from_file
from clientela.campaign.application.decide_campaigns import CampaignDecider, ResponseSettings
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.catalog import CampaignCatalog
from clientela.campaign.migrations import MIGRATIONS
from clientela.shared import http
from clientela.shared.auth import KeyRing
from clientela.shared.consumer import BatchProcessor
from clientela.shared.contracts import (
    ALL_TOPICS,
    ProfileChangedEvent,
    ProfileErasedEvent,
    ProfilesMergedEvent,
    ScoresUpdatedEvent,
    TierChangedEvent,
    TouchpointRecorded,
    utc_now,
)
from clientela.shared.contracts.topics import (
    CAMPAIGN_DLQ,
    PROFILE_ERASURES,
    PROFILE_MERGES,
    PROFILES,
    SCORES,
    TIER_CHANGES,
    TOUCHPOINTS,
)
from clientela.shared.db import create_engine
from clientela.shared.kafka import (
    KafkaPublisher,
    ensure_topics,
    make_broker,
    subscribe_batch,
)
from clientela.shared.migrations import prepare
from clientela.shared.outbox import OutboxRelay

log = logging.getLogger(__name__)

TRIGGERS_EXPIRED = Counter(
    "clientela_campaign_triggers_expired",
    "Triggers dropped because their profile data did not arrive within CAMPAIGN_TRIGGER_TTL_HOURS",
)

SERVICE = CampaignSettings.service_name

Ledger = MemoryContactLedger | RedisContactLedger

# Each consumed topic and the event type read there.
CONSUMED_TOPICS = {
    PROFILES: ProfileChangedEvent.EVENT_TYPE,
    SCORES: ScoresUpdatedEvent.EVENT_TYPE,
    TIER_CHANGES: TierChangedEvent.EVENT_TYPE,
    TOUCHPOINTS: TouchpointRecorded.EVENT_TYPE,
    PROFILE_ERASURES: ProfileErasedEvent.EVENT_TYPE,
    PROFILE_MERGES: ProfilesMergedEvent.EVENT_TYPE,
}


@dataclass(slots=True)
class Container:
    """Everything the running service holds; built and torn down by `build`."""

    settings: CampaignSettings
    engine: AsyncEngine
    tables: CampaignTables
    catalog: LiveCatalog
    store: SqlCampaignStore
    ledger: Ledger
    decider: CampaignDecider
    read_model: SqlCampaignReadModel
    publisher: KafkaPublisher | None = None
    relay: OutboxRelay | None = None

    def unit_of_work(self) -> SqlUnitOfWork:
        """Return a fresh unit of work over the service's tables."""
        wake = self.relay.wake if self.relay is not None else None
        schema = self.settings.database.resolved_schema(SERVICE)
        return SqlUnitOfWork(self.engine, self.tables, self.settings.kafka, wake, schema)

    async def sweep(self) -> None:
        """Run the periodic sweep and count the triggers it dropped."""
        outcome = await self.decider.sweep(self.unit_of_work())
        if outcome.expired:
            TRIGGERS_EXPIRED.inc(outcome.expired)

    def readiness(self) -> Mapping[str, http.ReadinessCheck]:
        """Return the checks /readyz runs."""
        checks: dict[str, http.ReadinessCheck] = {"database": self.read_model.ready}
        if isinstance(self.ledger, RedisContactLedger):
            checks["cache"] = self.ledger.ping
        if self.publisher is not None:
            checks["broker"] = self.publisher.ready
        return checks


def make_ledger(settings: CampaignSettings) -> Ledger:
    """Build the contact ledger the cache settings select (Redis, or in process)."""
    url = settings.cache.url
    if url.startswith("memory://"):
        return MemoryContactLedger()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisContactLedger(url, settings.cache.key_prefix)
    raise ValueError(f"unsupported cache url {url!r}: use memory:// or redis://")


@asynccontextmanager
async def build(
    settings: CampaignSettings,
    *,
    catalog: CampaignCatalog | None = None,
    clock: Callable[[], datetime] = utc_now,
    consume: bool = True,
    ledger: Ledger | None = None,
) -> AsyncIterator[Container]:
    """Start the service's parts (consumer, relay and sweeps only when `consume`); stop them."""
    file_catalog = catalog if catalog is not None else load_catalog(settings.campaigns_file)
    engine = create_engine(settings.database, SERVICE)
    tables = campaign_tables()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        # SQLite (embedded) is migrated here; PostgreSQL must be at head (`migrate` ran).
        await prepare(engine, settings.database, MIGRATIONS)
        store = SqlCampaignStore(engine, tables)
        live = LiveCatalog(file_catalog)
        await seed_from_file(store, live, list(file_catalog))
        if ledger is None:
            ledger = make_ledger(settings)
            stack.push_async_callback(ledger.close)
        container = Container(
            settings=settings,
            engine=engine,
            tables=tables,
            catalog=live,
            store=store,
            ledger=ledger,
            decider=CampaignDecider(
                live,
                settings.decision_policy(),
                ledger,
                clock,
                ResponseSettings(settings.attribution_window, settings.high_potential_threshold),
                settings.view_settings(),
            ),
            read_model=SqlCampaignReadModel(engine, tables),
        )
        _every(stack, "catalog-refresh", settings.catalog_refresh_s, lambda: live.refresh(store))
        if consume:
            await _start_consuming(container, stack)
            _every(stack, "campaign-sweep", settings.sweep_interval_s, container.sweep)
        yield container


def _every(
    stack: AsyncExitStack, name: str, interval_s: float, job: Callable[[], Awaitable[object]]
) -> None:
    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; retrying in %.0fs", name, interval_s)

    stack.push_async_callback(http.drain, asyncio.create_task(loop(), name=name))


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

    processor = batch_consumer(container, publisher)
    broker = make_broker(kafka)
    subscribe_batch(
        broker,
        kafka.model_copy(update={"max_poll_records": container.settings.max_poll_records}),
        [kafka.topic(t) for t in CONSUMED_TOPICS],
        container.settings.group_id,
        processor,
    )
    await broker.start()
    stack.push_async_callback(broker.stop)


def batch_consumer(container: Container, publisher: KafkaPublisher) -> BatchProcessor[Item]:
    """Return what the subscriber calls with each record batch (the benchmark calls it too)."""
    kafka = container.settings.kafka
    return batch_processor(
        container.decider,
        container.unit_of_work,
        topics={kafka.topic(spec): event_type for spec, event_type in CONSUMED_TOPICS.items()},
        publisher=publisher,
        dead_letter_topic=kafka.topic(CAMPAIGN_DLQ),
        consumer_name=container.settings.consumer_name,
    )


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
            app.state.api_side = ApiSide(
                container.catalog,
                container.store,
                container.read_model,
                settings.decision_policy().economics,
            )
            try:
                yield
            finally:
                app.state.api_side = None

    def readiness(app: FastAPI) -> Mapping[str, http.ReadinessCheck]:
        container: Container | None = getattr(app.state, "container", None)
        if container is None:
            return {"started": _not_started}
        return container.readiness()

    app = http.create_app(
        title="Clientela campaign",
        description="Next-best-channel campaign messages that learn, respect people, prove ROI.",
        lifespan=lifespan,
        readiness=readiness,
        auth=settings.auth,
    )
    app.include_router(api_router(keyring))
    return app


async def _not_started() -> bool:
    return False
