"""Inbox and outbox against real PostgreSQL and SQLite, relayed to a real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.shared.codec import OutgoingRecord
from clientela.shared.db import create_engine, create_tables
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.outbox import OutboxRelay, claim_new, inbox_table, outbox_table, stage
from clientela.shared.settings import DatabaseSettings, KafkaSettings

metadata = MetaData()
things = Table("things", metadata, Column("id", String(64), primary_key=True))
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


@pytest.fixture
async def engine(database_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """Return an engine on a private store with the test tables."""
    built = create_engine(database_settings, "sharedtest")
    await create_tables(built, metadata, "sharedtest", database_settings)
    yield built
    await built.dispose()


@pytest.fixture(scope="module")
async def publisher(kafka_settings: KafkaSettings) -> AsyncIterator[KafkaPublisher]:
    """Return a started publisher."""
    built = KafkaPublisher(kafka_settings)
    await built.start()
    yield built
    await built.stop()


async def test_inbox_claims_each_event_id_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await claim_new(conn, inbox, ["e1", "e2", "e1"]) == {"e1", "e2"}
    async with engine.begin() as conn:
        assert await claim_new(conn, inbox, ["e2", "e3"]) == {"e3"}


async def test_a_rolled_back_transaction_leaves_no_state_no_claim_and_no_event(
    engine: AsyncEngine,
) -> None:
    async def crash_mid_transaction() -> None:
        async with engine.begin() as conn:
            await claim_new(conn, inbox, ["e9"])
            await conn.execute(things.insert(), [{"id": "t9"}])
            await stage(conn, outbox, [OutgoingRecord("t", b"k", b"v")])
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await crash_mid_transaction()
    async with engine.begin() as conn:
        assert await claim_new(conn, inbox, ["e9"]) == {"e9"}
        assert (await conn.execute(things.select())).all() == []
        assert (await conn.execute(outbox.select())).all() == []


async def test_relay_publishes_in_order_and_empties_the_outbox(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    topic = f"{kafka_settings.topic_prefix}outbox-{uuid.uuid4().hex[:6]}"
    records = [
        OutgoingRecord(topic, b"same-key", f"v{i}".encode(), [("h", str(i).encode())])
        for i in range(1200)
    ]
    async with engine.begin() as conn:
        await stage(conn, outbox, records)
    name = f"sharedtest-{uuid.uuid4().hex[:6]}"
    relay = OutboxRelay(engine, outbox, inbox, publisher, name=name, batch_size=500)
    assert await relay.pending() == 1200
    assert [await relay.relay_once() for _ in range(4)] == [500, 500, 200, 0]
    assert await relay.pending() == 0
    assert REGISTRY.get_sample_value("clientela_outbox_published_total", {"relay": name}) == 1200

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        async with asyncio.timeout(20):
            while len(seen) < 1200:
                batch = await consumer.getmany(timeout_ms=500)
                seen.extend(r.value for rs in batch.values() for r in rs)
        assert seen == [f"v{i}".encode() for i in range(1200)]
    finally:
        await consumer.stop()


async def test_relay_loop_wakes_on_demand(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    topic = f"{kafka_settings.topic_prefix}outbox-{uuid.uuid4().hex[:6]}"
    name = f"sharedtest-{uuid.uuid4().hex[:6]}"
    relay = OutboxRelay(
        engine, outbox, inbox, publisher, name=name, idle_interval_s=30, pending_sample_s=0
    )
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)
        async with engine.begin() as conn:
            await stage(conn, outbox, [OutgoingRecord(topic, None, b"x")])
        relay.wake()
        async with asyncio.timeout(10):
            while await relay.pending():
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
    # The relay samples what waits after each round: nothing, once it has published.
    assert REGISTRY.get_sample_value("clientela_outbox_pending", {"relay": name}) == 0
    assert REGISTRY.get_sample_value("clientela_outbox_published_total", {"relay": name}) == 1


async def test_unit_of_work_commits_state_claims_and_events_together(
    engine: AsyncEngine, kafka_settings: KafkaSettings
) -> None:
    from clientela.shared.codec import OutgoingEvent
    from clientela.shared.contracts import TouchpointRecorded, topics
    from clientela.shared.outbox import SqlTransaction

    woken: list[bool] = []
    event = TouchpointRecorded.model_validate(
        {
            "source": "t",
            "data": {
                "kind": "web_visit",
                "channel": "web",
                "direction": "inbound",
                "identifiers": {"anonymous_id": "a"},
                "web_visit": {},
            },
        }
    )

    def uow() -> SqlTransaction:
        return SqlTransaction(
            engine,
            inbox=inbox,
            outbox=outbox,
            kafka=kafka_settings,
            on_staged_commit=lambda: woken.append(True),
        )

    async with uow() as first:
        assert await first.claim_new(["u1"]) == {"u1"}
        await first.connection.execute(things.insert(), [{"id": "kept"}])
        await first.stage([OutgoingEvent(topics.TOUCHPOINTS, "k", event)])
        await first.commit()
    assert woken == [True]
    async with uow() as second:  # left without commit: rolled back
        assert await second.claim_new(["u1", "u2"]) == {"u2"}
        await second.stage([OutgoingEvent(topics.TOUCHPOINTS, "k", event)])
    assert woken == [True]
    async with engine.connect() as conn:
        rows = (await conn.execute(outbox.select())).all()
        assert [r.topic for r in rows] == [kafka_settings.topic(topics.TOUCHPOINTS)]
        assert (await conn.execute(things.select())).scalars().all() == ["kept"]
    async with uow() as third:
        assert await third.claim_new(["u2"]) == {"u2"}
