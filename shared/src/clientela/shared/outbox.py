"""Transactional inbox and outbox: state, processed ids and outgoing events commit together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from clientela.shared import metrics
from clientela.shared.codec import OutgoingEvent, OutgoingRecord, to_record
from clientela.shared.db import UtcDateTime, is_postgres, upsert_insert
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    """Declare the outbox: events waiting to be published, in commit order."""
    return Table(
        "outbox",
        metadata,
        Column(
            "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("topic", String(255), nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=True),
        Column("headers", JSON, nullable=False),
        Column(
            "created_at",
            UtcDateTime(),
            nullable=False,
            server_default=func.current_timestamp(),
        ),
    )


def inbox_table(metadata: MetaData) -> Table:
    """Declare the inbox: ids of events already applied, so a redelivery is a no-op."""
    return Table(
        "inbox",
        metadata,
        Column("event_id", String(128), primary_key=True),
        Column("processed_at", UtcDateTime(), nullable=False, index=True),
    )


async def claim_new(conn: AsyncConnection, inbox: Table, event_ids: Sequence[str]) -> set[str]:
    """Record event ids as processed; return those seen for the first time."""
    if not event_ids:
        return set()
    now = datetime.now(UTC)
    unique = list(dict.fromkeys(event_ids))
    stmt = (
        upsert_insert(conn)(inbox)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(inbox.c.event_id)
    )
    result = await conn.execute(stmt, [{"event_id": e, "processed_at": now} for e in unique])
    return set(result.scalars().all())


async def stage(conn: AsyncConnection, outbox: Table, records: Sequence[OutgoingRecord]) -> None:
    """Add records to the outbox inside the caller's transaction."""
    if not records:
        return
    await conn.execute(
        outbox.insert(),
        [
            {
                "topic": r.topic,
                "key": r.key,
                "value": r.value,
                "headers": [[k, v.decode("latin-1")] for k, v in r.headers],
            }
            for r in records
        ],
    )


class SqlTransaction:
    """One transaction with the service's inbox and outbox; the base of each unit of work.

    Subclasses build their repositories on the open connection in `_opened` and drop them in
    `_closed`. Use as `async with uow: ...; await uow.commit()`; leaving without a commit
    rolls back.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        inbox: Table,
        outbox: Table,
        kafka: KafkaSettings,
        on_staged_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._inbox_table = inbox
        self._outbox_table = outbox
        self._kafka = kafka
        self._on_staged_commit = on_staged_commit
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._staged = 0

    @property
    def connection(self) -> AsyncConnection:
        """Return the open connection, or raise when the unit of work is not entered."""
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._conn

    def _opened(self, conn: AsyncConnection) -> None:
        """Build repositories on the connection (subclasses)."""

    def _closed(self) -> None:
        """Drop repositories (subclasses)."""

    async def __aenter__(self) -> Self:
        conn = await self._engine.connect()
        try:
            self._tx = await conn.begin()
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._staged = 0
        self._opened(conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            if self._conn is not None:
                await self._conn.close()
            self._conn = self._tx = None
            self._closed()

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Record event ids as processed; return those seen for the first time."""
        return await claim_new(self.connection, self._inbox_table, event_ids)

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        """Queue events in the outbox, to be published once this transaction commits."""
        records = [
            to_record(
                self._kafka.topic(e.topic),
                e.key,
                e.event,
                e.accepted_at_ms,
                trace=e.trace,
                linked_causes=e.linked_causes,
            )
            for e in events
        ]
        await stage(self.connection, self._outbox_table, records)
        self._staged += len(records)

    async def commit(self) -> None:
        """Commit; wake the relay when events were staged."""
        if self._tx is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        await self._tx.commit()
        if self._staged and self._on_staged_commit is not None:
            self._on_staged_commit()


class OutboxRelay:
    """Publishes outbox rows in order and deletes them once the broker acknowledged them."""

    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Table,
        inbox: Table | None,
        publisher: KafkaPublisher,
        *,
        name: str,
        batch_size: int = 500,
        idle_interval_s: float = 0.2,
        inbox_retention: timedelta = timedelta(days=7),
        pending_sample_s: float = 5.0,
    ) -> None:
        self._name = name
        self._engine = engine
        self._outbox = outbox
        self._inbox = inbox
        self._publisher = publisher
        self._batch = batch_size
        self._idle = idle_interval_s
        self._retention = inbox_retention
        self._wake = asyncio.Event()
        # One relay per service publishes at a time, so per-key order survives several replicas.
        self._lock_key = zlib.crc32(f"clientela-outbox-{name}".encode())
        self._last_prune = 0.0
        self._pending_sample_s = pending_sample_s
        self._last_sample = float("-inf")

    def wake(self) -> None:
        """Ask the relay to look at the outbox now (called after a commit that staged events)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; transient failures are logged and retried with backoff."""
        delay = self._idle
        while True:
            try:
                sent = await self.relay_once()
                await self._maybe_prune()
                await self._maybe_sample_pending()
                delay = self._idle
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.outbox_relay_failures.labels(self._name).inc()
                log.exception("outbox relay failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if sent < self._batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle)

    async def relay_once(self) -> int:
        """Publish one batch of outbox rows; return how many were published."""
        async with self._engine.begin() as conn:
            if is_postgres(conn):
                locked = await conn.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": self._lock_key}
                )
                if not locked:
                    return 0
            rows = (
                await conn.execute(
                    select(
                        self._outbox.c.id,
                        self._outbox.c.topic,
                        self._outbox.c.key,
                        self._outbox.c.value,
                        self._outbox.c.headers,
                    )
                    .order_by(self._outbox.c.id)
                    .limit(self._batch)
                )
            ).all()
            if not rows:
                return 0
            await self._publisher.publish(
                [
                    OutgoingRecord(
                        topic=row.topic,
                        key=row.key,
                        value=row.value,
                        headers=[(k, v.encode("latin-1")) for k, v in row.headers],
                    )
                    for row in rows
                ]
            )
            # Delete exactly the rows published: a row with a lower id may commit late and
            # must not be swept away unpublished.
            await conn.execute(
                delete(self._outbox).where(self._outbox.c.id.in_([row.id for row in rows]))
            )
        metrics.outbox_published.labels(self._name).inc(len(rows))
        return len(rows)

    async def pending(self) -> int:
        """Return how many events wait in the outbox."""
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(self._outbox)) or 0)

    async def _maybe_sample_pending(self) -> None:
        # A count per round would cost a query per publish; a sample every few seconds is
        # enough to alert on a relay that falls behind.
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_sample < self._pending_sample_s:
            return
        self._last_sample = loop_time
        metrics.outbox_pending.labels(self._name).set(await self.pending())

    async def _maybe_prune(self) -> None:
        loop_time = asyncio.get_running_loop().time()
        if self._inbox is None or loop_time - self._last_prune < 3600:
            return
        self._last_prune = loop_time
        cutoff = datetime.now(UTC) - self._retention
        async with self._engine.begin() as conn:
            await conn.execute(delete(self._inbox).where(self._inbox.c.processed_at < cutoff))
