"""Migrations of a service's schema on real PostgreSQL and SQLite (the `database_settings` pair).

A toy service gets its revisions written by `revision` (autogenerate) into a temporary
versions directory, so the tests exercise the whole developer and operator path.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.shared.db import UtcDateTime, create_engine, create_tables, is_postgres
from clientela.shared.migrations import (
    Migrations,
    SchemaNotCurrentError,
    differences,
    ensure_current,
    prepare,
    revision,
    status,
    upgrade,
)
from clientela.shared.outbox import inbox_table, outbox_table
from clientela.shared.settings import DatabaseSettings

SERVICE = "toy"


def first_tables() -> MetaData:
    """The toy service's tables in its first release."""
    metadata = MetaData()
    Table(
        "things",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("seen_at", UtcDateTime(), nullable=False, index=True),
    )
    inbox_table(metadata)
    outbox_table(metadata)
    return metadata


def second_tables() -> MetaData:
    """The next release: a nullable column and an index on `things` (an ALTER on SQLite)."""
    metadata = first_tables()
    things = metadata.tables["things"]
    things.append_column(Column("weight", Integer, nullable=True))
    Index("ix_things_weight", things.c.weight)
    return metadata


THINGS = first_tables().tables["things"]


async def add_thing(engine: AsyncEngine) -> None:
    """Store one row (through the Table, so PostgreSQL maps it into the service schema)."""
    async with engine.begin() as conn:
        await conn.execute(
            THINGS.insert(), {"id": "a", "seen_at": datetime(2025, 1, 1, tzinfo=UTC)}
        )


async def count_things(engine: AsyncEngine) -> int:
    """Return how many rows `things` holds."""
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(THINGS)) or 0)


@pytest.fixture
async def toy(tmp_path: Path) -> Migrations:
    """The toy service's migrations, with the first release's revision written."""
    versions = tmp_path / "versions"
    versions.mkdir()
    migrations = Migrations(SERVICE, versions, first_tables)
    await revision(migrations, "initial")
    return migrations


async def next_release(toy: Migrations) -> Migrations:
    """Return the toy's next release: its tables changed and a revision for the change."""
    changed = Migrations(SERVICE, toy.versions, second_tables)
    await revision(changed, "weights")
    return changed


async def test_migrate_from_empty_builds_exactly_the_tables(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    assert await upgrade(database_settings, toy) == ("0001",)
    assert await differences(database_settings, toy) == []
    assert (await status(database_settings, toy)).at_head


async def test_migrating_again_is_a_no_op(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    await upgrade(database_settings, toy)
    engine = create_engine(database_settings, SERVICE)
    try:
        await add_thing(engine)
        assert await upgrade(database_settings, toy) == ("0001",)
        assert await count_things(engine) == 1
    finally:
        await engine.dispose()


async def test_a_later_revision_alters_a_table_that_holds_data(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    await upgrade(database_settings, toy)
    engine = create_engine(database_settings, SERVICE)
    try:
        await add_thing(engine)
        changed = await next_release(toy)
        assert "batch_alter_table" in next(changed.versions.glob("0002_*.py")).read_text()

        assert await upgrade(database_settings, changed) == ("0002",)

        assert await differences(database_settings, changed) == []
        things = second_tables().tables["things"]
        async with engine.connect() as conn:
            rows = (await conn.execute(select(things.c.id, things.c.weight))).all()
        assert [tuple(r) for r in rows] == [("a", None)]
    finally:
        await engine.dispose()


async def test_postgres_keeps_tables_and_version_in_the_service_schema(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    if not (database_settings.url or "").startswith("postgresql"):
        pytest.skip("schemas are a PostgreSQL matter")
    await upgrade(database_settings, toy)
    schema = database_settings.resolved_schema(SERVICE)
    engine = create_engine(database_settings, SERVICE)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names(schema=schema))
            public = await conn.run_sync(lambda c: inspect(c).get_table_names(schema="public"))
    finally:
        await engine.dispose()
    assert set(names) == {"alembic_version", "things", "inbox", "outbox"}
    assert "things" not in public


async def test_serve_migrates_sqlite_but_refuses_an_unmigrated_postgres_schema(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    engine = create_engine(database_settings, SERVICE)
    try:
        if is_postgres(engine):
            with pytest.raises(SchemaNotCurrentError, match="run `clientela-toy migrate` first"):
                await prepare(engine, database_settings, toy)
            await upgrade(database_settings, toy)
        await prepare(engine, database_settings, toy)
    finally:
        await engine.dispose()
    assert (await status(database_settings, toy)).at_head


async def test_a_schema_behind_the_code_is_refused_and_one_ahead_is_accepted(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    await upgrade(database_settings, toy)
    changed = await next_release(toy)
    with pytest.raises(SchemaNotCurrentError, match="at revision 0001 but this release needs 0002"):
        await ensure_current(database_settings, changed)

    # The new release migrated; the previous one (which knows only 0001) still starts.
    await upgrade(database_settings, changed)
    (newer,) = changed.versions.glob("0002_*.py")
    newer.unlink()
    previous = await ensure_current(database_settings, toy)
    assert previous.ahead
    assert previous.current == ("0002",)


async def test_tables_made_before_migrations_are_adopted(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    engine = create_engine(database_settings, SERVICE)
    try:
        await create_tables(engine, first_tables(), SERVICE, database_settings)
        await add_thing(engine)

        assert await upgrade(database_settings, toy) == ("0001",)

        assert await count_things(engine) == 1
    finally:
        await engine.dispose()
    assert await differences(database_settings, toy) == []


async def test_concurrent_migrations_take_turns(
    toy: Migrations, database_settings: DatabaseSettings
) -> None:
    if not (database_settings.url or "").startswith("postgresql"):
        pytest.skip("one process migrates an embedded SQLite file")
    results = await asyncio.gather(*(upgrade(database_settings, toy) for _ in range(3)))
    assert results == [("0001",)] * 3
