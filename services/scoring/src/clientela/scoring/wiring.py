"""Builds the scoring service: engine, publisher, consumer, relay, schedule and the HTTP app."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.scoring.adapters.inbound.http import build_router
from clientela.scoring.adapters.inbound.kafka import batch_processor
from clientela.scoring.adapters.outbound import tables
from clientela.scoring.adapters.outbound.sql_reader import SqlScoreReader
from clientela.scoring.adapters.outbound.sql_unit_of_work import (
    DEVELOPMENT_MARKER_KEY,
    SqlScoringUnitOfWork,
)
from clientela.scoring.application.refit import FitPolicy
from clientela.scoring.application.scorer import ScoringPolicy
from clientela.scoring.application.service import ScoringApplication, ScoringConfig
from clientela.scoring.config import ScoringSettings
from clientela.scoring.domain.relationship import RiskPolicy
from clientela.scoring.domain.tiers import TieringPolicy
from clientela.scoring.migrations import MIGRATIONS
from clientela.shared import http
from clientela.shared.auth import KeyRing
from clientela.shared.contracts import (
    ALL_TOPICS,
    utc_now,
)
from clientela.shared.contracts.topics import PROFILE_ERASURES, PROFILES, SCORING_DLQ
from clientela.shared.db import create_engine
from clientela.shared.kafka import (
    Consumers,
    KafkaPublisher,
    ensure_topics,
    make_broker,
    subscribe_batch,
)
from clientela.shared.migrations import prepare
from clientela.shared.outbox import OutboxRelay

log = logging.getLogger(__name__)


def scoring_config(settings: ScoringSettings) -> ScoringConfig:
    """Return the use cases' configuration from the service settings."""
    return ScoringConfig(
        tiering=TieringPolicy(
            a_share=settings.a_share, b_share=settings.b_share, hysteresis=settings.hysteresis
        ),
        scoring=ScoringPolicy(
            horizon_weeks=settings.horizon_weeks,
            risk=RiskPolicy(
                at_risk_probability_alive=settings.at_risk_probability_alive,
                gross_margin=settings.gross_margin,
            ),
        ),
        fit=FitPolicy(
            min_customers=settings.fit_min_customers,
            min_repeat_customers=settings.fit_min_repeat_customers,
            sample_size=settings.fit_sample_size,
        ),
        half_life_days=settings.half_life_days,
        rfm_groups=settings.rfm_groups,
        cutoff_refresh_s=settings.cutoff_refresh_s,
        sweep_chunk=settings.sweep_chunk,
    )


@dataclass(slots=True)
class Container:
    """The running parts of the service."""

    settings: ScoringSettings
    engine: AsyncEngine
    publisher: KafkaPublisher
    relay: OutboxRelay
    broker: Consumers | None
    reader: SqlScoreReader
    app: ScoringApplication

    def unit_of_work(self) -> SqlScoringUnitOfWork:
        """Return a fresh unit of work (its commit wakes the relay)."""
        return SqlScoringUnitOfWork(
            self.engine, self.settings.kafka, self.relay.wake, marker_key=marker_key(self.settings)
        )


def marker_key(settings: ScoringSettings) -> bytes:
    """Return the key of the erased-profile markers (a development key when none is set)."""
    if settings.erasure_key is None:
        return DEVELOPMENT_MARKER_KEY
    return settings.erasure_key.get_secret_value().encode()


@asynccontextmanager
async def build(
    settings: ScoringSettings,
    *,
    start_consumer: bool = True,
    start_relay: bool = True,
    start_schedule: bool = True,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[Container]:
    """Start everything the service runs, and stop it all on exit."""
    async with AsyncExitStack() as stack:
        engine = create_engine(settings.database, tables.SERVICE)
        stack.push_async_callback(engine.dispose)
        # SQLite (embedded) is migrated here; PostgreSQL must be at head (`migrate` ran).
        await prepare(engine, settings.database, MIGRATIONS)
        if settings.kafka.create_topics:
            await ensure_topics(settings.kafka, ALL_TOPICS)

        publisher = KafkaPublisher(settings.kafka)
        await publisher.start()
        stack.push_async_callback(publisher.stop)

        relay = OutboxRelay(
            engine,
            tables.outbox,
            tables.inbox,
            publisher,
            name=tables.SERVICE,
            batch_size=settings.outbox_batch_size,
        )
        if start_relay:
            relay_task = asyncio.create_task(relay.run(), name="scoring-outbox-relay")
            stack.push_async_callback(http.drain, relay_task)

        key = marker_key(settings)
        if settings.erasure_key is None and settings.auth.environment == "production":
            log.warning(
                "SCORING_ERASURE_KEY is not set: erased-profile markers use the "
                "development key, so whoever holds a profile id could tell it was erased"
            )

        def unit_of_work() -> SqlScoringUnitOfWork:
            return SqlScoringUnitOfWork(engine, settings.kafka, relay.wake, marker_key=key)

        application = ScoringApplication(scoring_config(settings), unit_of_work, clock)
        await application.load()
        # What start-up built (the population above all) lives as long as the process: keep
        # it out of the collector's full passes, which otherwise stall a batch for as long as
        # it takes to walk the whole heap.
        gc.collect()
        gc.freeze()
        container = Container(
            settings=settings,
            engine=engine,
            publisher=publisher,
            relay=relay,
            broker=None,
            reader=SqlScoreReader(engine),
            app=application,
        )
        if start_schedule:
            schedule = asyncio.create_task(
                application.run_schedule(settings.sweep_interval_s, settings.refit_interval_s),
                name="scoring-schedule",
            )
            stack.push_async_callback(http.drain, schedule)
        if start_consumer:
            broker = container.broker = make_broker(settings.kafka)
            profiles, erasures = (
                settings.kafka.topic(PROFILES),
                settings.kafka.topic(PROFILE_ERASURES),
            )
            processor = batch_processor(
                application.score_profiles,
                application.erase_profiles,
                unit_of_work,
                profiles_topic=profiles,
                erasures_topic=erasures,
                publisher=publisher,
                dead_letter_topic=settings.kafka.topic(SCORING_DLQ),
                consumer_name=settings.group_id,
            )
            subscribe_batch(
                broker, settings.kafka, [profiles, erasures], settings.group_id, processor
            )
            await broker.start()
            stack.push_async_callback(broker.stop)
        log.info("scoring started (model %s)", application.models.model.model_version)
        yield container


def create_app(settings: ScoringSettings) -> FastAPI:
    """Return the FastAPI app; its lifespan starts and stops the whole service."""
    keyring = KeyRing.from_settings(settings.auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build(settings) as container:
            app.state.container = container
            app.state.api = container.app
            app.state.reader = container.reader
            yield

    def readiness(app: FastAPI) -> dict[str, http.ReadinessCheck]:
        container: Container | None = getattr(app.state, "container", None)
        if container is None:
            return {"started": _false}
        return {"database": container.reader.ping, "broker": container.publisher.ready}

    app = http.create_app(
        title="Clientela scoring",
        description="Predicted lifetime value, A/B/C/P tiers, RFM, segments and potential.",
        lifespan=lifespan,
        readiness=readiness,
        auth=settings.auth,
    )
    app.include_router(build_router(keyring))
    return app


async def _false() -> bool:
    return False
