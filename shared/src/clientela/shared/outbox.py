"""Transactional inbox and outbox: state, processed ids and outgoing events commit together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from types import TracebackType
from typing import Any, NamedTuple, Self

import asyncpg
import msgspec
from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlalchemy.schema import SchemaItem
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import BaseDDLElement

from clientela.shared import metrics
from clientela.shared.codec import (
    EncodedEvent,
    OutgoingEvent,
    OutgoingRecord,
    encoded_rows,
)
from clientela.shared.contracts import TopicSpec
from clientela.shared.db import UtcDateTime, is_postgres, upsert_insert
from clientela.shared.kafka import PublishError, RecordPublisher, Row
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)

# The outbox keeps headers as a JSON array of [name, value] pairs, the value as latin-1 text
# (any bytes survive the round trip); services that COPY into the outbox write the same.
_encode_json = msgspec.json.Encoder().encode
_decode_header_pairs = msgspec.json.Decoder(list[tuple[str, str]]).decode

# A transaction's records go into ONE outbox row (ADR 2): the row's topic is PACKED (the empty
# string, never a Kafka topic name) and its value the records, msgpack-encoded in order. Rows
# inserted and deleted per batch instead of per record are most of what the outbox saves the
# database; single-record rows (written before packing) are still relayed.
PACKED = ""
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(
    list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]
).decode

# PostgreSQL: one statement per step, the batch as array parameters, so a batch costs one
# round trip and one prepared statement whatever its size. `{table}` is schema-qualified.
_PG_SQL = {
    "claim": (
        "INSERT INTO {table} (event_id, processed_at) "
        "SELECT e, $2::timestamptz FROM unnest($1::text[]) AS e "
        "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    ),
    # One packed row per transaction (ids give the relay's order across transactions).
    "stage": "INSERT INTO {table} (topic, key, value, headers) VALUES ($1, NULL, $2, '[]')",
    # Claim a batch: take the relay's advisory lock (evaluated once, as an init plan), then
    # delete the oldest rows by primary key and return them. The caller publishes before it
    # commits, so a failed publish or a crash rolls the rows back: at least once, in id order.
    "relay": (
        "DELETE FROM {table} WHERE id = ANY(ARRAY("
        "SELECT id FROM {table} WHERE (SELECT pg_try_advisory_xact_lock($1::bigint)) "
        "ORDER BY id LIMIT $2)) "
        "RETURNING id, topic, key, value, headers::text"
    ),
}
_PG_SQL_CACHE: dict[tuple[str, str | None, str], str] = {}

# Tables of the service's schema that hold over three times the rows their statistics saw
# (and a thousand more). Autovacuum analyzes only on its next pass, a minute apart by
# default; until then a young table has no statistics and the planner guesses selectivities
# (a scan of every pending trigger instead of an index probe per person). Estimates scale
# with a table's current size, so a table needs statistics again only when it has grown
# several times over, not when its rows are updated. A coarse sample (a tenth of the
# default) is enough to choose plans and costs a tenth; autovacuum's passes refine it later.
_STALE_TABLES = (
    "SELECT format('%I.%I', s.schemaname, s.relname) FROM pg_stat_user_tables s "
    "JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.schemaname = COALESCE($1::text, current_schema()) "
    "AND s.n_live_tup > 1000 + 3 * GREATEST(c.reltuples, 0) ORDER BY s.relname"
)
_ID = itemgetter(0)


def _schema(table: Table, options: Mapping[str, Any]) -> str | None:
    """Return the schema the connection maps the table to (None: the search path)."""
    translate = options.get("schema_translate_map") or {}
    schema: str | None = translate.get(table.schema, table.schema)
    return schema


def _pg_sql(name: str, table: Table, options: Mapping[str, Any]) -> str:
    """Return a hot-path statement for the table in the schema the connection maps it to."""
    schema = _schema(table, options)
    cache_key = (name, schema, table.name)
    sql = _PG_SQL_CACHE.get(cache_key)
    if sql is None:
        quoted = '"' + table.name.replace('"', '""') + '"'
        if schema:
            quoted = '"' + schema.replace('"', '""') + '".' + quoted
        sql = _PG_SQL_CACHE[cache_key] = _PG_SQL[name].format(table=quoted)
    return sql


def _options(conn: AsyncConnection) -> Mapping[str, Any]:
    sync = conn.sync_connection
    return sync.get_execution_options() if sync is not None else {}


async def _driver_in_transaction(conn: AsyncConnection) -> Any | None:
    """Return the asyncpg connection under conn once its transaction has begun, else None."""
    # SQLAlchemy sends BEGIN with its first statement: a statement sent straight to the
    # driver before that would run outside the transaction, so it goes through SQLAlchemy.
    driver = (await conn.get_raw_connection()).driver_connection
    return driver if driver is not None and driver.is_in_transaction() else None


def _wire_headers(stored: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in _decode_header_pairs(stored)]


# A packed row holds a whole transaction's records (hundreds of KB), always compressed out of
# line: PostgreSQL's default (pglz) cost the database 18-20 us of CPU per touchpoint to write
# profile's, lz4 2-4 us at the same stored size, and it reads back faster for the relay.
# Servers built without lz4 keep the default.
LZ4_AVAILABLE = (
    "SELECT coalesce(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings "
    "WHERE name = 'default_toast_compression'"
)


def set_outbox_compression(bind: Connection, method: str = "lz4", table: str = "outbox") -> None:
    """Compress the outbox's values with `method` (lz4 or default) where PostgreSQL has lz4.

    For migrations: only how new values are compressed changes; stored rows stay readable.
    """
    if bind.dialect.name == "postgresql" and bind.exec_driver_sql(LZ4_AVAILABLE).scalar():
        bind.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN value SET COMPRESSION {method}")


def _lz4_available(
    ddl: BaseDDLElement,
    target: SchemaItem | str,
    bind: Connection | None,
    tables: list[Table] | None = None,
    state: Any | None = None,
    *,
    dialect: Dialect,
    compiler: DDLCompiler | None = None,
    checkfirst: bool = False,
) -> bool:
    return bind is not None and bool(bind.exec_driver_sql(LZ4_AVAILABLE).scalar())


# A DDL construct, so the table's name is rendered with the engine's schema translation.
_COMPRESS_ON_CREATE = DDL(  # type: ignore[no-untyped-call]
    "ALTER TABLE %(fullname)s ALTER COLUMN value SET COMPRESSION lz4"
).execute_if(dialect="postgresql", callable_=_lz4_available)


def outbox_table(metadata: MetaData) -> Table:
    """Declare the outbox: events waiting to be published, in commit order."""
    table = Table(
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
    event.listen(table, "after_create", _COMPRESS_ON_CREATE)
    return table


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
    if is_postgres(conn):
        sql = _pg_sql("claim", inbox, _options(conn))
        driver = await _driver_in_transaction(conn)
        if driver is not None:
            return {row[0] for row in await driver.fetch(sql, unique, now)}
        result = await conn.exec_driver_sql(sql, (unique, now))
        return {row[0] for row in result}
    stmt = (
        upsert_insert(conn)(inbox)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(inbox.c.event_id)
    )
    result = await conn.execute(stmt, [{"event_id": e, "processed_at": now} for e in unique])
    return set(result.scalars().all())


def pack(records: Sequence[OutgoingRecord]) -> bytes:
    """Return records as the value of one packed outbox row, in order."""
    return _pack([(r.topic, r.key, r.value, r.headers) for r in records])


def unpack(value: bytes) -> list[Row]:
    """Return the records of a packed outbox row, in order."""
    return _unpack(value)


def packed_count(head: bytes | None) -> int:
    """Return how many records a packed row holds, from the first bytes of its value."""
    if not head:
        return 0
    first = head[0]
    if 0x90 <= first <= 0x9F:  # fixarray
        return first - 0x90
    if first == 0xDC:  # array 16
        return int.from_bytes(head[1:3], "big")
    if first == 0xDD:  # array 32
        return int.from_bytes(head[1:5], "big")
    raise ValueError(f"not a packed outbox value (first byte {first:#x})")


async def stage(conn: AsyncConnection, outbox: Table, records: Sequence[OutgoingRecord]) -> None:
    """Add records to the outbox inside the caller's transaction, as one packed row."""
    if records:
        await stage_packed(conn, outbox, pack(records))


