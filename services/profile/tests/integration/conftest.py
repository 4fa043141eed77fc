"""Fixtures of the profile integration tests: a fresh store on each database backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.migrations import MIGRATIONS
from clientela.shared.db import create_engine
from clientela.shared.migrations import upgrade
from clientela.shared.settings import DatabaseSettings


@pytest.fixture
async def database_settings(database_settings: DatabaseSettings) -> DatabaseSettings:
    """The shared fresh store (SQLite or PostgreSQL), migrated as `migrate` would."""
    await upgrade(database_settings, MIGRATIONS)
    return database_settings


@pytest.fixture
async def engine(database_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """Return an engine on a private store (SQLite file or PostgreSQL schema) with tables."""
    engine = create_engine(database_settings, "profile")
    yield engine
    await engine.dispose()
