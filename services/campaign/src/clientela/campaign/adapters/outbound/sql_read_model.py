"""SQL queries behind the HTTP read endpoints."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.campaign.adapters.outbound.records import aware
from clientela.campaign.adapters.outbound.sql_unit_of_work import evidence_counts
from clientela.campaign.adapters.outbound.tables import MICROS, CampaignTables
from clientela.campaign.application.ports import DecisionRecord, OutcomeCount, ResultCell
from clientela.campaign.domain.economics import PosteriorKey, ResponseCounts
from clientela.campaign.domain.model import Outcome
from clientela.shared.contracts import Channel, MessagePurpose, Reason, Tier


class SqlCampaignReadModel:
    """Reads decisions with plain SQL, outside any consumer transaction."""

    def __init__(self, engine: AsyncEngine, tables: CampaignTables) -> None:
        self._engine = engine
        self._tables = tables
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

    async def result_cells(self, campaign_id: str | None) -> list[ResultCell]:
        """Return result totals by campaign, outcome, channel and tier."""
        t = self._t
        stmt = select(
            t.c.campaign_id,
            t.c.outcome,
            t.c.channel,
            t.c.tier,
            func.count().label("n"),
            func.count(t.c.converted_at).label("converted"),
            func.count(t.c.responded_at).label("responded"),
            func.coalesce(func.sum(t.c.revenue_micros), 0).label("revenue"),
            func.coalesce(func.sum(t.c.cost_micros), 0).label("cost"),
        ).group_by(t.c.campaign_id, t.c.outcome, t.c.channel, t.c.tier)
        if campaign_id is not None:
            stmt = stmt.where(t.c.campaign_id == campaign_id)
        async with self._engine.connect() as conn:
            rows = await conn.execute(stmt)
            return [
                ResultCell(
                    campaign_id=row.campaign_id,
                    outcome=Outcome(row.outcome),
                    channel=Channel(row.channel) if row.channel is not None else None,
                    tier=Tier(row.tier),
                    count=int(row.n),
                    converted=int(row.converted),
                    responded=int(row.responded),
                    revenue=int(row.revenue) / MICROS,
                    cost=int(row.cost) / MICROS,
                )
                for row in rows
            ]

    async def evidence(self, campaign_id: str) -> dict[PosteriorKey, ResponseCounts]:
        """Return the learning evidence of a campaign."""
        async with self._engine.connect() as conn:
            return await evidence_counts(conn, self._tables.evidence, [campaign_id])

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
                    created_at=aware(row.created_at),
                    offer=row.offer,
                    responded_at=aware(row.responded_at) if row.responded_at else None,
                    converted_at=aware(row.converted_at) if row.converted_at else None,
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
