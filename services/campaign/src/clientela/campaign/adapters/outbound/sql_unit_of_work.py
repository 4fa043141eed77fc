"""SQL repositories and the unit of work: one transaction per consumed batch."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Table, and_, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clientela.campaign.adapters.outbound.records import (
    aware,
    contact_of,
    profile_json,
    scores_json,
    trigger_json,
    trigger_of,
)
from clientela.campaign.adapters.outbound.tables import MICROS, CampaignTables
from clientela.campaign.application.ports import Conversion, DecisionRef
from clientela.campaign.domain.economics import PosteriorKey, ResponseCounts
from clientela.campaign.domain.model import Contact, Decision, Outcome, Trigger, TriggerKind
from clientela.shared.contracts import Channel, Segment, Tier
from clientela.shared.db import is_postgres, upsert_insert
from clientela.shared.outbox import SqlTransaction
from clientela.shared.settings import KafkaSettings

PENDING = "pending"
DECIDED = "decided"


def micros(amount: Decimal | float) -> int:
    """Return an amount in millionths of the base currency."""
    return round(Decimal(str(amount)) * MICROS)


class SqlContacts:
    """Contacts in SQL; each group of facts is guarded by its own version."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.contacts
        self._triggers = tables.triggers

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Contact]:
        """Return the stored contacts of these profiles."""
        if not profile_ids:
            return {}
        rows = await self._conn.execute(
            select(self._t).where(self._t.c.profile_id.in_(sorted(profile_ids)))
        )
        return {row.profile_id: contact_of(row) for row in rows}

    async def save_profiles(self, contacts: Sequence[Contact], now: datetime) -> None:
        """Store profile facts unless a newer or equal profile version is stored."""
        if not contacts:
            return
        insert = upsert_insert(self._conn)(self._t)
        stmt = insert.on_conflict_do_update(
            index_elements=["profile_id"],
            set_={
                name: insert.excluded[name]
                for name in ("version", "profile", "last_seen_at", "updated_at")
            },
            where=self._t.c.version < insert.excluded.version,
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "profile_id": c.profile_id,
                    "version": c.version,
                    "profile": profile_json(c),
                    "scored_version": 0,
                    "scores": {},
                    "last_seen_at": c.last_seen_at,
                    "complained_at": None,
                    "updated_at": now,
                }
                for c in sorted(contacts, key=lambda c: c.profile_id)
            ],
        )

    async def save_scores(self, contacts: Sequence[Contact], now: datetime) -> None:
        """Store score facts unless scores of a newer profile version are stored."""
        if not contacts:
            return
        insert = upsert_insert(self._conn)(self._t)
        stmt = insert.on_conflict_do_update(
            index_elements=["profile_id"],
            set_={
                name: insert.excluded[name] for name in ("scored_version", "scores", "updated_at")
            },
            where=self._t.c.scored_version <= insert.excluded.scored_version,
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "profile_id": c.profile_id,
                    "version": 0,
                    "profile": {"lifecycle": c.lifecycle.value},
                    "scored_version": c.scored_version,
                    "scores": scores_json(c),
                    "last_seen_at": None,
                    "complained_at": None,
                    "updated_at": now,
                }
                for c in sorted(contacts, key=lambda c: c.profile_id)
            ],
        )

    async def save_complaints(self, complaints: Mapping[str, datetime], now: datetime) -> None:
        """Record when people complained or unsubscribed (the latest time wins)."""
        if not complaints:
            return
        t = self._t
        stmt = (
            update(t)
            .where(
                t.c.profile_id == bindparam("pid"),
                (t.c.complained_at.is_(None)) | (t.c.complained_at < bindparam("at")),
            )
            .values(complained_at=bindparam("at"), updated_at=now)
        )
        await self._conn.execute(
            stmt, [{"pid": pid, "at": at} for pid, at in sorted(complaints.items())]
        )

    async def inactive(self, seen_before: datetime, days: int, limit: int) -> list[Contact]:
        """Return people last seen before the time with no inactivity trigger for that spell."""
        c, tr = self._t, self._triggers
        flagged = exists().where(
            tr.c.profile_id == c.c.profile_id,
            tr.c.episode_days == days,
            tr.c.episode_at == c.c.last_seen_at,
        )
        rows = await self._conn.execute(
            select(c)
            .where(c.c.last_seen_at < seen_before, c.c.version > 0, ~flagged)
            .order_by(c.c.last_seen_at)
            .limit(limit)
        )
        return [contact_of(row) for row in rows]


