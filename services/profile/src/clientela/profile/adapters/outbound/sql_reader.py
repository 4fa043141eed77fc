"""SQL read side: golden records, identifier lookups and timeline pages."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.adapters.outbound.sql_unit_of_work import profile_from_row
from clientela.profile.application.ports import StoredProfile, TimelineQuery
from clientela.profile.domain.identity import IdentifierKey
from clientela.shared.contracts import TouchpointRecorded


class SqlProfileReader:
    """Reads profiles, identifiers and touchpoints; never writes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

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
