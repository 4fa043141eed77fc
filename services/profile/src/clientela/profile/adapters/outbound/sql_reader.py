"""SQL read side: golden records, identifier lookups and timeline pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.adapters.outbound.sql_unit_of_work import (
    asyncpg_of,
    profile_from_row,
    quoted,
)
from clientela.profile.application.ports import StoredProfile, TimelineQuery
from clientela.profile.domain.identity import IdentifierKey
from clientela.profile.domain.profile import Profile
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.db import is_postgres

# One statement per lookup (one round trip, one snapshot): the profile and every identifier
# it owns. An identifier always names a live profile (merges move identifiers); a profile
# id may be a merged one, which forwards to its survivor.
_PROFILE_COLUMNS = """
    p.profile_id, p.version, p.created_at, p.updated_at, p.lifecycle, p.state::text,
    ARRAY(SELECT ARRAY[o.id_type, o.id_value] FROM {identifiers} o
          WHERE o.profile_id = p.profile_id ORDER BY o.id_type, o.id_value) AS identifiers"""
_BY_IDENTIFIER = (
    "SELECT"
    + _PROFILE_COLUMNS
    + """
    FROM {identifiers} i JOIN {profiles} p ON p.profile_id = i.profile_id
    WHERE i.id_type = $1 AND i.id_value = $2"""
)
_LIVE = (
    "SELECT"
    + _PROFILE_COLUMNS
    + """
    FROM {profiles} p
    WHERE p.profile_id = COALESCE(
        (SELECT f.survivor_id FROM {profile_forwards} f WHERE f.merged_id = $1), $1)"""
)
_SQL_BY_SCHEMA: dict[str, tuple[str, str]] = {}


def _statements(schema: str) -> tuple[str, str]:
    found = _SQL_BY_SCHEMA.get(schema)
    if found is None:
        names = {t.name: quoted(schema, t.name) for t in tables.metadata.sorted_tables}
        found = _SQL_BY_SCHEMA[schema] = (
            _BY_IDENTIFIER.format(**names),
            _LIVE.format(**names),
        )
    return found


def _stored(row: Any) -> StoredProfile:
    profile = Profile.from_state(row[0], row[1], row[2], row[3], row[4], row[5])
    return StoredProfile(profile, [(t, v) for t, v in row[6] or ()])


class SqlProfileReader:
    """Reads profiles, identifiers and touchpoints; never writes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _fetch_one(self, conn: AsyncConnection, which: int, *args: str) -> Any:
        driver, schema = await asyncpg_of(conn)
        # A single read needs no transaction: sent straight to the driver, it runs alone.
        return await driver.fetchrow(_statements(schema)[which], *args)

    async def by_identifier(self, key: IdentifierKey) -> StoredProfile | None:
        """Return the profile owning an identifier, with its identifiers, or None."""
        if is_postgres(self._engine):
            async with self._engine.connect() as conn:
                row = await self._fetch_one(conn, 0, key[0], key[1])
            return _stored(row) if row is not None else None
        found = await self.find(key)
        return await self.get(found) if found is not None else None

    async def live(self, profile_id: str) -> StoredProfile | None:
        """Return a profile (a merged id: its survivor) with its identifiers, or None."""
        if is_postgres(self._engine):
            async with self._engine.connect() as conn:
                row = await self._fetch_one(conn, 1, profile_id)
            return _stored(row) if row is not None else None
        return await self.get(await self.resolve(profile_id))

    async def get(self, profile_id: str) -> StoredProfile | None:
        """Return a profile with its identifiers, or None."""
        p, i = tables.profiles, tables.identifiers
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(p).where(p.c.profile_id == profile_id))).first()
            if row is None:
                return None
            owned = await conn.execute(
                select(i.c.id_type, i.c.id_value).where(i.c.profile_id == profile_id)
            )
            keys: list[IdentifierKey] = [(r.id_type, r.id_value) for r in owned]
        return StoredProfile(profile_from_row(row), keys)

    async def resolve(self, profile_id: str) -> str:
        """Return the live id a profile id forwards to (itself when not merged)."""
        f = tables.profile_forwards
        async with self._engine.connect() as conn:
            found: str | None = await conn.scalar(
                select(f.c.survivor_id).where(f.c.merged_id == profile_id)
            )
        return found or profile_id

    async def find(self, key: IdentifierKey) -> str | None:
        """Return the id of the profile owning an identifier, or None."""
        i = tables.identifiers
        async with self._engine.connect() as conn:
            found: str | None = await conn.scalar(
                select(i.c.profile_id).where(i.c.id_type == key[0], i.c.id_value == key[1])
            )
        return found

    async def exists(self, profile_id: str) -> bool:
        """Return whether the profile is known."""
        p = tables.profiles
        async with self._engine.connect() as conn:
            found = await conn.scalar(select(p.c.profile_id).where(p.c.profile_id == profile_id))
        return found is not None

    async def timeline(self, profile_id: str, query: TimelineQuery) -> list[TouchpointRecorded]:
        """Return one page of the profile's touchpoints, newest first (keyset pagination)."""
        t = tables.touchpoints
        stmt = select(t.c.payload).where(t.c.profile_id == profile_id)
        if query.before is not None:
            if query.before_event_id is None:
                stmt = stmt.where(t.c.occurred_at < query.before)
            else:
                stmt = stmt.where(
                    or_(
                        t.c.occurred_at < query.before,
                        and_(
                            t.c.occurred_at == query.before,
                            t.c.event_id < query.before_event_id,
                        ),
                    )
                )
        if query.kind is not None:
            stmt = stmt.where(t.c.kind == query.kind.value)
        if query.channel is not None:
            stmt = stmt.where(t.c.channel == query.channel.value)
        stmt = stmt.order_by(t.c.occurred_at.desc(), t.c.event_id.desc()).limit(query.limit)
        async with self._engine.connect() as conn:
            payloads = (await conn.execute(stmt)).scalars().all()
        return [TouchpointRecorded.model_validate(payload) for payload in payloads]
