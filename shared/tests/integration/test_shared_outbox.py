"""Inbox and outbox against real PostgreSQL and SQLite, relayed to a real broker."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client import REGISTRY
from sqlalchemy import Column, MetaData, String, Table, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.shared.codec import OutgoingEvent, OutgoingRecord
from clientela.shared.contracts import TouchpointRecorded, topics
from clientela.shared.db import create_engine, create_tables, is_postgres
from clientela.shared.kafka import KafkaPublisher, PublishError
from clientela.shared.outbox import (
    PACKED,
    OutboxRelay,
    SqlTransaction,
    claim_new,
    inbox_table,
    outbox_table,
    stage,
    staged_records,
    unstage_keys,
)
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


@pytest.fixture(scope="module", params=["aiokafka", "confluent"])
async def publisher(
    request: pytest.FixtureRequest, kafka_settings: KafkaSettings
) -> AsyncIterator[KafkaPublisher]:
    """Return a started publisher of each client."""
    built = KafkaPublisher(kafka_settings, client=request.param)
    await built.start()
    yield built
    await built.stop()


def a_topic(kafka_settings: KafkaSettings) -> str:
    """Return a topic name private to one test."""
    return f"{kafka_settings.topic_prefix}outbox-{uuid.uuid4().hex[:6]}"


Record = ConsumerRecord[bytes | None, bytes | None]


def a_relay(
    engine: AsyncEngine,
    publisher: KafkaPublisher,
    *,
    batch_size: int = 500,
    idle_interval_s: float = 0.2,
    pending_sample_s: float = 5.0,
    analyze_interval_s: float = 10.0,
) -> OutboxRelay:
    """Return a relay with a name private to one test."""
    name = f"sharedtest-{uuid.uuid4().hex[:6]}"
    return OutboxRelay(
        engine,
        outbox,
        inbox,
        publisher,
        name=name,
        batch_size=batch_size,
        idle_interval_s=idle_interval_s,
        pending_sample_s=pending_sample_s,
        analyze_interval_s=analyze_interval_s,
    )


async def consume(kafka_settings: KafkaSettings, topic: str, count: int) -> list[Record]:
    """Read `count` records of a topic from the start (all partitions, in arrival order)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        seen: list[Record] = []
        async with asyncio.timeout(20):
            while len(seen) < count:
                batch = await consumer.getmany(timeout_ms=500)
                seen.extend(r for rs in batch.values() for r in rs)
        return seen
    finally:
        await consumer.stop()


async def outbox_values(engine: AsyncEngine) -> list[bytes | None]:
    """Return the values of the records waiting in the outbox, in publishing order."""
    async with engine.connect() as conn:
        return [value for _topic, _key, value, _headers in await staged_records(conn, outbox)]


async def test_inbox_claims_each_event_id_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await claim_new(conn, inbox, ["e1", "e2", "e1"]) == {"e1", "e2"}
    async with engine.begin() as conn:
        assert await claim_new(conn, inbox, ["e2", "e3"]) == {"e3"}
        # Now inside a begun transaction (on PostgreSQL: straight on the driver).
        assert await claim_new(conn, inbox, ["e3", "e4", "e4"]) == {"e4"}
        assert await claim_new(conn, inbox, []) == set()
    async with engine.connect() as conn:
        stored = (await conn.scalars(select(inbox.c.event_id))).all()
    assert sorted(stored) == ["e1", "e2", "e3", "e4"]


async def test_a_rolled_back_transaction_leaves_no_state_no_claim_and_no_event(
    engine: AsyncEngine,
) -> None:
    async def crash_mid_transaction() -> None:
        async with engine.begin() as conn:
            await stage(conn, outbox, [OutgoingRecord("t", b"k", b"first")])
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


async def test_staged_records_keep_their_order_bytes_and_headers(engine: AsyncEngine) -> None:
    odd = [("h", b'\x00\xff\xe9 "quoted" \\ end'), ("empty", b"")]
    async with engine.begin() as conn:
        # First statement of the transaction, then later ones (on PostgreSQL: COPY).
        await stage(conn, outbox, [OutgoingRecord("t", b"k", b"0", odd)])
        await stage(conn, outbox, [OutgoingRecord("t", b"k", f"{i}".encode()) for i in (1, 2)])
        await stage(conn, outbox, [OutgoingRecord("t", None, None), OutgoingRecord("u", b"", b"")])
    async with engine.connect() as conn:
        rows = await staged_records(conn, outbox)
        stored = (await conn.execute(select(outbox.c.topic))).scalars().all()
    assert rows == [
        ("t", b"k", b"0", odd),
        ("t", b"k", b"1", []),
        ("t", b"k", b"2", []),
        ("t", None, None, []),
        ("u", b"", b"", []),
    ]
    # One row per staging call, whatever the number of records it holds.
    assert stored == [PACKED, PACKED, PACKED]


