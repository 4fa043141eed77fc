"""The scoring schema's migrations, on PostgreSQL and SQLite, and what `serve` asks of them."""

from __future__ import annotations

import pytest

from clientela.scoring.config import ScoringSettings
from clientela.scoring.migrations import MIGRATIONS
from clientela.scoring.wiring import build
from clientela.shared.migrations import SchemaNotCurrentError, differences, status, upgrade
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