class SqlTriggers:
    """Triggers in SQL, pending until decided (or until their deferral is over)."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.triggers

    async def add(
        self,
        triggers: Sequence[Trigger],
        now: datetime,
        decided: Collection[str] = (),
        deferred: Mapping[str, datetime] | None = None,
    ) -> None:
        """Store new triggers (pending, decided or deferred); a known trigger is left alone."""
        if not triggers:
            return
        done, later = set(decided), deferred or {}
        stmt = upsert_insert(self._conn)(self._t).on_conflict_do_nothing(
            index_elements=["trigger_event_id"]
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "trigger_event_id": t.event_id,
                    "profile_id": t.profile_id,
                    "kind": t.kind.value,
                    "payload": trigger_json(t),
                    "status": DECIDED if t.event_id in done else PENDING,
                    "not_before": later.get(t.event_id),
                    "episode_days": t.inactive_days if t.kind is TriggerKind.INACTIVITY else None,
                    "episode_at": t.episode_at,
                    "created_at": now,
                    "decided_at": now if t.event_id in done else None,
                }
                for t in sorted(triggers, key=lambda t: t.event_id)
            ],
        )

    async def pending_for(self, profile_ids: Collection[str]) -> list[Trigger]:
        """Return the pending, not deferred triggers of these profiles, oldest first."""
        if not profile_ids:
            return []
        t = self._t
        rows = await self._conn.execute(
            select(t.c.payload)
            .where(
                t.c.profile_id.in_(sorted(profile_ids)),
                t.c.status == PENDING,
                t.c.not_before.is_(None),
            )
            .order_by(t.c.created_at, t.c.trigger_event_id)
        )
        return [trigger_of(row.payload) for row in rows]

    async def due(self, now: datetime, limit: int) -> list[Trigger]:
        """Return deferred triggers whose time has come, oldest first."""
        t = self._t
        rows = await self._conn.execute(
            select(t.c.payload)
            .where(t.c.status == PENDING, t.c.not_before.is_not(None), t.c.not_before <= now)
            .order_by(t.c.not_before, t.c.trigger_event_id)
            .limit(limit)
        )
        return [trigger_of(row.payload) for row in rows]

    async def mark_decided(self, trigger_event_ids: Collection[str], now: datetime) -> None:
        """Mark triggers as decided."""
        if not trigger_event_ids:
            return
        await self._conn.execute(
            update(self._t)
            .where(self._t.c.trigger_event_id.in_(sorted(trigger_event_ids)))
            .values(status=DECIDED, decided_at=now, not_before=None)
        )

    async def defer(self, until: Mapping[str, datetime]) -> None:
        """Keep triggers pending until the given times."""
        if not until:
            return
        t = self._t
        await self._conn.execute(
            update(t)
            .where(t.c.trigger_event_id == bindparam("tid"))
            .values(not_before=bindparam("nb")),
            [{"tid": tid, "nb": at} for tid, at in sorted(until.items())],
        )


class SqlDecisions:
    """Decisions in SQL, unique per campaign and trigger, with responses and conversions."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.decisions

    async def add(self, decisions: Sequence[Decision]) -> set[str]:
        """Record decisions; return the ids recorded now (an existing one is not replaced)."""
        if not decisions:
            return set()
        stmt = (
            upsert_insert(self._conn)(self._t)
            .on_conflict_do_nothing()
            .returning(self._t.c.decision_id)
        )
        result = await self._conn.execute(
            stmt,
            [
                {
                    "decision_id": d.decision_id,
                    "campaign_id": d.campaign_id,
                    "trigger_event_id": d.trigger_event_id,
                    "profile_id": d.profile_id,
                    "channel": d.channel.value if d.channel is not None else None,
                    "variant": d.variant,
                    "offer": d.offer,
                    "purpose": d.purpose.value,
                    "tier": d.tier.value,
                    "segment": d.segment.value if d.segment is not None else None,
                    "outcome": d.outcome.value,
                    "reasons": [r.model_dump(mode="json") for r in d.reasons],
                    "expected_value": d.expected_value,
                    "cost_micros": micros(d.cost) if d.outcome is Outcome.SENT else 0,
                    "created_at": d.decided_at,
                    "revenue_micros": 0,
                }
                for d in sorted(decisions, key=lambda d: d.decision_id)
            ],
        )
        return set(result.scalars().all())

    async def decided(self, trigger_event_ids: Collection[str]) -> set[tuple[str, str]]:
        """Return (campaign id, trigger id) of the decisions already taken for these triggers."""
        if not trigger_event_ids:
            return set()
        t = self._t
        rows = await self._conn.execute(
            select(t.c.campaign_id, t.c.trigger_event_id).where(
                t.c.trigger_event_id.in_(sorted(trigger_event_ids))
            )
        )
        return {(row.campaign_id, row.trigger_event_id) for row in rows}

    def _ref_columns(self) -> list[Column[Any]]:
        t = self._t
        return [
            t.c.decision_id, t.c.campaign_id, t.c.profile_id, t.c.outcome, t.c.channel,
            t.c.tier, t.c.segment, t.c.created_at, t.c.responded_at, t.c.converted_at,
        ]  # fmt: skip

    @staticmethod
    def _ref(r: Any) -> DecisionRef:
        return DecisionRef(
            decision_id=r.decision_id,
            campaign_id=r.campaign_id,
            profile_id=r.profile_id,
            outcome=Outcome(r.outcome),
            channel=Channel(r.channel) if r.channel else None,
            tier=Tier(r.tier),
            segment=Segment(r.segment) if r.segment else None,
            decided_at=aware(r.created_at),
            responded=r.responded_at is not None,
            converted=r.converted_at is not None,
        )

    async def refs(self, decision_ids: Collection[str]) -> dict[str, DecisionRef]:
        """Return the decisions with these ids."""
        if not decision_ids:
            return {}
        t = self._t
        rows = await self._conn.execute(
            select(*self._ref_columns()).where(t.c.decision_id.in_(sorted(decision_ids)))
        )
        return {row.decision_id: self._ref(row) for row in rows}

    async def open_for_conversion(
        self, profile_ids: Collection[str], since: datetime
    ) -> list[DecisionRef]:
        """Return sent and control decisions taken since then and not converted yet."""
        if not profile_ids:
            return []
        t = self._t
        stmt = (
            select(*self._ref_columns())
            .where(
                t.c.profile_id.in_(sorted(profile_ids)),
                t.c.outcome.in_([Outcome.SENT.value, Outcome.CONTROL.value]),
                t.c.created_at >= since,
                t.c.converted_at.is_(None),
            )
            .order_by(t.c.decision_id)
        )
        if is_postgres(self._conn):
            stmt = stmt.with_for_update()
        rows = await self._conn.execute(stmt)
        return [self._ref(row) for row in rows]

    async def record_responses(self, decision_ids: Collection[str], at: datetime) -> set[str]:
        """Mark sent decisions as responded; return those marked now."""
        if not decision_ids:
            return set()
        t = self._t
        result = await self._conn.execute(
            update(t)
            .where(
                t.c.decision_id.in_(sorted(decision_ids)),
                t.c.outcome == Outcome.SENT.value,
                t.c.responded_at.is_(None),
            )
            .values(responded_at=at)
            .returning(t.c.decision_id)
        )
        return set(result.scalars().all())

    async def record_conversions(self, conversions: Sequence[Conversion]) -> None:
        """Mark decisions as converted with the revenue of the purchase."""
        if not conversions:
            return
        t = self._t
        await self._conn.execute(
            update(t)
            .where(and_(t.c.decision_id == bindparam("did"), t.c.converted_at.is_(None)))
            .values(converted_at=bindparam("at"), revenue_micros=bindparam("rev")),
            [
                {"did": c.decision_id, "at": c.at, "rev": micros(c.revenue)}
                for c in sorted(conversions, key=lambda c: c.decision_id)
            ],
        )


