"""Alembic migrations of each service's schema: one history and one version table per service.

A service keeps its revisions in its own package (`clientela/<service>/migrations/versions/`)
and declares them with a `Migrations` value; this module runs them on the service's engine.
On PostgreSQL each service's tables and its `alembic_version` table live in the service's own
schema (created when missing); on SQLite, the embedded default, each service has its own file
and ALTERs run in batch mode (SQLite rewrites the table instead).

- `clientela-<service> migrate` runs `migrate`: upgrade to head, idempotent, serialised by an
  advisory lock, and adopting a schema that an older release made without migrations.
- `serve` runs `prepare`: on SQLite it upgrades; on PostgreSQL it refuses to start when the
  schema is behind the code (run `migrate` first) and starts when the schema is ahead of it
  (a newer release migrated it: migrations are backward compatible, see docs/operations.md).
- `python -m clientela.shared.migrations revision <service> -m "..."` writes a new revision by
  comparing the service's tables with its migrated schema (review it before committing).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

from clientela.shared.db import create_engine, is_postgres
from clientela.shared.http import configure_logging
from clientela.shared.settings import DatabaseSettings

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).parent / "script"
VERSION_TABLE = "alembic_version"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Migrations:
    """A service's migration history: where its revisions are and the tables they build."""

    service: str
    versions: Path
    metadata: Callable[[], MetaData]


class SchemaNotCurrentError(RuntimeError):
    """The database schema is behind what the code needs: `migrate` has not run."""


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a service's schema stands against its code's migration history."""

    service: str
    current: tuple[str, ...]
    heads: tuple[str, ...]
    unknown: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        """Whether the schema is exactly at the code's head."""
        return set(self.current) == set(self.heads)

    @property
    def ahead(self) -> bool:
        """Whether a newer release migrated the schema (every revision unknown to the code)."""
        return bool(self.current) and len(self.unknown) == len(self.current)


@dataclass(frozen=True, slots=True)
class _RunOptions:
    connection: Connection
    schema: str | None
    batch: bool
    metadata: MetaData | None = None


def _config(migrations: Migrations, options: _RunOptions | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("version_locations", str(migrations.versions))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if options is not None:
        config.attributes["clientela"] = options
    return config


def run_environment(context: Any) -> None:
    """Configure Alembic's context from the caller's options and run (the env.py of all)."""
    options: _RunOptions = context.config.attributes["clientela"]
    context.configure(
        connection=options.connection,
        target_metadata=options.metadata,
        version_table=VERSION_TABLE,
        version_table_schema=options.schema,
        render_as_batch=options.batch,
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _render_item(kind: str, obj: Any, context: Any) -> str | bool:
    if kind != "type":
        return False
    # A revision must not depend on application code that may change later: a decorated type
    # (UtcDateTime) is written as the SQLAlchemy type it stores.
    if isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    # Alembic writes a variant's dialect type by its repr (JSONB(astext_type=Text())).
    if "Text()" in repr(obj):
        context.imports.add("from sqlalchemy import Text")
    return False


def _context(conn: Connection, schema: str | None) -> MigrationContext:
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": schema}
    )


def _migration_engine(settings: DatabaseSettings, service: str) -> AsyncEngine:
    """Return an engine without the statement timeout: a migration waits for the lock of
    another instance's migration, and DDL on a large table may rightly take minutes."""
    return create_engine(settings.model_copy(update={"command_timeout_s": None}), service)


def _schema(engine: AsyncEngine, settings: DatabaseSettings, service: str) -> str | None:
    return settings.resolved_schema(service) if is_postgres(engine) else None


async def _on_connection(
    engine: AsyncEngine,
    settings: DatabaseSettings,
    service: str,
    work: Callable[[Connection, str | None], T],
    *,
    writes: bool,
) -> T:
    """Run `work` in one transaction; on PostgreSQL inside the service's schema."""
    schema = _schema(engine, settings, service)
    async with engine.begin() as conn:
        if schema is not None:
            if writes:
                # Two `migrate` runs at once (a retried job, two releases) take turns.
                key = zlib.crc32(f"clientela-migrate-{schema}".encode())
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
                await _create_schema(conn, schema)
            quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
            # Unqualified names (Alembic's DDL, reflection) resolve in the service's schema.
            await conn.execute(text(f"SET LOCAL search_path TO {quoted}"))
        return await conn.run_sync(lambda sync: work(sync, schema))


async def _create_schema(conn: Any, schema: str) -> None:
    # Asked first: a role that owns its schema may lack CREATE on the database, which even
    # CREATE SCHEMA IF NOT EXISTS requires.
    found = await conn.scalar(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema})
    if not found:
        quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))


def _upgrade(migrations: Migrations, batch: bool) -> Callable[[Connection, str | None], Any]:
    def work(conn: Connection, schema: str | None) -> tuple[str, ...]:
        config = _config(migrations, _RunOptions(conn, schema, batch))
        if not _context(conn, schema).get_current_heads():
            tables = set(inspect(conn).get_table_names(schema=schema)) - {VERSION_TABLE}
            if tables:
                # An older release created these tables without migrations; they are what the
                # first revision creates, so record that revision instead of running it.
                base = ScriptDirectory.from_config(config).get_base()
                log.warning(
                    "%s: adopting %d existing table(s) as revision %s",
                    migrations.service,
                    len(tables),
                    base,
                )
                command.stamp(config, base or "base")
        command.upgrade(config, "head")
        return tuple(_context(conn, schema).get_current_heads())

    return work