async def test_unstaging_keys_withdraws_only_their_records(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await stage(
            conn, outbox, [OutgoingRecord("t", b"gone", b"1"), OutgoingRecord("t", b"k", b"2")]
        )
        await stage(conn, outbox, [OutgoingRecord("t", b"gone", b"3")])
        await stage(conn, outbox, [OutgoingRecord("t", b"other", b"4")])
    async with engine.begin() as conn:
        assert await unstage_keys(conn, outbox, {b"gone", b"absent"}) == 2
        assert await unstage_keys(conn, outbox, set()) == 0
    async with engine.connect() as conn:
        assert await staged_records(conn, outbox) == [
            ("t", b"k", b"2", []),
            ("t", b"other", b"4", []),
        ]
        # A row left with nothing to publish is gone, not kept empty.
        assert len((await conn.execute(outbox.select())).all()) == 2


async def test_relay_publishes_in_order_and_empties_the_outbox(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    topic = a_topic(kafka_settings)
    records = [
        OutgoingRecord(topic, b"same-key", f"v{i}".encode(), [("h", str(i).encode())])
        for i in range(1200)
    ]
    async with engine.begin() as conn:
        await stage(conn, outbox, records[:700])
        await stage(conn, outbox, records[700:1000])
        await stage(conn, outbox, records[1000:])
    # A row per staging: the relay claims two rows at a time, whatever they hold.
    relay = a_relay(engine, publisher, batch_size=2)
    assert await relay.pending() == 1200
    assert [await relay.relay_once() for _ in range(3)] == [1000, 200, 0]
    assert await relay.pending() == 0
    published = REGISTRY.get_sample_value(
        "clientela_outbox_published_total", {"relay": relay._name}
    )
    assert published == 1200

    seen = await consume(kafka_settings, topic, 1200)
    assert [r.value for r in seen] == [f"v{i}".encode() for i in range(1200)]
    assert [r.headers for r in seen[:2]] == [(("h", b"0"),), (("h", b"1"),)]


async def test_relay_publishes_single_record_rows_in_order_with_packed_ones(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    # Rows of one record each (the layout before packing) still wait in upgraded stores.
    topic = a_topic(kafka_settings)
    async with engine.begin() as conn:
        await conn.execute(
            outbox.insert(),
            [{"topic": topic, "key": b"k", "value": b"old", "headers": [["h", "\u00ff"]]}],
        )
        await stage(conn, outbox, [OutgoingRecord(topic, b"k", b"new")])
    relay = a_relay(engine, publisher)
    assert await relay.pending() == 2
    assert await relay.relay_once() == 2
    seen = await consume(kafka_settings, topic, 2)
    assert [(r.value, list(r.headers)) for r in seen] == [(b"old", [("h", b"\xff")]), (b"new", [])]


async def test_relay_publishes_tombstones_and_odd_header_bytes(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    topic = a_topic(kafka_settings)
    odd = [("h", b"\x00\xff\xe9")]
    async with engine.begin() as conn:
        await stage(conn, outbox, [OutgoingRecord(topic, b"k", b"v", odd)])
        await stage(conn, outbox, [OutgoingRecord(topic, b"k", None)])
    assert await a_relay(engine, publisher).relay_once() == 2
    seen = await consume(kafka_settings, topic, 2)
    assert [(r.key, r.value, list(r.headers)) for r in seen] == [
        (b"k", b"v", odd),
        (b"k", None, []),
    ]


async def test_a_failed_publish_keeps_the_rows_for_the_next_round(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    topic = a_topic(kafka_settings)
    async with engine.begin() as conn:
        await stage(conn, outbox, [OutgoingRecord(topic, b"k", f"{i}".encode()) for i in range(3)])
    stopped = KafkaPublisher(kafka_settings, client=publisher.client)  # never started
    with pytest.raises(PublishError):
        await a_relay(engine, stopped).relay_once()
    assert await outbox_values(engine) == [b"0", b"1", b"2"]
    assert await a_relay(engine, publisher).relay_once() == 3
    assert [r.value for r in await consume(kafka_settings, topic, 3)] == [b"0", b"1", b"2"]


async def test_a_relay_cancelled_mid_publish_keeps_the_rows(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    topic = a_topic(kafka_settings)
    async with engine.begin() as conn:
        await stage(conn, outbox, [OutgoingRecord(topic, b"k", b"x")])
    relay = a_relay(engine, publisher, idle_interval_s=30)
    started = asyncio.Event()

    class Hanging:
        """A broker that never acknowledges (the process dies before the acks)."""

        async def publish_rows(self, rows: object) -> None:
            started.set()
            await asyncio.Event().wait()

    relay._publisher = Hanging()  # type: ignore[assignment]
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await outbox_values(engine) == [b"x"]
    # The kept connection went back (or was dropped): nothing stays checked out.
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    relay._publisher = publisher
    assert await relay.relay_once() == 1
    assert await outbox_values(engine) == []


async def test_one_relay_per_service_publishes_at_a_time(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    if not is_postgres(engine):
        pytest.skip("the advisory lock is PostgreSQL's; SQLite has one writer anyway")
    topic = a_topic(kafka_settings)
    async with engine.begin() as conn:
        await stage(conn, outbox, [OutgoingRecord(topic, b"k", b"x")])
    relay = a_relay(engine, publisher)
    # Another replica of the same service holds the lock mid-batch.
    async with engine.begin() as other:
        lock = zlib.crc32(f"clientela-outbox-{relay._name}".encode())
        assert await other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock})
        assert await relay.relay_once() == 0
        assert await outbox_values(engine) == [b"x"]
    assert await relay.relay_once() == 1


async def test_relay_loop_wakes_on_demand_and_returns_its_connection(
    engine: AsyncEngine, publisher: KafkaPublisher, kafka_settings: KafkaSettings
) -> None:
    topic = a_topic(kafka_settings)
    relay = a_relay(engine, publisher, idle_interval_s=30, pending_sample_s=0)
    task = asyncio.create_task(relay.run())
    try:
        for round_ in range(2):
            await asyncio.sleep(0.2)
            async with engine.begin() as conn:
                await stage(conn, outbox, [OutgoingRecord(topic, b"k", f"{round_}".encode())])
            relay.wake()
            async with asyncio.timeout(10):
                while await relay.pending():
                    await asyncio.sleep(0.05)
        # Beside the loop, a caller may drain too (e.g. before the process exits).
        assert await relay.relay_once() == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # The relay samples what waits after each round: nothing, once it has published.
    assert REGISTRY.get_sample_value("clientela_outbox_pending", {"relay": relay._name}) == 0
    published = REGISTRY.get_sample_value(
        "clientela_outbox_published_total", {"relay": relay._name}
    )
    assert published == 2
    assert [r.value for r in await consume(kafka_settings, topic, 2)] == [b"0", b"1"]


async def test_relay_analyzes_the_tables_that_outgrew_their_statistics(
    engine: AsyncEngine, publisher: KafkaPublisher
) -> None:
    if not is_postgres(engine):
        pytest.skip("statistics are PostgreSQL's")
    async with engine.begin() as conn:
        await conn.execute(things.insert(), [{"id": f"t{i}"} for i in range(3000)])
    relay = a_relay(engine, publisher, idle_interval_s=0.05, analyze_interval_s=0.1)
    schema = engine.get_execution_options()["schema_translate_map"][None]
    analyzed = text(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = :schema "
        "AND last_analyze IS NOT NULL"
    ).bindparams(schema=schema)
    task = asyncio.create_task(relay.run())
    try:
        # Counters reach the statistics views within a second or so of the commit.
        async with asyncio.timeout(15):
            while True:
                async with engine.connect() as conn:
                    done = set((await conn.scalars(analyzed)).all())
                if "things" in done:
                    break
                await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The outbox and inbox hardly changed: their statistics were left to autovacuum.
    assert done == {"things"}
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def touchpoint() -> TouchpointRecorded:
    """Return a small valid event."""
    return TouchpointRecorded.model_validate(
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


async def test_unit_of_work_commits_state_claims_and_events_together(
    engine: AsyncEngine, kafka_settings: KafkaSettings
) -> None:
    woken: list[bool] = []
    event = touchpoint()

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
        rows = await staged_records(conn, outbox)
        assert [r[0] for r in rows] == [kafka_settings.topic(topics.TOUCHPOINTS)]
        assert (await conn.execute(things.select())).scalars().all() == ["kept"]
    async with uow() as third:
        assert await third.claim_new(["u2"]) == {"u2"}
    async with uow() as nothing_staged:
        await nothing_staged.commit()
    assert woken == [True]


async def test_unit_of_work_stages_tombstones_and_built_records(
    engine: AsyncEngine, kafka_settings: KafkaSettings
) -> None:
    woken: list[bool] = []
    uow = SqlTransaction(
        engine,
        inbox=inbox,
        outbox=outbox,
        kafka=kafka_settings,
        on_staged_commit=lambda: woken.append(True),
    )
    async with uow:
        await uow.stage_tombstones(topics.PROFILES, ["p1", "p2"])
        await uow.stage_records([OutgoingRecord("raw", b"k", b"v", [("h", b"1")])])
        await uow.commit()
    assert woken == [True]
    async with uow:  # a subclass that wrote outbox rows by its own means
        uow.count_staged(1)
        await uow.commit()
    assert woken == [True, True]
    async with engine.connect() as conn:
        rows = await staged_records(conn, outbox)
    profiles = kafka_settings.topic(topics.PROFILES)
    assert rows == [
        (profiles, b"p1", None, []),
        (profiles, b"p2", None, []),
        ("raw", b"k", b"v", [("h", b"1")]),
    ]
