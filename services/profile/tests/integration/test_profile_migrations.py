"""The profile schema's migrations, on PostgreSQL and SQLite, and what `serve` asks of them."""

from __future__ import annotations

import uuid

import pytest

from clientela.profile.config import ProfileSettings
from clientela.profile.migrations import MIGRATIONS
from clientela.profile.wiring import build
from clientela.shared.migrations import SchemaNotCurrentError, differences, status, upgrade
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
