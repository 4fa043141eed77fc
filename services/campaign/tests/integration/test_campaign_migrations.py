"""The campaign schema's migrations, on PostgreSQL and SQLite, and what `serve` asks of them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from clientela.campaign.config import CampaignSettings
from clientela.campaign.migrations import MIGRATIONS
from clientela.campaign.wiring import SERVICE, build
from clientela.shared.db import create_engine
from clientela.shared.migrations import SchemaNotCurrentError, differences, status, upgrade
from clientela.shared.outbox import LZ4_AVAILABLE
from clientela.shared.settings import DatabaseSettings, KafkaSettings
from clientela.shared.testing import drop_schema


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_store(
    request: pytest.FixtureRequest, tmp_path: Path, run_id: str
) -> AsyncIterator[DatabaseSettings]:
    """A store nothing was migrated into (this directory's `database_settings` is migrated)."""
    if request.param == "sqlite":
        yield DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'campaign.db'}")
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = f"t_{run_id}_mig_{uuid.uuid4().hex[:8]}"
    yield DatabaseSettings(url=url, schema_name=schema, pool_size=2)
    await drop_schema(url, schema)


async def test_migrating_an_empty_store_builds_exactly_the_service_tables(
    empty_store: DatabaseSettings,
) -> None:
    (head,) = (await status(empty_store, MIGRATIONS)).heads

    assert await upgrade(empty_store, MIGRATIONS) == (head,)

    assert await differences(empty_store, MIGRATIONS) == []


async def test_migrating_twice_is_a_no_op(empty_store: DatabaseSettings) -> None:
    first = await upgrade(empty_store, MIGRATIONS)
    assert await upgrade(empty_store, MIGRATIONS) == first
    assert await differences(empty_store, MIGRATIONS) == []


async def test_serve_refuses_an_unmigrated_postgres_schema(empty_store: DatabaseSettings) -> None:
    settings = CampaignSettings(database=empty_store, kafka=KafkaSettings(topic_prefix="t."))
    if not (empty_store.url or "").startswith("postgresql"):
        # The embedded default migrates itself at start.
        async with build(settings, consume=False):
            pass
        assert (await status(empty_store, MIGRATIONS)).at_head
        return
    with pytest.raises(SchemaNotCurrentError, match="run `clientela-campaign migrate` first"):
        async with build(settings, consume=False):
            pass
    assert (await status(empty_store, MIGRATIONS)).current == ()


def test_the_migrate_command_migrates_the_configured_store(tmp_path: Path) -> None:
    store = tmp_path / "campaign.db"
    env = {**os.environ, "CLIENTELA_DATABASE_URL": f"sqlite+aiosqlite:///{store}"}
    for _ in range(2):  # a second run finds nothing to do
        done = subprocess.run(
            [sys.executable, "-m", "clientela.campaign", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert "campaign schema is at revision 0004 (head)" in done.stderr


async def test_the_migrated_outbox_compresses_its_packed_rows_with_lz4(
    empty_store: DatabaseSettings,
) -> None:
    if not (empty_store.url or "").startswith("postgresql"):
        pytest.skip("a PostgreSQL column setting")
    await upgrade(empty_store, MIGRATIONS)
    engine = create_engine(empty_store, SERVICE)
    try:
        async with engine.connect() as conn:
            if not await conn.scalar(text(LZ4_AVAILABLE)):
                pytest.skip("this PostgreSQL was built without lz4")
            method = await conn.scalar(
                text(
                    "SELECT attcompression::text FROM pg_attribute "
                    "WHERE attrelid = CAST(:table AS regclass) AND attname = 'value'"
                ),
                {"table": f'"{empty_store.schema_name}".outbox'},
            )
    finally:
        await engine.dispose()
    assert method == "l"
