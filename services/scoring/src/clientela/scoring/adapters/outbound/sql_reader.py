"""Read model of the scores for the HTTP API."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.scoring.adapters.outbound import tables
from clientela.scoring.adapters.outbound.sql_unit_of_work import stored_score
from clientela.scoring.application.ports import StoredScore, TierTotal
from clientela.shared.contracts import Tier


class SqlScoreReader:
    """Reads scores with short-lived connections of its own."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, profile_id: str) -> StoredScore | None:
        """Return the stored scores of one profile, or None."""
        table = tables.profile_scores
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(table.c.state, table.c.updated_at).where(
                        table.c.profile_id == profile_id
                    )
                )
            ).first()
        return stored_score(row.state, row.updated_at) if row is not None else None

    async def tier_totals(self) -> list[TierTotal]:
        """Return count and summed stored predicted value per stored tier."""
        table = tables.profile_scores
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(
                    table.c.tier,
                    func.count().label("n"),
                    func.coalesce(func.sum(table.c.predicted_value), 0.0).label("value"),
                ).group_by(table.c.tier)
            )
            return [TierTotal(Tier(row.tier), int(row.n), float(row.value)) for row in result]

    async def ping(self) -> bool:
        """Return whether the database answers."""
        try:
            async with self._engine.connect() as conn:
                await conn.execute(select(1))
        except (SQLAlchemyError, OSError):
            return False
        return True
