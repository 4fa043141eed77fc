"""SQL queries behind the HTTP read endpoints."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.campaign.adapters.outbound.tables import CampaignTables
from clientela.campaign.application.ports import DecisionRecord, OutcomeCount
from clientela.campaign.domain.model import Outcome
from clientela.shared.contracts import Channel, MessagePurpose, Reason, Tier


class SqlCampaignReadModel:
    """Reads decisions with plain SQL, outside any consumer transaction."""

    def __init__(self, engine: AsyncEngine, tables: CampaignTables) -> None:
        self._engine = engine
        self._t = tables.decisions

    async def outcome_counts(self, campaign_id: str) -> list[OutcomeCount]:
        """Return decision counts of a campaign grouped by outcome and channel."""
        t = self._t
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(t.c.outcome, t.c.channel, func.count().label("n"))
                .where(t.c.campaign_id == campaign_id)
                .group_by(t.c.outcome, t.c.channel)
            )
            return [
                OutcomeCount(
                    Outcome(row.outcome),
                    Channel(row.channel) if row.channel is not None else None,
                    int(row.n),
                )
                for row in rows
            ]

    async def decisions_for_profile(self, profile_id: str, limit: int) -> list[DecisionRecord]:
        """Return a profile's decisions, newest first."""
        t = self._t
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(t)
                .where(t.c.profile_id == profile_id)
                .order_by(t.c.created_at.desc(), t.c.decision_id)
                .limit(limit)
            )
            return [
                DecisionRecord(
                    decision_id=row.decision_id,
                    campaign_id=row.campaign_id,
                    trigger_event_id=row.trigger_event_id,
                    profile_id=row.profile_id,
                    outcome=Outcome(row.outcome),
                    channel=Channel(row.channel) if row.channel is not None else None,
                    variant=row.variant,
                    purpose=MessagePurpose(row.purpose),
                    tier=Tier(row.tier),
                    reasons=[Reason.model_validate(r) for r in row.reasons],
                    created_at=_aware(row.created_at),
                )
                for row in rows
            ]

    async def ready(self) -> bool:
        """Return whether the store answers."""
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
