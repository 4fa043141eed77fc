"""The read model's tables on SQLite and PostgreSQL, and its consumer on the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from clientela.console.adapters.outbound import tables
from clientela.console.adapters.outbound.sql_read_model import SqlReadModel
from clientela.console.application.projection import (
    Changes,
    MergeRecord,
    ProfileRecord,
    ScoreRecord,
    TierMoveRecord,
)
from clientela.console.config import ConsoleSettings
from clientela.console.wiring import build
from clientela.shared.codec import to_record
from clientela.shared.contracts import TierChanged, TierChangedEvent
from clientela.shared.contracts.topics import TIER_CHANGES
from clientela.shared.db import create_engine, create_tables
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.settings import DatabaseSettings, KafkaSettings

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
async def read_model(database_settings: DatabaseSettings) -> AsyncIterator[SqlReadModel]:
    """Return the read model on a fresh store (each dialect)."""
    engine = create_engine(database_settings, tables.SERVICE)
    await create_tables(engine, tables.metadata, tables.SERVICE, database_settings)
    try:
        yield SqlReadModel(engine)
    finally:
        await engine.dispose()


def score(pid: str, version: int, tier: str, value: float, at: datetime = T0) -> ScoreRecord:
    """Return a score record."""
    return ScoreRecord(pid, version, tier, value, "relational", "customer", at)


def tier_move(n: int, pid: str, src: str | None, dst: str, at: datetime) -> TierMoveRecord:
    """Return a tier move record."""
    return TierMoveRecord(f"e{n}", pid, src, dst, "up", 1.0, at)


async def test_changes_apply_idempotently_with_version_guards(read_model: SqlReadModel) -> None:
    first = Changes(
        tier_moves=[tier_move(1, "p1", None, "C", T0), tier_move(2, "p1", "C", "B", T0)],
        scores={"p1": score("p1", 2, "B", 50.0), "p2": score("p2", 1, "A", 900.0)},
        profiles={
            "p1": ProfileRecord("p1", 2, "customer", "web", {"web": 3, "email": 1}),
            "p2": ProfileRecord("p2", 1, "customer", "branch", {"branch": 2}),
        },
    )
    await read_model.apply(first)
    await read_model.apply(first)  # a redelivery changes nothing
    stale = Changes(
        scores={"p1": score("p1", 1, "C", 5.0)},
        profiles={"p1": ProfileRecord("p1", 1, "prospect", None, {"web": 1})},
    )
    await read_model.apply(stale)
    assert [m.to_tier for m in await read_model.tier_history("p1")] == ["C", "B"]
    top = await read_model.top_profiles(5)
    assert [(p.profile_id, p.tier) for p in top] == [("p2", "A"), ("p1", "B")]
    assert await read_model.channel_mix() == {
        "A": {"branch": 2.0},
        "B": {"web": 3.0, "email": 1.0},
    }
    assert await read_model.preferred_channels() == {"A": {"branch": 1.0}, "B": {"web": 1.0}}
    # A sweep re-announces the same profile version with a new tier later: it wins.
    await read_model.apply(
        Changes(scores={"p1": score("p1", 2, "A", 80.0, T0 + timedelta(minutes=1))})
    )
    assert (await read_model.top_profiles(5))[1].tier == "A"
    status = await read_model.status()
    assert (status.tier_moves, status.scored_profiles, status.profiles) == (2, 2, 2)


async def test_moves_are_counted_per_period(read_model: SqlReadModel) -> None:
    moves = [
        tier_move(1, "p1", "C", "B", T0),
        tier_move(2, "p2", "C", "B", T0 + timedelta(seconds=30)),
        tier_move(3, "p3", "B", "A", T0 + timedelta(minutes=5)),
    ]
    await read_model.apply(Changes(tier_moves=moves))
    assert await read_model.move_span() == (T0, T0 + timedelta(minutes=5))
    counts = await read_model.move_counts(60, T0)
    assert sorted((c.period_start, c.from_tier, c.to_tier, c.count) for c in counts) == [
        (T0, "C", "B", 2),
        (T0 + timedelta(minutes=5), "B", "A", 1),
    ]


async def test_merges_and_erasures_retire_profiles(read_model: SqlReadModel) -> None:
    await read_model.apply(
        Changes(
            tier_moves=[tier_move(1, "p2", None, "C", T0), tier_move(2, "p3", None, "B", T0)],
            scores={"p2": score("p2", 1, "C", 5.0), "p3": score("p3", 1, "B", 50.0)},
        )
    )
    merge = MergeRecord("m1", "p1", "p2", "rule", ["email"], ["f" * 64], T0)
    await read_model.apply(Changes(merges=[merge], merged_away={"p2"}, erased={"p3"}))
    # Late events about retired profiles are ignored.
    await read_model.apply(Changes(scores={"p2": score("p2", 2, "B", 60.0)}))
    assert await read_model.top_profiles(5) == []
    assert [m.merged_id for m in await read_model.merges("p1")] == ["p2"]
    assert [m.survivor_id for m in await read_model.merges("p2")] == ["p1"]
    assert len(await read_model.tier_history("p2")) == 1  # the merged id's history stays
    assert await read_model.tier_history("p3") == []  # an erased one's does not


async def test_the_consumer_fills_the_read_model_from_the_topic(
    kafka_settings: KafkaSettings, tmp_path: object
) -> None:
    kafka = kafka_settings.model_copy(
        update={"topic_prefix": f"{kafka_settings.topic_prefix}rm{uuid.uuid4().hex[:6]}."}
    )
    settings = ConsoleSettings(
        kafka=kafka,
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/console.db"),
        group_id=f"console-test-{uuid.uuid4().hex[:6]}",
    )
    event = TierChangedEvent(
        occurred_at=T0,
        source="scoring",
        data=TierChanged(
            profile_id="p9",
            profile_version=1,
            from_tier=None,
            to_tier="A",
            move="entered",
            lifecycle="customer",
            predicted_value=10,
            model_version="m",
        ),
    )
    async with build(settings) as container:
        publisher = KafkaPublisher(kafka)
        await publisher.start()
        try:
            await publisher.publish([to_record(kafka.topic(TIER_CHANGES), "p9", event)])
        finally:
            await publisher.stop()
        assert container.read_model is not None
        deadline = time.monotonic() + 30
        while not await container.read_model.tier_history("p9"):
            assert time.monotonic() < deadline, "the tier move never reached the read model"
            await asyncio.sleep(0.2)