async def upgrade(
    settings: DatabaseSettings, migrations: Migrations, *, engine: AsyncEngine | None = None
) -> tuple[str, ...]:
    """Bring the service's schema to the code's head; return the revision(s) it is at."""
    own = engine is None
    engine = engine or _migration_engine(settings, migrations.service)
    try:
        batch = not is_postgres(engine)
        current: tuple[str, ...] = await _on_connection(
            engine, settings, migrations.service, _upgrade(migrations, batch), writes=True
        )
        return current
    finally:
        if own:
            await engine.dispose()


async def status(
    settings: DatabaseSettings, migrations: Migrations, *, engine: AsyncEngine | None = None
) -> SchemaStatus:
    """Return where the service's schema stands against the code's migration history."""
    script = ScriptDirectory.from_config(_config(migrations))

    def work(conn: Connection, schema: str | None) -> tuple[str, ...]:
        return tuple(_context(conn, schema).get_current_heads())

    own = engine is None
    engine = engine or _migration_engine(settings, migrations.service)
    try:
        current = await _on_connection(engine, settings, migrations.service, work, writes=False)
    finally:
        if own:
            await engine.dispose()
    return SchemaStatus(
        service=migrations.service,
        current=current,
        heads=tuple(script.get_heads()),
        unknown=tuple(r for r in current if not _known(script, r)),
    )


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


async def ensure_current(
    settings: DatabaseSettings, migrations: Migrations, *, engine: AsyncEngine | None = None
) -> SchemaStatus:
    """Return the schema's status; raise SchemaNotCurrentError when it is behind the code."""
    found = await status(settings, migrations, engine=engine)
    if found.at_head:
        return found
    if found.ahead:
        log.warning(
            "%s: the schema is at revision %s, which this release does not know (a newer "
            "release migrated it); starting, as migrations keep the previous release working",
            migrations.service,
            ", ".join(found.current),
        )
        return found
    where = settings.resolved_schema(migrations.service)
    raise SchemaNotCurrentError(
        f"the {migrations.service} schema ({where!r}) is at revision "
        f"{', '.join(found.current) or 'none'} but this release needs "
        f"{', '.join(found.heads)}: run `clientela-{migrations.service} migrate` first"
    )


async def prepare(engine: AsyncEngine, settings: DatabaseSettings, migrations: Migrations) -> None:
    """Make the schema usable at start: migrate SQLite, check PostgreSQL (never alter it)."""
    if is_postgres(engine):
        await ensure_current(settings, migrations, engine=engine)
    else:
        await upgrade(settings, migrations, engine=engine)


async def differences(
    settings: DatabaseSettings, migrations: Migrations, *, engine: AsyncEngine | None = None
) -> list[Any]:
    """Return how the schema differs from the service's tables (empty when they agree)."""
    metadata = migrations.metadata()

    def work(conn: Connection, _schema: str | None) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        return list(compare_metadata(context, metadata))

    own = engine is None
    engine = engine or _migration_engine(settings, migrations.service)
    try:
        return await _on_connection(engine, settings, migrations.service, work, writes=False)
    finally:
        if own:
            await engine.dispose()


async def revision(
    migrations: Migrations, message: str, *, url: str | None = None, autogenerate: bool = True
) -> Path:
    """Write the next revision, generated from the tables' differences to a migrated scratch.

    The scratch database is a temporary SQLite file, or a throwaway schema at `url`
    (PostgreSQL reflects types more faithfully). Review the file: autogenerate misses renames
    and data changes.
    """
    metadata = migrations.metadata()
    with tempfile.TemporaryDirectory() as scratch:
        settings = DatabaseSettings(
            url=url or f"sqlite+aiosqlite:///{scratch}/scratch.db",
            schema_name=f"revision_{uuid.uuid4().hex[:12]}",
        )
        engine = _migration_engine(settings, migrations.service)
        try:
            await upgrade(settings, migrations, engine=engine)

            def work(conn: Connection, schema: str | None) -> Path:
                config = _config(
                    migrations, _RunOptions(conn, schema, not is_postgres(engine), metadata)
                )
                script = command.revision(
                    config,
                    message=message,
                    autogenerate=autogenerate,
                    rev_id=_next_id(ScriptDirectory.from_config(config)),
                )
                assert script is not None
                assert not isinstance(script, list)
                return Path(script.path)

            path = await _on_connection(engine, settings, migrations.service, work, writes=True)
            if is_postgres(engine):
                async with engine.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA "{settings.schema_name}" CASCADE'))
        finally:
            await engine.dispose()
    _tidy(path)
    return path


def _next_id(script: ScriptDirectory) -> str:
    numbers = [int(r.revision) for r in script.walk_revisions() if re.fullmatch(r"\d+", r.revision)]
    return f"{max(numbers, default=0) + 1:04d}"


def _tidy(path: Path) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        return
    for command_line in (["format"], ["check", "--fix", "--exit-zero"]):
        subprocess.run(
            [ruff, *command_line, "--quiet", str(path)], check=False, capture_output=True
        )


def migrate(settings: DatabaseSettings, migrations: Migrations, log_level: str = "INFO") -> None:
    """Run `clientela-<service> migrate`: upgrade the service's schema to head, then exit."""
    configure_logging(log_level)
    logging.getLogger("alembic").setLevel(logging.INFO)
    current = asyncio.run(upgrade(settings, migrations))
    where = settings.resolved_schema(migrations.service)
    log.info(
        "%s schema is at revision %s (head)%s",
        migrations.service,
        ", ".join(current),
        f" in PostgreSQL schema {where!r}" if settings.url and "sqlite" not in settings.url else "",
    )
