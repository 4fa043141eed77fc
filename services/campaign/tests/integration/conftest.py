"""Integration fixtures: every database the tests get is migrated, as `migrate` would do."""

from __future__ import annotations

import pytest

from clientela.campaign.migrations import MIGRATIONS
from clientela.shared.migrations import upgrade
from clientela.shared.settings import DatabaseSettings


@pytest.fixture
async def database_settings(database_settings: DatabaseSettings) -> DatabaseSettings:
    """The shared fresh store (SQLite or PostgreSQL), migrated to the campaign's head."""
    await upgrade(database_settings, MIGRATIONS)
    return database_settings
