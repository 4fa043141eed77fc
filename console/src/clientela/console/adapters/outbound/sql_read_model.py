"""The read model on SQLAlchemy Core: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clientela.console.adapters.outbound import tables as t
from clientela.console.application.ports import (
    MergeRow,
    RankedProfile,
    ReadModelStatus,
    TierMoveRow,
)
from clientela.console.application.projection import Changes
from clientela.console.domain.base import MoveCount, epoch, from_epoch
from clientela.shared.db import upsert_insert


class SqlReadModel:
    """Reads and writes the console's tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ping(self) -> bool:
        """Return whether the database answers."""
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def apply(self, changes: Changes) -> None:
        """Write one batch's changes in one transaction."""
        async with self._engine.begin() as conn:
            await self._retire(conn, changes)
            gone = await self._retired_among(conn, set(changes.scores) | set(changes.profiles))
            if changes.tier_moves:
                await conn.execute(
                    upsert_insert(conn)(t.tier_moves).on_conflict_do_nothing(
                        index_elements=["event_id"]
                    ),
                    [
                        {
                            "event_id": m.event_id,
                            "profile_id": m.profile_id,
                            "from_tier": m.from_tier,
                            "to_tier": m.to_tier,
                            "move": m.move,
                            "predicted_value": m.predicted_value,
                            "at_s": epoch(m.at),
                        }
                        for m in changes.tier_moves
                    ],
                )
            if changes.merges:
                await conn.execute(
                    upsert_insert(conn)(t.merges).on_conflict_do_nothing(
                        index_elements=["event_id"]
                    ),
                    [
                        {
                            "event_id": m.event_id,
                            "survivor_id": m.survivor_id,
                            "merged_id": m.merged_id,
                            "rule": m.rule,
                            "identifier_types": m.identifier_types,
                            "identifier_fingerprints": m.identifier_fingerprints,
                            "at_s": epoch(m.at),
                        }
                        for m in changes.merges
                    ],
                )
            await self._upsert_scores(conn, changes, gone)
            await self._upsert_profiles(conn, changes, gone)

    async def _retire(self, conn: AsyncConnection, changes: Changes) -> None:
        retiring = dict.fromkeys(changes.merged_away, "merged")
        retiring.update(dict.fromkeys(changes.erased, "erased"))
        if not retiring:
            return
        ids = sorted(retiring)
        await conn.execute(
            upsert_insert(conn)(t.retired).on_conflict_do_update(
                index_elements=["profile_id"],
                set_={"reason": upsert_insert(conn)(t.retired).excluded.reason},
            ),
            [{"profile_id": pid, "reason": retiring[pid]} for pid in ids],
        )
        for table in (t.current_scores, t.profiles, t.channel_counts):
            await conn.execute(delete(table).where(table.c.profile_id.in_(ids)))
        if changes.erased:
            erased = sorted(changes.erased)
            await conn.execute(delete(t.tier_moves).where(t.tier_moves.c.profile_id.in_(erased)))
            await conn.execute(
                delete(t.merges).where(
                    or_(t.merges.c.survivor_id.in_(erased), t.merges.c.merged_id.in_(erased))
                )
            )

    @staticmethod
    async def _retired_among(conn: AsyncConnection, ids: set[str]) -> set[str]:
        if not ids:
            return set()
        rows = await conn.execute(
            select(t.retired.c.profile_id).where(t.retired.c.profile_id.in_(sorted(ids)))
        )
        return set(rows.scalars())

    @staticmethod
    async def _upsert_scores(conn: AsyncConnection, changes: Changes, gone: set[str]) -> None:
        rows = [
            {
                "profile_id": s.profile_id,
                "profile_version": s.profile_version,
                "tier": s.tier,
                "predicted_value": s.predicted_value,
                "segment": s.segment,
                "lifecycle": s.lifecycle,
                "at_s": epoch(s.at),
            }
            for s in changes.scores.values()
            if s.profile_id not in gone
        ]
        if not rows:
            return
        insert = upsert_insert(conn)(t.current_scores)
        # A sweep re-announces the same profile version with a new tier: equal versions win
        # when they are at least as recent.
        newer = or_(
            t.current_scores.c.profile_version < insert.excluded.profile_version,
            and_(
                t.current_scores.c.profile_version == insert.excluded.profile_version,
                t.current_scores.c.at_s <= insert.excluded.at_s,
            ),
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["profile_id"],
                set_={
                    c: insert.excluded[c]
                    for c in (
                        "profile_version",
                        "tier",
                        "predicted_value",
                        "segment",
                        "lifecycle",
                        "at_s",
                    )
                },
                where=newer,
            ),
            rows,
        )

    @staticmethod
    async def _upsert_profiles(conn: AsyncConnection, changes: Changes, gone: set[str]) -> None:
        records = [p for p in changes.profiles.values() if p.profile_id not in gone]
        if not records:
            return
        ids = [p.profile_id for p in records]
        query = select(t.profiles.c.profile_id, t.profiles.c.version).where(
            t.profiles.c.profile_id.in_(ids)
        )
        stored: dict[str, int] = dict((await conn.execute(query)).all())
        fresh = [p for p in records if stored.get(p.profile_id, 0) < p.version]
        if not fresh:
            return
        insert = upsert_insert(conn)(t.profiles)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["profile_id"],
                set_={c: insert.excluded[c] for c in ("version", "lifecycle", "preferred_channel")},
            ),
            [
                {
                    "profile_id": p.profile_id,
                    "version": p.version,
                    "lifecycle": p.lifecycle,
                    "preferred_channel": p.preferred_channel,
                }
                for p in fresh
            ],
        )
        fresh_ids = [p.profile_id for p in fresh]
        await conn.execute(
            delete(t.channel_counts).where(t.channel_counts.c.profile_id.in_(fresh_ids))
        )
        counts = [
            {"profile_id": p.profile_id, "channel": channel, "touchpoints": n}
            for p in fresh
            for channel, n in p.channel_counts.items()
            if n > 0
        ]
        if counts:
            await conn.execute(t.channel_counts.insert(), counts)

    async def tier_history(self, profile_id: str) -> list[TierMoveRow]:
        """Return a profile's tier moves, oldest first."""
        m = t.tier_moves.c
        query = (
            select(m.at_s, m.from_tier, m.to_tier, m.predicted_value)
            .where(m.profile_id == profile_id)
            .order_by(m.at_s, m.event_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [TierMoveRow(from_epoch(r[0]), r[1], r[2], float(r[3])) for r in rows]

    async def merges(self, profile_id: str) -> list[MergeRow]:
        """Return the merges a profile took part in, newest first."""
        m = t.merges.c
        query = (
            select(t.merges)
            .where(or_(m.survivor_id == profile_id, m.merged_id == profile_id))
            .order_by(m.at_s.desc())
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            MergeRow(
                at=from_epoch(r["at_s"]),
                survivor_id=r["survivor_id"],
                merged_id=r["merged_id"],
                rule=r["rule"],
                identifier_types=list(r["identifier_types"]),
                identifier_fingerprints=list(r["identifier_fingerprints"]),
            )
            for r in rows
        ]

    async def move_span(self) -> tuple[datetime, datetime] | None:
        """Return the times of the first and the last tier move."""
        m = t.tier_moves.c
        async with self._engine.connect() as conn:
            first, last = (await conn.execute(select(func.min(m.at_s), func.max(m.at_s)))).one()
        if first is None or last is None:
            return None
        return from_epoch(int(first)), from_epoch(int(last))

    async def move_counts(self, width_s: int, since: datetime) -> list[MoveCount]:
        """Return tier moves per period of width_s seconds since a moment."""
        m = t.tier_moves.c
        start = epoch(since)
        start -= start % width_s
        period = (m.at_s - m.at_s % literal(width_s)).label("period")
        query = (
            select(period, m.from_tier, m.to_tier, func.count())
            .where(m.at_s >= start)
            .group_by(period, m.from_tier, m.to_tier)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [MoveCount(from_epoch(int(p)), f, to, int(n)) for p, f, to, n in rows]

    async def channel_mix(self) -> dict[str, dict[str, float]]:
        """Return touchpoints per channel summed over the profiles of each current tier."""
        s, c = t.current_scores.c, t.channel_counts.c
        query = (
            select(s.tier, c.channel, func.sum(c.touchpoints))
            .select_from(t.current_scores.join(t.channel_counts, s.profile_id == c.profile_id))
            .group_by(s.tier, c.channel)
        )
        return await self._nested(query)

    async def preferred_channels(self) -> dict[str, dict[str, float]]:
        """Return, per current tier, how many profiles prefer each inbound channel."""
        s, p = t.current_scores.c, t.profiles.c
        query = (
            select(s.tier, p.preferred_channel, func.count())
            .select_from(t.current_scores.join(t.profiles, s.profile_id == p.profile_id))
            .where(p.preferred_channel.is_not(None))
            .group_by(s.tier, p.preferred_channel)
        )
        return await self._nested(query)

    async def _nested(self, query: Select[Any, Any, Any]) -> dict[str, dict[str, float]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for tier, channel, n in rows:
            out[tier][channel] = float(n or 0)
        return dict(out)

    async def top_profiles(self, limit: int) -> list[RankedProfile]:
        """Return the profiles with the highest predicted value."""
        s = t.current_scores.c
        query = (
            select(s.profile_id, s.tier, s.predicted_value, s.segment, s.lifecycle)
            .order_by(s.predicted_value.desc(), s.profile_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [RankedProfile(pid, tier, float(v), seg, life) for pid, tier, v, seg, life in rows]

    async def status(self) -> ReadModelStatus:
        """Return what the read model holds."""
        async with self._engine.connect() as conn:
            moves, last = (
                await conn.execute(select(func.count(), func.max(t.tier_moves.c.at_s)))
            ).one()
            scored = (
                await conn.execute(select(func.count()).select_from(t.current_scores))
            ).scalar_one()
            known = (await conn.execute(select(func.count()).select_from(t.profiles))).scalar_one()
            merged = (await conn.execute(select(func.count()).select_from(t.merges))).scalar_one()
        return ReadModelStatus(
            tier_moves=int(moves),
            scored_profiles=int(scored),
            profiles=int(known),
            merges=int(merged),
            last_event_at=from_epoch(int(last)) if last is not None else None,
        )