async def stage_packed(conn: AsyncConnection, outbox: Table, value: bytes) -> None:
    """Add one packed row (see `pack`) to the outbox inside the caller's transaction."""
    if is_postgres(conn):
        sql = _pg_sql("stage", outbox, _options(conn))
        driver = await _driver_in_transaction(conn)
        if driver is not None:
            await driver.execute(sql, PACKED, value)
        else:
            await conn.exec_driver_sql(sql, (PACKED, value))
        return
    await conn.execute(
        outbox.insert(), [{"topic": PACKED, "key": None, "value": value, "headers": []}]
    )


async def unstage_keys(conn: AsyncConnection, outbox: Table, keys: Collection[bytes]) -> int:
    """Withdraw unpublished records under the keys (e.g. about an erased profile); return how many.

    Rows waiting in the outbox are few (the relay publishes on each commit), so packed rows are
    read, filtered and rewritten here; single-record rows are deleted by key.
    """
    if not keys:
        return 0
    wanted = set(keys)
    removed = (
        await conn.execute(delete(outbox).where(outbox.c.key.in_(sorted(wanted))))
    ).rowcount or 0
    found = (
        await conn.execute(
            select(outbox.c.id, outbox.c.value)
            .where(outbox.c.topic == PACKED)
            .order_by(outbox.c.id)
            .with_for_update()
        )
    ).all()
    for row_id, value in found:
        rows = unpack(value)
        kept = [r for r in rows if r[1] not in wanted]
        if len(kept) == len(rows):
            continue
        removed += len(rows) - len(kept)
        if kept:
            await conn.execute(
                outbox.update().where(outbox.c.id == row_id).values(value=_pack(kept))
            )
        else:
            await conn.execute(delete(outbox).where(outbox.c.id == row_id))
    return removed


