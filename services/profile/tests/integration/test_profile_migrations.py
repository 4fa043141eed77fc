"""The profile schema's migrations, on PostgreSQL and SQLite, and what `serve` asks of them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.profile.config import ProfileSettings
from clientela.profile.migrations import MIGRATIONS
from clientela.profile.wiring import build
from clientela.shared.codec import OutgoingRecord
from clientela.shared.migrations import SchemaNotCurrentError, differences, status, upgrade
from clientela.shared.outbox import staged_records
from clientela.shared.settings import DatabaseSettings, KafkaSettings
from clientela.shared.testing import drop_schema


async def test_the_migrated_schema_is_exactly_the_tables_and_migrating_again_changes_nothing(
    database_settings: DatabaseSettings,  # migrated by this directory's conftest
) -> None:
    (head,) = (await status(database_settings, MIGRATIONS)).heads

    assert await upgrade(database_settings, MIGRATIONS) == (head,)

    assert await differences(database_settings, MIGRATIONS) == []


async def test_serve_refuses_an_unmigrated_postgres_schema(postgres_url: str, run_id: str) -> None:
    empty = DatabaseSettings(url=postgres_url, schema_name=f"t_{run_id}_{uuid.uuid4().hex[:8]}")
    settings = ProfileSettings(database=empty, kafka=KafkaSettings(create_topics=False))
    try:
        with pytest.raises(SchemaNotCurrentError, match="run `clientela-profile migrate` first"):
            async with build(settings, consume=False):
                pass
    finally:
        await drop_schema(postgres_url, empty.resolved_schema("profile"))


async def test_the_outbox_compresses_its_packed_rows_with_lz4_where_postgres_has_it(
    engine: AsyncEngine, database_settings: DatabaseSettings
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("column compression is PostgreSQL's")
    schema = database_settings.resolved_schema("profile")
    async with engine.connect() as conn:
        has_lz4 = await conn.scalar(
            text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            )
        )
        method = await conn.scalar(
            text(
                "SELECT a.attcompression::text FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = 'outbox' AND a.attname = 'value'"
            ),
            {"schema": schema},
        )
    assert method == ("l" if has_lz4 else "")
    # A packed row large enough to be compressed reads back as written.
    records = [
        OutgoingRecord(
            topic="t", key=f"k{n}".encode(), value=b'{"n": %d, "pad": "%s"}' % (n, b"x" * 200)
        )
        for n in range(200)
    ]
    uow = SqlUnitOfWork(engine, KafkaSettings())
    async with uow:
        await uow.stage_records(records)
        await uow.commit()
    async with engine.connect() as conn:
        staged = await staged_records(conn, tables.outbox)
    assert [(r.key, r.value) for r in staged] == [(r.key, r.value) for r in records]
