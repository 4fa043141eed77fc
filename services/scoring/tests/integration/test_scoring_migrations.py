"""The scoring schema's migrations, on PostgreSQL and SQLite, and what `serve` asks of them."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from clientela.scoring.adapters.outbound import tables
from clientela.scoring.config import ScoringSettings
from clientela.scoring.migrations import MIGRATIONS
from clientela.scoring.wiring import build
from clientela.shared.db import create_engine, create_tables
from clientela.shared.migrations import SchemaNotCurrentError, differences, status, upgrade
from clientela.shared.outbox import LZ4_AVAILABLE
from clientela.shared.settings import DatabaseSettings, KafkaSettings


async def test_migrating_an_empty_store_twice_builds_exactly_the_tables(
    database_settings: DatabaseSettings,
) -> None:
    (head,) = (await status(database_settings, MIGRATIONS)).heads

    assert await upgrade(database_settings, MIGRATIONS) == (head,)
    assert await upgrade(database_settings, MIGRATIONS) == (head,)

    assert await differences(database_settings, MIGRATIONS) == []


async def test_serve_refuses_an_unmigrated_postgres_schema(
    database_settings: DatabaseSettings,
) -> None:
    if not (database_settings.url or "").startswith("postgresql"):
        pytest.skip("the embedded default migrates itself at start")
    settings = ScoringSettings(database=database_settings, kafka=KafkaSettings(topic_prefix="t."))
    with pytest.raises(SchemaNotCurrentError, match="run `clientela-scoring migrate` first"):
        async with build(settings, start_consumer=False, start_relay=False, start_schedule=False):
            pass


async def _outbox_value_compression(settings: DatabaseSettings) -> str:
    engine = create_engine(settings, tables.SERVICE)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text(
                    "SELECT attcompression::text FROM pg_attribute "
                    "WHERE attrelid = CAST(:table AS regclass) AND attname = 'value'"
                ),
                {"table": f'"{settings.resolved_schema(tables.SERVICE)}".outbox'},
            )
            if not await conn.scalar(text(LZ4_AVAILABLE)):
                pytest.skip("this PostgreSQL was built without lz4")
    finally:
        await engine.dispose()
    return str(found)


async def test_the_outbox_compresses_its_packed_rows_with_lz4_when_migrated_or_created(
    database_settings: DatabaseSettings,
) -> None:
    if not (database_settings.url or "").startswith("postgresql"):
        pytest.skip("a PostgreSQL column setting")
    await upgrade(database_settings, MIGRATIONS)
    assert await _outbox_value_compression(database_settings) == "l"

    created = database_settings.model_copy(
        update={"schema_name": f"{database_settings.resolved_schema(tables.SERVICE)}_created"}
    )
    engine = create_engine(created, tables.SERVICE)
    try:
        await create_tables(engine, tables.metadata, tables.SERVICE, created)
        assert await _outbox_value_compression(created) == "l"
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{created.schema_name}" CASCADE'))
        await engine.dispose()
