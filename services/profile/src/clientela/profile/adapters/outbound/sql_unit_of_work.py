"""SQL unit of work: inbox, identity graph, profiles, timeline and outbox in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import Row, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from clientela.profile.adapters.outbound import tables
from clientela.profile.application.ports import OutgoingEvent
from clientela.profile.domain.identity import IdentifierClaim, IdentifierKey
from clientela.profile.domain.profile import Profile
from clientela.shared import outbox as shared_outbox
from clientela.shared.codec import to_record
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.db import upsert_insert
from clientela.shared.settings import KafkaSettings

T = TypeVar("T")

# Keeps every statement well under the 32,767 bind parameters PostgreSQL accepts; a normal
# batch fits in one chunk, so it is one query.
_MAX_KEYS_PER_QUERY = 5_000


def chunks(items: Sequence[T], size: int = _MAX_KEYS_PER_QUERY) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most size items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def profile_from_row(row: Row[Any]) -> Profile:
    """Rebuild a domain profile from a profiles row."""
    return Profile.from_state(
        row.profile_id, row.version, row.created_at, row.updated_at, row.lifecycle, row.state
    )


class SqlInbox:
    """Processed event ids in the inbox table."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Record the ids as processed; return those seen for the first time."""
        return await shared_outbox.claim_new(self._conn, tables.inbox, event_ids)


class SqlIdentityGraph:
    """Identifier ownership in the identifiers table."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def owners(self, keys: Collection[IdentifierKey]) -> dict[IdentifierKey, str]:
        """Return the owner of each known identifier among keys."""
        t = tables.identifiers
        found: dict[IdentifierKey, str] = {}
        for part in chunks(sorted(keys)):
            rows = await self._conn.execute(
                select(t.c.id_type, t.c.id_value, t.c.profile_id).where(
                    tuple_(t.c.id_type, t.c.id_value).in_(part)
                )
            )
            found.update({(r.id_type, r.id_value): r.profile_id for r in rows})
        return found

    async def attach(self, claims: Sequence[IdentifierClaim]) -> None:
        """Insert new identifiers; one already owned (by a concurrent writer) is kept."""
        if not claims:
            return
        now = datetime.now(UTC)
        stmt = upsert_insert(self._conn)(tables.identifiers).on_conflict_do_nothing(
            index_elements=["id_type", "id_value"]
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "id_type": c.id_type,
                    "id_value": c.id_value,
                    "profile_id": c.profile_id,
                    "created_at": now,
                }
                for c in claims
            ],
        )


class SqlProfileRepository:
    """Profiles in the profiles table, the state as a JSON snapshot."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """Return the stored profiles among the ids."""
        t = tables.profiles
        found: dict[str, Profile] = {}
        for part in chunks(sorted(profile_ids)):
            rows = await self._conn.execute(select(t).where(t.c.profile_id.in_(part)))
            found.update({row.profile_id: profile_from_row(row) for row in rows})
        return found

    async def save_many(self, profiles: Sequence[Profile]) -> None:
        """Insert or replace the profiles in one executemany."""
        if not profiles:
            return
        t = tables.profiles
        insert = upsert_insert(self._conn)(t)
        stmt = insert.on_conflict_do_update(
            index_elements=["profile_id"],
            set_={
                "version": insert.excluded.version,
                "updated_at": insert.excluded.updated_at,
                "lifecycle": insert.excluded.lifecycle,
                "state": insert.excluded.state,
            },
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "profile_id": p.profile_id,
                    "version": p.version,
                    "created_at": p.created_at,
                    "updated_at": p.updated_at,
                    "lifecycle": p.stage.value,
                    "state": p.to_state(),
                }
                for p in profiles
            ],
        )


class SqlTimeline:
    """Touchpoints in the touchpoints table, the full event kept for rebuilds."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def known(self, event_ids: Collection[str]) -> set[str]:
        """Return the ids among event_ids already stored."""
        t = tables.touchpoints
        found: set[str] = set()
        for part in chunks(sorted(event_ids)):
            rows = await self._conn.execute(select(t.c.event_id).where(t.c.event_id.in_(part)))
            found.update(rows.scalars())
        return found

    async def add(self, entries: Sequence[tuple[str, TouchpointRecorded]]) -> None:
        """File touchpoints under their profiles."""
        if not entries:
            return
        stmt = upsert_insert(self._conn)(tables.touchpoints).on_conflict_do_nothing(
            index_elements=["event_id"]
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "event_id": event.event_id,
                    "profile_id": profile_id,
                    "occurred_at": event.occurred_at,
                    "kind": event.data.kind.value,
                    "channel": event.data.channel.value,
                    "direction": event.data.direction.value,
                    "agent_id": event.data.agent.agent_id if event.data.agent else None,
                    "payload": event.model_dump(mode="json"),
                }
                for profile_id, event in sorted(entries, key=lambda e: e[1].event_id)
            ],
        )


class SqlOutbox:
    """Outgoing events staged in the outbox table."""

    def __init__(self, conn: AsyncConnection, kafka: KafkaSettings) -> None:
        self._conn = conn
        self._kafka = kafka
        self.staged = 0

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        """Queue events for the relay."""
        records = [
            to_record(self._kafka.topic(e.topic), e.key, e.event, e.accepted_at_ms) for e in events
        ]
        await shared_outbox.stage(self._conn, tables.outbox, records)
        self.staged += len(records)


class SqlUnitOfWork:
    """One database transaction; on commit with staged events it wakes the outbox relay."""

    def __init__(
        self,
        engine: AsyncEngine,
        kafka: KafkaSettings,
        on_staged_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._kafka = kafka
        self._on_staged_commit = on_staged_commit
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._inbox: SqlInbox | None = None
        self._identities: SqlIdentityGraph | None = None
        self._profiles: SqlProfileRepository | None = None
        self._timeline: SqlTimeline | None = None
        self._outbox: SqlOutbox | None = None

    @staticmethod
    def _open(part: T | None) -> T:
        if part is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return part

    @property
    def inbox(self) -> SqlInbox:
        """The processed-event ids."""
        return self._open(self._inbox)

    @property
    def identities(self) -> SqlIdentityGraph:
        """The identifier owners."""
        return self._open(self._identities)

    @property
    def profiles(self) -> SqlProfileRepository:
        """The profiles."""
        return self._open(self._profiles)

    @property
    def timeline(self) -> SqlTimeline:
        """The touchpoints."""
        return self._open(self._timeline)

    @property
    def outbox(self) -> SqlOutbox:
        """The outgoing events."""
        return self._open(self._outbox)

    async def __aenter__(self) -> Self:
        """Begin the transaction."""
        conn = await self._engine.connect()
        try:
            self._tx = await conn.begin()
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._inbox = SqlInbox(conn)
        self._identities = SqlIdentityGraph(conn)
        self._profiles = SqlProfileRepository(conn)
        self._timeline = SqlTimeline(conn)
        self._outbox = SqlOutbox(conn, self._kafka)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back what was not committed and release the connection."""
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            if self._conn is not None:
                await self._conn.close()
            self._conn = self._tx = None
            self._inbox = self._identities = self._profiles = self._timeline = None
            self._outbox = None

    async def commit(self) -> None:
        """Commit; wake the relay when events were staged."""
        tx = self._open(self._tx)
        await tx.commit()
        if self._outbox is not None and self._outbox.staged and self._on_staged_commit:
            self._on_staged_commit()
