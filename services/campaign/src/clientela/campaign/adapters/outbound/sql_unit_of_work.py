"""SQL repositories and the unit of work: one transaction per consumed batch."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from types import TracebackType

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from clientela.campaign.adapters.outbound.tables import CampaignTables
from clientela.campaign.application.ports import OutgoingMessage, ReceivedTrigger
from clientela.campaign.domain.model import Contact, Decision
from clientela.shared import outbox
from clientela.shared.codec import to_record
from clientela.shared.contracts import Channel, ConsentStatus, Lifecycle, TierChangedEvent
from clientela.shared.db import upsert_insert

PENDING = "pending"
DECIDED = "decided"


class SqlContacts:
    """Contacts in SQL; an older version never overwrites a newer one."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.contacts

    async def save_newer(self, contacts: Sequence[Contact], now: datetime) -> None:
        """Store each contact unless a newer or equal version is already stored."""
        if not contacts:
            return
        insert = upsert_insert(self._conn)(self._t)
        stmt = insert.on_conflict_do_update(
            index_elements=["profile_id"],
            set_={
                name: insert.excluded[name]
                for name in ("version", "lifecycle", "reachable_channels", "consent", "updated_at")
            },
            where=self._t.c.version < insert.excluded.version,
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "profile_id": c.profile_id,
                    "version": c.version,
                    "lifecycle": c.lifecycle.value,
                    "reachable_channels": sorted(ch.value for ch in c.reachable_channels),
                    "consent": {ch.value: status.value for ch, status in c.consent.items()},
                    "updated_at": now,
                }
                for c in contacts
            ],
        )

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Contact]:
        """Return the stored contacts of these profiles."""
        if not profile_ids:
            return {}
        rows = await self._conn.execute(
            select(self._t).where(self._t.c.profile_id.in_(list(profile_ids)))
        )
        return {
            row.profile_id: Contact(
                profile_id=row.profile_id,
                version=row.version,
                lifecycle=Lifecycle(row.lifecycle),
                reachable_channels=frozenset(Channel(c) for c in row.reachable_channels),
                consent={Channel(k): ConsentStatus(v) for k, v in row.consent.items()},
            )
            for row in rows
        }


class SqlTriggers:
    """Tier changes in SQL, pending until decided."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.triggers

    async def add(self, triggers: Sequence[ReceivedTrigger], now: datetime) -> None:
        """Store new triggers as pending; a known trigger is left as it is."""
        if not triggers:
            return
        stmt = upsert_insert(self._conn)(self._t).on_conflict_do_nothing(
            index_elements=["trigger_event_id"]
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "trigger_event_id": t.event_id,
                    "profile_id": t.profile_id,
                    "payload": t.event.model_dump(mode="json"),
                    "required_profile_version": t.required_profile_version,
                    "accepted_at_ms": t.accepted_at_ms,
                    "status": PENDING,
                    "created_at": now,
                }
                for t in triggers
            ],
        )

    async def pending_for(self, profile_ids: Collection[str]) -> list[ReceivedTrigger]:
        """Return the pending triggers of these profiles, oldest first."""
        if not profile_ids:
            return []
        rows = await self._conn.execute(
            select(self._t.c.payload, self._t.c.accepted_at_ms)
            .where(self._t.c.profile_id.in_(list(profile_ids)), self._t.c.status == PENDING)
            .order_by(self._t.c.created_at, self._t.c.trigger_event_id)
        )
        return [
            ReceivedTrigger(TierChangedEvent.model_validate(row.payload), row.accepted_at_ms)
            for row in rows
        ]

    async def mark_decided(self, trigger_event_ids: Collection[str], now: datetime) -> None:
        """Mark triggers as decided."""
        if not trigger_event_ids:
            return
        await self._conn.execute(
            update(self._t)
            .where(self._t.c.trigger_event_id.in_(list(trigger_event_ids)))
            .values(status=DECIDED, decided_at=now)
        )


class SqlDecisions:
    """Decisions in SQL, unique per campaign and trigger."""

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
                    "purpose": d.purpose.value,
                    "tier": d.tier.value,
                    "outcome": d.outcome.value,
                    "reasons": [r.model_dump(mode="json") for r in d.reasons],
                    "created_at": d.decided_at,
                }
                for d in decisions
            ],
        )
        return set(result.scalars().all())


class SqlUnitOfWork:
    """One connection and transaction for a batch: state, inbox and outbox commit together."""

    contacts: SqlContacts
    triggers: SqlTriggers
    decisions: SqlDecisions

    def __init__(self, engine: AsyncEngine, tables: CampaignTables, messages_topic: str) -> None:
        self._engine = engine
        self._tables = tables
        self._topic = messages_topic
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        """Begin the transaction."""
        self._conn = await self._engine.connect()
        self._tx = await self._conn.begin()
        self.contacts = SqlContacts(self._conn, self._tables)
        self.triggers = SqlTriggers(self._conn, self._tables)
        self.decisions = SqlDecisions(self._conn, self._tables)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back unless committed, and release the connection."""
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            if self._conn is not None:
                await self._conn.close()
            self._conn = self._tx = None

    @property
    def _connection(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not started")
        return self._conn

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Record incoming event ids as processed; return those never seen before."""
        return await outbox.claim_new(self._connection, self._tables.inbox, event_ids)

    async def stage(self, messages: Sequence[OutgoingMessage]) -> None:
        """Queue messages for publication once the transaction commits."""
        await outbox.stage(
            self._connection,
            self._tables.outbox,
            [
                to_record(self._topic, m.event.data.profile_id, m.event, m.accepted_at_ms)
                for m in messages
            ],
        )

    async def commit(self) -> None:
        """Commit everything done in this unit of work."""
        if self._tx is None:
            raise RuntimeError("the unit of work is not started")
        await self._tx.commit()
