"""Fixtures of the profile integration tests: a fresh store on each database backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.shared.db import create_engine, create_tables
from clientela.shared.settings import DatabaseSettings


@pytest.fixture
async def engine(database_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """Return an engine on a private store (SQLite file or PostgreSQL schema) with tables."""
    engine = create_engine(database_settings, "profile")
    await create_tables(engine, tables.metadata, "profile", database_settings)
    yield engine
    await engine.dispose()