class StagedRecord(NamedTuple):
    """A record waiting in the outbox."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


async def staged_records(conn: AsyncConnection, outbox: Table) -> list[StagedRecord]:
    """Return the records waiting in the outbox, in publishing order (tests and tools)."""
    found = (
        await conn.execute(
            select(outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers).order_by(
                outbox.c.id
            )
        )
    ).all()
    return [
        StagedRecord(*record)
        for r in found
        for record in _relayed(
            r.topic, r.key, r.value, [(k, v.encode("latin-1")) for k, v in r.headers]
        )
    ]


def _relayed(topic: str, key: bytes | None, value: bytes | None, headers: list[Any]) -> list[Row]:
    """Return the records an outbox row holds (a packed row holds many)."""
    if topic == PACKED:
        return unpack(value) if value is not None else []
    return [(topic, key, value, headers)]


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
        """Queue events, to be published once this transaction commits."""
        await self.stage_encoded([EncodedEvent.of(e) for e in events])

    async def stage_encoded(self, events: Sequence[EncodedEvent]) -> None:
        """Queue events already encoded, to be published once this transaction commits."""
        if events:
            await stage_packed(self.connection, self._outbox_table, self.packed(events))
            self.count_staged(len(events))

    def packed(self, events: Sequence[EncodedEvent]) -> bytes:
        """Return encoded events as the value of one packed outbox row (see `pack`)."""
        return _pack(encoded_rows(events, self._kafka.topic))

    async def stage_records(self, records: Sequence[OutgoingRecord]) -> None:
        """Queue records already built, to be published once this transaction commits."""
        await stage(self.connection, self._outbox_table, records)
        self.count_staged(len(records))

    def count_staged(self, count: int) -> None:
        """Count records a subclass wrote to the outbox itself, so the commit wakes the relay."""
        self._staged += count

    async def stage_tombstones(self, topic: TopicSpec, keys: Sequence[str]) -> None:
        """Queue null-valued records under the keys: deletions on a compacted topic."""
        name = self._kafka.topic(topic)
        await self.stage_records(
            [OutgoingRecord(topic=name, key=key.encode(), value=None) for key in keys]
        )

    async def commit(self) -> None:
        """Commit; wake the relay when events were staged."""
        if self._tx is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        await self._tx.commit()
        if self._staged and self._on_staged_commit is not None:
            self._on_staged_commit()


class OutboxRelay:
    """Publishes outbox rows in order and deletes them once the broker acknowledged them.

    On PostgreSQL the relay keeps one connection and spends three round trips per batch
    (BEGIN, claim, COMMIT); on SQLite it reads, publishes, then deletes what it published.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Table,
        inbox: Table | None,
        publisher: RecordPublisher,
        *,
        name: str,
        batch_size: int = 64,
        idle_interval_s: float = 0.2,
        inbox_retention: timedelta = timedelta(days=7),
        pending_sample_s: float = 5.0,
        analyze_interval_s: float = 10.0,
    ) -> None:
        self._name = name
        self._engine = engine
        self._outbox = outbox
        self._inbox = inbox
        self._publisher = publisher
        # Outbox rows claimed at once: a packed row holds a whole transaction's records.
        self._batch = batch_size
        self._claimed = 0
        self._idle = idle_interval_s
        self._retention = inbox_retention
        self._wake = asyncio.Event()
        # One relay per service publishes at a time, so per-key order survives several replicas.
        self._lock_key = zlib.crc32(f"clientela-outbox-{name}".encode())
        self._last_prune = 0.0
        self._pending_sample_s = pending_sample_s
        self._last_sample = float("-inf")
        self._analyze_s = analyze_interval_s
        self._last_analyze = float("-inf")
        self._held: AsyncConnection | None = None
        self._running = False
        # relay_once may be called beside run() (e.g. draining before exit): one at a time on
        # the kept connection.
        self._turn = asyncio.Lock()
        self._published = metrics.outbox_published.labels(name)

    def wake(self) -> None:
        """Ask the relay to look at the outbox now (called after a commit that staged events)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; transient failures are logged and retried with backoff."""
        delay = self._idle
        self._running = True
        try:
            while True:
                try:
                    await self.relay_once()
                    await self._maybe_prune()
                    await self._maybe_sample_pending()
                    await self._maybe_analyze()
                    delay = self._idle
                except asyncio.CancelledError:
                    raise
                except Exception:
                    metrics.outbox_relay_failures.labels(self._name).inc()
                    log.exception("outbox relay failed; retrying in %.1fs", delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                if self._claimed < self._batch:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._idle)
        finally:
            self._running = False
            await self.close()

    async def close(self) -> None:
        """Give back the connection the relay keeps between batches while it runs."""
        async with self._turn:
            held, self._held = self._held, None
            if held is not None:
                await held.close()

    async def relay_once(self) -> int:
        """Publish one batch of outbox rows; return how many were published."""
        async with self._turn:
            if is_postgres(self._engine):
                sent = await self._relay_postgres()
            else:
                sent = await self._relay_sql()
        if sent:
            self._published.inc(sent)
        return sent

    async def _relay_postgres(self) -> int:
        conn = self._held or await self._engine.connect()
        self._held = None
        try:
            sent = await self._claim_and_publish(conn)
        except PublishError:
            await self._release(conn)  # rolled back; the connection is sound
            raise
        except BaseException:
            # The connection may be broken or mid-transaction: drop it, and with it the lock.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise
        await self._release(conn)
        return sent

    async def _release(self, conn: AsyncConnection) -> None:
        # While run() loops the connection is kept: no pool checkout (and ping) per batch.
        if self._running:
            self._held = conn
        else:
            await conn.close()

    async def _claim_and_publish(self, conn: AsyncConnection) -> int:
        # Straight on the driver: SQLAlchemy sees no statement, so it never opens a
        # transaction of its own on this connection.
        driver = (await conn.get_raw_connection()).driver_connection
        if driver is None:
            raise RuntimeError("the relay's connection is closed")
        sql = _pg_sql("relay", self._outbox, _options(conn))
        async with driver.transaction():
            claimed = await driver.fetch(sql, self._lock_key, self._batch)
            self._claimed = len(claimed)
            if not claimed:
                return 0
            claimed.sort(key=_ID)
            rows: list[Row] = []
            for r in claimed:
                if r[1] == PACKED:
                    rows += unpack(r[3])
                else:
                    rows.append((r[1], r[2], r[3], _wire_headers(r[4])))
            await self._publisher.publish_rows(rows)
        return len(rows)

    async def _relay_sql(self) -> int:
        # SQLite: read, publish, then delete, so the write lock is held only for the delete.
        outbox = self._outbox
        async with self._engine.begin() as conn:
            found = (
                await conn.execute(
                    select(
                        outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers
                    )
                    .order_by(outbox.c.id)
                    .limit(self._batch)
                )
            ).all()
            self._claimed = len(found)
            if not found:
                return 0
            rows: list[Row] = [
                record
                for r in found
                for record in _relayed(
                    r.topic, r.key, r.value, [(k, v.encode("latin-1")) for k, v in r.headers]
                )
            ]
            await self._publisher.publish_rows(rows)
            # Delete exactly the rows published: a row with a lower id may commit late and
            # must not be swept away unpublished.
            await conn.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in found])))
        return len(rows)

    async def pending(self) -> int:
        """Return how many events wait in the outbox."""
        outbox = self._outbox
        async with self._engine.connect() as conn:
            # A packed row's count is in its first bytes (the msgpack array header): the
            # records themselves are not read.
            found = await conn.execute(
                select(outbox.c.topic == PACKED, func.substr(outbox.c.value, 1, 5))
            )
            return sum(packed_count(head) if packed else 1 for packed, head in found)

    async def _maybe_sample_pending(self) -> None:
        # A count per round would cost a query per publish; a sample every few seconds is
        # enough to alert on a relay that falls behind.
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_sample < self._pending_sample_s:
            return
        self._last_sample = loop_time
        metrics.outbox_pending.labels(self._name).set(await self.pending())

    async def _maybe_analyze(self) -> None:
        """Analyze the service's tables whose statistics fell behind (PostgreSQL only)."""
        loop_time = asyncio.get_running_loop().time()
        if self._analyze_s <= 0 or loop_time - self._last_analyze < self._analyze_s:
            return
        self._last_analyze = loop_time
        if not is_postgres(self._engine):
            return
        async with self._engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            if driver is None:
                return
            schema = _schema(self._outbox, _options(conn))
            try:
                for (table,) in await driver.fetch(_STALE_TABLES, schema):
                    async with driver.transaction():
                        await driver.execute("SET LOCAL default_statistics_target = 10")
                        await driver.execute(f"ANALYZE {table}")
            except asyncpg.InsufficientPrivilegeError as exc:
                # Without ownership of the tables (a DBA's own role layout) autovacuum stays
                # the only one analyzing them: say so once and stop asking.
                self._analyze_s = 0
                log.warning("analyzing stale tables is off: %s", exc)

    async def _maybe_prune(self) -> None:
        loop_time = asyncio.get_running_loop().time()
        if self._inbox is None or loop_time - self._last_prune < 3600:
            return
        self._last_prune = loop_time
        cutoff = datetime.now(UTC) - self._retention
        async with self._engine.begin() as conn:
            await conn.execute(delete(self._inbox).where(self._inbox.c.processed_at < cutoff))
