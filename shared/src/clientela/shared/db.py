"""Database engines for PostgreSQL (production) and SQLite (embedded), and dialect helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import DateTime, Dialect, MetaData, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from clientela.shared.settings import DatabaseSettings


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back as an aware UTC datetime on every dialect."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; SQLite stores no offset, so it gets the naive UTC wall time."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_engine(settings: DatabaseSettings, service: str) -> AsyncEngine:
    """Build the service's engine; on PostgreSQL its tables live in the service's schema."""
    url = make_url(settings.resolved_url(service))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=settings.echo, hide_parameters=True, connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    on_asyncpg = url.get_driver_name() == "asyncpg"
    engine = create_async_engine(
        url,
        echo=settings.echo,
        # Parameters are people's identifiers and traits: an error names the statement only.
        hide_parameters=True,
        pool_size=settings.pool_size,
        # asyncpg gets its own ping (below), bounded by the connect timeout.
        pool_pre_ping=settings.pool_pre_ping and not on_asyncpg,
        pool_timeout=settings.pool_timeout_s,
        connect_args={
            "timeout": settings.connect_timeout_s,
            "command_timeout": settings.command_timeout_s,
        }
        if on_asyncpg
        else {},
    )
    if on_asyncpg and settings.pool_pre_ping:
        event.listen(engine.sync_engine, "checkout", _BoundedPing(settings.connect_timeout_s))
    # Tables are declared without a schema; each service maps them into its own schema.
    return engine.execution_options(schema_translate_map={None: settings.resolved_schema(service)})


class _BoundedPing:
    """Pool checkout hook: check a pooled asyncpg connection with one bounded round trip.

    SQLAlchemy's own pre-ping waits up to the statement timeout (and spends several round
    trips), so a read on a database that stopped answering would outlast any client's
    patience. Here a ping gets the connect timeout: a connection that answers nothing in that
    time is as unreachable as one that cannot be opened. A connection that is closed or
    broken is replaced at once, as with pre-ping; a ping that times out is raised, so the
    request fails promptly (503) instead of waiting again on a new connection.
    """

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s

    def __call__(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        try:
            # A simple-protocol query: one round trip, no prepared statement.
            dbapi_connection.run_async(lambda conn: conn.execute("SELECT 1", timeout=self._timeout))
        except TimeoutError:
            raise  # an OSError too, but a reason to give up, not to reconnect
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
            raise DisconnectionError(f"pooled connection unusable: {type(exc).__name__}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets HTTP reads proceed while the consumer writes; NORMAL is durable in WAL mode
    # against process crashes, which is what the embedded default promises.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_postgres(engine: AsyncEngine | AsyncConnection) -> bool:
    """Return whether the engine talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"


async def create_tables(
    engine: AsyncEngine, metadata: MetaData, service: str, settings: DatabaseSettings
) -> None:
    """Create the service's schema and tables when missing."""
    async with engine.begin() as conn:
        if is_postgres(conn):
            schema = settings.resolved_schema(service)
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(metadata.create_all)


def upsert_insert(conn: AsyncConnection) -> Any:
    """Return the dialect's insert construct, which supports ON CONFLICT."""
    return postgresql.insert if is_postgres(conn) else sqlite.insert