class SqlEvidence:
    """Sends and responses per learning cell."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.evidence

    async def counts(self, campaign_ids: Collection[str]) -> dict[PosteriorKey, ResponseCounts]:
        """Return the evidence of these campaigns."""
        return await evidence_counts(self._conn, self._t, campaign_ids)

    async def add(
        self, sends: Mapping[PosteriorKey, int], responses: Mapping[PosteriorKey, int]
    ) -> None:
        """Add sends and responses to their cells (increments, safe across instances)."""
        keys = sorted(
            set(sends) | set(responses), key=lambda k: (k[0], k[1].value, k[2].value, k[3])
        )
        if not keys:
            return
        insert = upsert_insert(self._conn)(self._t)
        stmt = insert.on_conflict_do_update(
            index_elements=["campaign_id", "channel", "tier", "segment"],
            set_={
                "sends": self._t.c.sends + insert.excluded.sends,
                "responses": self._t.c.responses + insert.excluded.responses,
            },
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "campaign_id": k[0],
                    "channel": k[1].value,
                    "tier": k[2].value,
                    "segment": k[3],
                    "sends": sends.get(k, 0),
                    "responses": responses.get(k, 0),
                }
                for k in keys
            ],
        )


async def evidence_counts(
    conn: AsyncConnection, table: Table, campaign_ids: Collection[str]
) -> dict[PosteriorKey, ResponseCounts]:
    """Read evidence rows of these campaigns."""
    if not campaign_ids:
        return {}
    rows = await conn.execute(select(table).where(table.c.campaign_id.in_(sorted(campaign_ids))))
    return {
        (row.campaign_id, Channel(row.channel), Tier(row.tier), row.segment): ResponseCounts(
            int(row.sends), int(row.responses)
        )
        for row in rows
    }


class SqlBudgets:
    """Spending per campaign; rows are locked for the transaction on PostgreSQL."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.spend

    async def spent(self, campaign_ids: Collection[str]) -> dict[str, Decimal]:
        """Return what these campaigns spent, holding their rows until commit."""
        if not campaign_ids:
            return {}
        ids = sorted(campaign_ids)
        await self._conn.execute(
            upsert_insert(self._conn)(self._t).on_conflict_do_nothing(
                index_elements=["campaign_id"]
            ),
            [{"campaign_id": c, "spent_micros": 0} for c in ids],
        )
        stmt = select(self._t).where(self._t.c.campaign_id.in_(ids)).order_by(self._t.c.campaign_id)
        if is_postgres(self._conn):
            stmt = stmt.with_for_update()
        rows = await self._conn.execute(stmt)
        return {row.campaign_id: Decimal(row.spent_micros) / MICROS for row in rows}

    async def add(self, spend: Mapping[str, Decimal]) -> None:
        """Add spending."""
        if not spend:
            return
        insert = upsert_insert(self._conn)(self._t)
        stmt = insert.on_conflict_do_update(
            index_elements=["campaign_id"],
            set_={"spent_micros": self._t.c.spent_micros + insert.excluded.spent_micros},
        )
        await self._conn.execute(
            stmt,
            [{"campaign_id": c, "spent_micros": micros(v)} for c, v in sorted(spend.items())],
        )


class SqlUnitOfWork(SqlTransaction):
    """One transaction for a batch: state, inbox and outbox commit together."""

    contacts: SqlContacts
    triggers: SqlTriggers
    decisions: SqlDecisions
    evidence: SqlEvidence
    budgets: SqlBudgets

    def __init__(
        self,
        engine: AsyncEngine,
        tables: CampaignTables,
        kafka: KafkaSettings,
        on_staged_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            engine,
            inbox=tables.inbox,
            outbox=tables.outbox,
            kafka=kafka,
            on_staged_commit=on_staged_commit,
        )
        self._tables = tables

    def _opened(self, conn: AsyncConnection) -> None:
        self.contacts = SqlContacts(conn, self._tables)
        self.triggers = SqlTriggers(conn, self._tables)
        self.decisions = SqlDecisions(conn, self._tables)
        self.evidence = SqlEvidence(conn, self._tables)
        self.budgets = SqlBudgets(conn, self._tables)

    def _closed(self) -> None:
        for name in ("contacts", "triggers", "decisions", "evidence", "budgets"):
            self.__dict__.pop(name, None)
