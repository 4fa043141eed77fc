"""SQL unit of work: inbox, scores, tier history and outbox in one database transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from clientela.scoring.adapters.outbound import tables
from clientela.scoring.application.ports import OutgoingEvent, StoredScore, TierTransition
from clientela.shared.codec import to_record
from clientela.shared.contracts import ScoresUpdated, Tier
from clientela.shared.db import upsert_insert
from clientela.shared.outbox import claim_new, stage
from clientela.shared.settings import KafkaSettings


def as_utc(moment: datetime) -> datetime:
    """Return an aware UTC datetime (SQLite hands timestamps back without a zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stored_score(state: Any, updated_at: datetime) -> StoredScore:
    """Rebuild stored scores from the state and updated_at columns of the scores table."""
    return StoredScore(scores=ScoresUpdated.model_validate(state), updated_at=as_utc(updated_at))


async def customer_values(conn: AsyncConnection) -> dict[str, float]:
    """Return predicted value by profile id for every non-prospect score, in one query."""
    result = await conn.execute(
        select(tables.scores.c.profile_id, tables.scores.c.predicted_value).where(
            tables.scores.c.tier != Tier.P.value
        )
    )
    return {row.profile_id: float(row.predicted_value) for row in result}


class SqlScoreStore:
    """Scores read and written on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get_many(self, profile_ids: Sequence[str]) -> dict[str, StoredScore]:
        """Return the stored scores of those profiles that have any, in one query."""
        if not profile_ids:
            return {}
        result = await self._conn.execute(
            select(tables.scores.c.state, tables.scores.c.updated_at).where(
                tables.scores.c.profile_id.in_(list(profile_ids))
            )
        )
        found = [stored_score(row.state, row.updated_at) for row in result]
        return {s.scores.profile_id: s for s in found}

    async def customer_values(self) -> dict[str, float]:
        """Return predicted value by profile id for every customer."""
        return await customer_values(self._conn)

    async def save_many(self, scores: Sequence[ScoresUpdated], updated_at: datetime) -> None:
        """Upsert scores in one statement; an older profile version never overwrites a newer."""
        if not scores:
            return
        table = tables.scores
        insert = upsert_insert(self._conn)(table)
        stmt = insert.on_conflict_do_update(
            index_elements=[table.c.profile_id],
            set_={
                name: insert.excluded[name]
                for name in (
                    "profile_version",
                    "lifecycle",
                    "tier",
                    "predicted_value",
                    "state",
                    "updated_at",
                )
            },
            where=table.c.profile_version < insert.excluded.profile_version,
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "profile_id": s.profile_id,
                    "profile_version": s.profile_version,
                    "lifecycle": s.lifecycle.value,
                    "tier": s.tier.value,
                    "predicted_value": s.predicted_value,
                    "state": s.model_dump(mode="json"),
                    "updated_at": updated_at,
                }
                for s in scores
            ],
        )


class SqlScoringUnitOfWork:
    """One transaction on one connection; nothing is kept unless commit() is called."""

    def __init__(self, engine: AsyncEngine, kafka: KafkaSettings) -> None:
        self._engine = engine
        self._kafka = kafka
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._scores: SqlScoreStore | None = None

    @property
    def _connection(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        return self._conn

    @property
    def scores(self) -> SqlScoreStore:
        """Return the scores of this unit of work."""
        if self._scores is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        return self._scores

    async def __aenter__(self) -> Self:
        """Open a connection and begin the transaction."""
        self._conn = await self._engine.connect()
        self._tx = await self._conn.begin()
        self._scores = SqlScoreStore(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back anything not committed and release the connection."""
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            if self._conn is not None:
                await self._conn.close()
            self._conn = None
            self._tx = None
            self._scores = None

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Mark event ids processed; return those seen for the first time."""
        return await claim_new(self._connection, tables.inbox, event_ids)

    async def record_tier_changes(self, changes: Sequence[TierTransition]) -> None:
        """Append tier moves to the history; a repeated event id is kept once."""
        if not changes:
            return
        conn = self._connection
        stmt = upsert_insert(conn)(tables.tier_history).on_conflict_do_nothing(
            index_elements=["event_id"]
        )
        await conn.execute(
            stmt,
            [
                {
                    "event_id": c.event_id,
                    "profile_id": c.profile_id,
                    "profile_version": c.profile_version,
                    "from_tier": c.from_tier.value if c.from_tier is not None else None,
                    "to_tier": c.to_tier.value,
                    "move": c.move.value,
                    "occurred_at": c.occurred_at,
                }
                for c in changes
            ],
        )

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        """Put events in the outbox under their prefixed topic names."""
        await stage(
            self._connection,
            tables.outbox,
            [
                to_record(self._kafka.topic(e.topic), e.key, e.event, e.accepted_at_ms)
                for e in events
            ],
        )

    async def commit(self) -> None:
        """Commit the transaction."""
        if self._tx is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        await self._tx.commit()
