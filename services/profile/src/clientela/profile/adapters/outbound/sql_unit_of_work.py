"""SQL unit of work: identities, profiles, timeline (the inbox) and outbox in one transaction."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec
from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    String,
    and_,
    any_,
    bindparam,
    delete,
    event,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.application.ports import (
    ConcurrentChangeError,
    ConsentUpdate,
    ErasureReceipt,
    LockedOwners,
    ProfileHistory,
    ReceivedTouchpoint,
)
from clientela.profile.domain.identity import (
    IdentifierClaim,
    IdentifierKey,
    IdentityConflict,
    fingerprint,
    separation,
)
from clientela.profile.domain.profile import Profile
from clientela.shared import outbox as shared_outbox
from clientela.shared.contracts import Channel, ConsentStatus, TouchpointRecorded
from clientela.shared.db import UtcDateTime, is_postgres, upsert_insert
from clientela.shared.readers.touchpoint import (
    TouchpointRecordedView,
    encode_touchpoint,
    touchpoint_builtins,
    touchpoint_view,
)
from clientela.shared.settings import KafkaSettings

T = TypeVar("T")

# Keeps every statement well under the 32,767 bind parameters PostgreSQL accepts; a normal
# batch fits in one chunk, so it is one query.
_MAX_KEYS_PER_QUERY = 5_000

# Deadlock, serialization failure, unique violation: another writer won a race; retry.
_RACE_SQLSTATES = frozenset({"40P01", "40001", "23505"})

# SQLite has one writer, but its deferred transactions read before they lock: one in-process
# lock per database serialises the service's read-modify-write transactions instead.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


class DecodedProfiles:
    """Profiles this process committed, kept decoded for a short while under their version.

    Decoding a locked profile's snapshot is, after the announcement, the largest share of
    the consumer's CPU per profile. A consumer owns its partitions, so the next batch that
    locks a profile often finds it here: the locked row's version and update time say
    whether it is still the stored state (every writer bumps the version). An entry is taken
    out when used, and the transaction that took it puts its profiles back only once it
    committed, so a rolled-back change never leaks into a later batch. Entries expire after
    `max_age_s`, so an erased person's data does not linger in another replica's memory.
    """

    def __init__(self, capacity: int = 50_000, max_age_s: float = 120.0) -> None:
        self._capacity = capacity
        self._max_age = max_age_s
        self._entries: dict[str, tuple[Profile, float]] = {}

    def take(self, profile_id: str, version: int, updated_at: datetime) -> Profile | None:
        """Return the profile if this process holds it at exactly that version (removed)."""
        found = self._entries.pop(profile_id, None)
        if found is None:
            return None
        profile, kept_at = found
        if (
            profile.version != version
            or profile.updated_at != updated_at
            or time.monotonic() - kept_at > self._max_age
        ):
            return None
        return profile

    def put(self, profiles: Collection[Profile]) -> None:
        """Keep committed profiles; drop the expired and, when full, the oldest."""
        entries = self._entries
        now = time.monotonic()
        for profile in profiles:
            entries.pop(profile.profile_id, None)
            entries[profile.profile_id] = (profile, now)
        # Insertion order is age order: expired entries are at the front.
        while entries:
            oldest = next(iter(entries))
            if len(entries) <= self._capacity and now - entries[oldest][1] <= self._max_age:
                break
            del entries[oldest]

    def forget(self, profile_ids: Collection[str]) -> None:
        """Drop profiles (erased)."""
        for profile_id in profile_ids:
            self._entries.pop(profile_id, None)


_DECODED: weakref.WeakKeyDictionary[Engine, dict[str, DecodedProfiles]] = (
    weakref.WeakKeyDictionary()
)


def decoded_profiles(engine: AsyncEngine, schema: str) -> DecodedProfiles:
    """Return the decoded profiles this process holds for a store."""
    return _DECODED.setdefault(engine.sync_engine, {}).setdefault(schema, DecodedProfiles())


def chunks(items: Sequence[T], size: int = _MAX_KEYS_PER_QUERY) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most size items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def among(conn: AsyncConnection, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """Return `column IN values`; on PostgreSQL one array parameter (`= ANY`), so the
    statement stays the same for every batch and is not re-rendered with 500 parameters."""
    if is_postgres(conn):
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


async def asyncpg_of(conn: AsyncConnection) -> tuple[Any, str]:
    """Return the asyncpg connection under conn (same transaction) and the service's schema."""
    raw = await conn.get_raw_connection()
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    schema = options.get("schema_translate_map", {}).get(None) or "public"
    return raw.driver_connection, schema


def quoted(schema: str, table: str) -> str:
    """Return a schema-qualified table name for raw SQL."""
    return '"' + schema.replace('"', '""') + '"."' + table + '"'


# The hot path on PostgreSQL: one statement per step, arrays as parameters (the statement is
# prepared once and reused whatever the batch size), run on the asyncpg connection under the
# SQLAlchemy one (same transaction). `{name}` is the schema-qualified table.
_PG_SQL = {
    # The timeline is the inbox: ids neither on a timeline nor erased. Two instances applying
    # one event at once both pass; the second's timeline COPY then fails on the event id (a
    # unique violation, which retries the batch) and its retry finds the id here.
    "fresh_events": """
        SELECT e FROM unnest($1::text[]) AS e
        WHERE NOT EXISTS (SELECT 1 FROM {touchpoints} t WHERE t.event_id = e)
          AND NOT EXISTS (SELECT 1 FROM {erased_events} x WHERE x.event_id = e)""",
    # Owners of the keys (kind 0), their profiles (kind 1) and the admin separations of those
    # profiles (kind 2), in one round trip. Nothing is locked: every write of a profile read
    # here is guarded by the version read (see save_profiles and merge_away), so a writer that
    # changed it meanwhile makes the batch start again. One statement reads with one snapshot,
    # so the owners and the profiles it returns are consistent with each other.
    "lock_owners": """
        WITH owned AS (
            SELECT i.id_type, i.id_value, i.profile_id
            FROM unnest($1::text[], $2::text[]) AS w(t, v)
            -- One primary-key probe per key: LIMIT keeps the subquery from being flattened
            -- into a join the planner may run as a scan of the whole table (it does, for
            -- tables of up to a few hundred thousand rows, whose probes it overprices).
            CROSS JOIN LATERAL (
                SELECT o.id_type, o.id_value, o.profile_id FROM {identifiers} o
                WHERE o.id_type = w.t AND o.id_value = w.v LIMIT 1) AS i),
        locked AS (
            SELECT p.profile_id, p.version, p.created_at, p.updated_at, p.lifecycle,
                   p.state::text AS state
            FROM {profiles} p
            WHERE p.profile_id IN (SELECT profile_id FROM owned))
        SELECT 0 AS kind, id_type AS a, id_value AS b, profile_id, NULL::int AS version,
               NULL::timestamptz AS created_at, NULL::timestamptz AS updated_at,
               NULL::text AS lifecycle, NULL::text AS state
        FROM owned
        UNION ALL
        SELECT 1, NULL, NULL, profile_id, version, created_at, updated_at, lifecycle, state
        FROM locked
        UNION ALL
        SELECT 2, s.profile_a, s.profile_b, NULL, NULL, NULL, NULL, NULL, NULL
        FROM {separations} s
        WHERE s.profile_a IN (SELECT profile_id FROM locked)
           OR s.profile_b IN (SELECT profile_id FROM locked)""",
    # New identifiers (kind 0: those inserted), and the owners now (kind 1) of keys the batch
    # saw unowned but did not claim (its profile's limit was reached): see attach().
    "attach": """
        WITH ins AS (
            INSERT INTO {identifiers} (id_type, id_value, profile_id, created_at)
            SELECT t, v, p, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS c(t, v, p)
            ON CONFLICT (id_type, id_value) DO NOTHING
            RETURNING id_type, id_value)
        SELECT 0 AS kind, id_type, id_value FROM ins
        UNION ALL
        SELECT 1, i.id_type, i.id_value
        FROM unnest($5::text[], $6::text[]) AS w(t, v)
        CROSS JOIN LATERAL (
            SELECT o.id_type, o.id_value FROM {identifiers} o
            WHERE o.id_type = w.t AND o.id_value = w.v LIMIT 1) AS i""",
    # Each "= ANY($1)" repeats the join condition so that the planner reaches the rows
    # through the profile id index even on statistics from when the table was small (it
    # otherwise joins against a scan of the whole timeline). A merged profile is deleted only
    # at the version the batch read ($4); the count tells the caller whether all were.
    "merge_away": """
        WITH m AS (SELECT * FROM unnest($1::text[], $2::text[], $4::int[]) AS m(old, new, seen)),
        ids AS (
            UPDATE {identifiers} i SET profile_id = m.new FROM m
            WHERE i.profile_id = m.old AND i.profile_id = ANY($1::text[]) RETURNING 1),
        tps AS (
            UPDATE {touchpoints} t SET profile_id = m.new FROM m
            WHERE t.profile_id = m.old AND t.profile_id = ANY($1::text[]) RETURNING 1),
        cons AS (
            UPDATE {consent_updates} c SET profile_id = m.new FROM m
            WHERE c.profile_id = m.old AND c.profile_id = ANY($1::text[]) RETURNING 1),
        gone AS (
            DELETE FROM {profiles} p USING m
            WHERE p.profile_id = m.old AND p.version = m.seen RETURNING 1),
        chained AS (
            UPDATE {profile_forwards} f SET survivor_id = m.new FROM m
            WHERE f.survivor_id = m.old AND f.survivor_id = ANY($1::text[]) RETURNING 1),
        fwd AS (
            INSERT INTO {profile_forwards} (merged_id, survivor_id, merged_at)
            SELECT old, new, $3 FROM m
            ON CONFLICT (merged_id) DO UPDATE
            SET survivor_id = EXCLUDED.survivor_id, merged_at = EXCLUDED.merged_at
            RETURNING 1)
        SELECT count(*) FROM gone""",
    "begin": "SELECT 1",
    # Profiles this transaction read are updated only where still at the version read ($6;
    # NULL for the others); the count of those updated tells the caller whether a concurrent
    # writer got there first. The others are inserted (new ones, or one recreated after a
    # lost write). Every profile of one save changed at the same time ($7), and a read
    # profile's creation time is sent only when a merge moved it (NULL keeps the stored one):
    # a time costs the driver more to encode than the rest of the row but its state.
    "save_profiles": """
        WITH u AS (
            SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[],
                                 $5::text[], $6::int[])
                AS u(id, version, created_at, lifecycle, state, seen)),
        updated AS (
            UPDATE {profiles} p SET version = u.version,
                created_at = coalesce(u.created_at, p.created_at), updated_at = $7::timestamptz,
                lifecycle = u.lifecycle, state = u.state::{state_type}
            FROM u WHERE u.seen IS NOT NULL AND p.profile_id = u.id AND p.version = u.seen
            RETURNING 1),
        inserted AS (
            INSERT INTO {profiles} (profile_id, version, created_at, updated_at, lifecycle, state)
            SELECT id, version, created_at, $7::timestamptz, lifecycle, state::{state_type}
            FROM u WHERE u.seen IS NULL
            ON CONFLICT (profile_id) DO UPDATE SET version = EXCLUDED.version,
                created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                lifecycle = EXCLUDED.lifecycle, state = EXCLUDED.state
            RETURNING 1)
        SELECT count(*) FROM updated""",
}

# A batch's first read in one round trip: lock_owners' rows for the keys of all its
# touchpoints, and its fresh event ids (kind 3, column a) as fresh_events finds them.
_PG_SQL["fresh_and_owners"] = (
    _PG_SQL["lock_owners"].replace(
        "WITH owned AS (",
        """WITH fresh AS (
            SELECT e FROM unnest($3::text[]) AS e
            WHERE NOT EXISTS (SELECT 1 FROM {touchpoints} t WHERE t.event_id = e)
              AND NOT EXISTS (SELECT 1 FROM {erased_events} x WHERE x.event_id = e)),
        owned AS (""",
        1,
    )
    + """
        UNION ALL
        SELECT 3, e, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM fresh"""
)

_TIMELINE_COLUMNS = [
    "event_id",
    "profile_id",
    "occurred_at",
    "kind",
    "channel",
    "direction",
    "agent_id",
    "payload",
]


@dataclass(slots=True)
class PgSession:
    """The asyncpg connection under a SQLAlchemy one, with the statements for its schema."""

    conn: AsyncConnection
    driver: Any
    schema: str
    sql: dict[str, str] = field(default_factory=dict)
    statements: int = 0
    begun: bool = False
    # The version of each profile this transaction read: its writes are guarded by it.
    seen: dict[str, int] = field(default_factory=dict)
    # The creation time of each profile this transaction read, as stored.
    created: dict[str, datetime] = field(default_factory=dict)
    decoded: DecodedProfiles = field(default_factory=DecodedProfiles)
    # Profiles saved by this transaction: kept decoded once it commits.
    saved: list[Profile] = field(default_factory=list)

    async def _begin(self, name: str, args: tuple[Any, ...]) -> list[Any] | None:
        # SQLAlchemy sends BEGIN lazily, before its first statement; a statement sent to the
        # driver first would run outside the transaction. So the first one goes through
        # SQLAlchemy (BEGIN, then the statement) and the rest straight to the driver.
        if self.begun:
            return None
        self.begun = True
        result = await self.conn.exec_driver_sql(self.sql[name], args)
        if not result.returns_rows:
            return []
        # The driver's records, as the later statements return them: SQLAlchemy's rows would
        # cost more than the query for a batch's ids.
        rows = list(result.cursor.fetchall())
        result.close()
        return rows

    async def fetch(self, name: str, *args: Any) -> list[Any]:
        """Run a named statement; return its rows (indexable by position)."""
        first = await self._begin(name, args)
        if first is not None:
            return first
        self.statements += 1
        return await self.driver.fetch(self.sql[name], *args)  # type: ignore[no-any-return]

    async def execute(self, name: str, *args: Any) -> None:
        """Run a named statement."""
        if await self._begin(name, args) is None:
            self.statements += 1
            await self.driver.execute(self.sql[name], *args)

    async def copy(self, table: str, columns: list[str], records: list[tuple[Any, ...]]) -> None:
        """COPY rows into a table of the schema."""
        if not self.begun:
            await self._begin("begin", ())
        self.statements += 1
        await self.driver.copy_records_to_table(
            table, schema_name=self.schema, columns=columns, records=records
        )


_SQL_BY_SCHEMA: dict[str, dict[str, str]] = {}
_COUNTED_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_STATEMENTS = "clientela_statements"


def _count_statement(conn: Any, *_: Any) -> None:
    conn.info[_STATEMENTS] = conn.info.get(_STATEMENTS, 0) + 1


def count_statements(engine: AsyncEngine) -> None:
    """Count the statements SQLAlchemy sends on the engine's connections (round trips)."""
    if engine.sync_engine not in _COUNTED_ENGINES:
        _COUNTED_ENGINES.add(engine.sync_engine)
        event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)


async def _statements(driver: Any, schema: str) -> dict[str, str]:
    found = _SQL_BY_SCHEMA.get(schema)
    if found is None:
        # Stores created before the snapshot column became json keep jsonb: cast to what is
        # there (asked once per schema and process).
        state_type = await driver.fetchval(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'profiles' AND column_name = 'state'",
            schema,
        )
        names = {t.name: quoted(schema, t.name) for t in tables.metadata.sorted_tables}
        names["state_type"] = "jsonb" if state_type == "jsonb" else "json"
        found = {name: sql.format(**names) for name, sql in _PG_SQL.items()}
        _SQL_BY_SCHEMA[schema] = found
    return found


async def pg_session(conn: AsyncConnection) -> PgSession:
    """Return the asyncpg side of a PostgreSQL connection."""
    driver, schema = await asyncpg_of(conn)
    return PgSession(conn, driver, schema, await _statements(driver, schema))


def _key_arrays(keys: Collection[IdentifierKey]) -> tuple[list[str], list[str]]:
    ordered = sorted(keys)
    return [k[0] for k in ordered], [k[1] for k in ordered]


def profile_from_row(row: Row[Any]) -> Profile:
    """Rebuild a domain profile from a profiles row."""
    return Profile.from_state(
        row.profile_id, row.version, row.created_at, row.updated_at, row.lifecycle, row.state
    )


def _sqlstate(error: BaseException | None) -> str | None:
    """Return the SQLSTATE behind an error from SQLAlchemy or straight from asyncpg."""
    seen = 0
    while error is not None and seen < 5:
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str):
            return code
        error = getattr(error, "orig", None) or error.__cause__
        seen += 1
    return None


class SqlIdentityGraph:
    """Identifier ownership, admin separations and refused merges."""

    def __init__(self, conn: AsyncConnection, pg: PgSession | None = None) -> None:
        self._conn = conn
        self._pg = pg

    async def owners(self, keys: Collection[IdentifierKey]) -> dict[IdentifierKey, str]:
        """Return the owner of each known identifier among keys."""
        t = tables.identifiers
        found: dict[IdentifierKey, str] = {}
        if not keys:
            return found
        if is_postgres(self._conn):
            # A join against two unnested arrays uses the primary key for each pair; a
            # 1,000-pair row-value IN list is planned as an OR of index scans instead.
            ordered = sorted(keys)
            wanted = (
                func.unnest(
                    bindparam("id_types", [k[0] for k in ordered], type_=ARRAY(String)),
                    bindparam("id_values", [k[1] for k in ordered], type_=ARRAY(String)),
                )
                .table_valued("t", "v")
                .render_derived(name="wanted")
            )
            rows = await self._conn.execute(
                select(t.c.id_type, t.c.id_value, t.c.profile_id).select_from(
                    t.join(wanted, and_(t.c.id_type == wanted.c.t, t.c.id_value == wanted.c.v))
                )
            )
            return {(r.id_type, r.id_value): r.profile_id for r in rows}
        for part in chunks(sorted(keys)):
            rows = await self._conn.execute(
                select(t.c.id_type, t.c.id_value, t.c.profile_id).where(
                    tuple_(t.c.id_type, t.c.id_value).in_(part)
                )
            )
            found.update({(r.id_type, r.id_value): r.profile_id for r in rows})
        return found

    async def attach(
        self,
        claims: Sequence[IdentifierClaim],
        recheck: Collection[IdentifierKey] = (),
    ) -> set[IdentifierKey]:
        """Insert new identifiers; return those another writer inserted first, and those
        among recheck (seen unowned, not claimed) that another writer attached meanwhile."""
        wanted = {(c.id_type, c.id_value) for c in claims}
        now = datetime.now(UTC)
        if self._pg is not None:
            if not claims and not recheck:
                return set()
            rows = await self._pg.fetch(
                "attach",
                [c.id_type for c in claims],
                [c.id_value for c in claims],
                [c.profile_id for c in claims],
                now,
                *_key_arrays(recheck),
            )
            inserted = {(r[1], r[2]) for r in rows if r[0] == 0}
            taken = {(r[1], r[2]) for r in rows if r[0] == 1}
            return (wanted - inserted) | taken
        # SQLite: the service's writers are serialised, so nothing can be attached meanwhile.
        if not claims:
            return set()
        t = tables.identifiers
        stmt = (
            upsert_insert(self._conn)(t)
            .on_conflict_do_nothing(index_elements=["id_type", "id_value"])
            .returning(t.c.id_type, t.c.id_value)
        )
        result = await self._conn.execute(
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
        return wanted - {(r.id_type, r.id_value) for r in result}

    async def of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[IdentifierKey]]:
        """Return the identifiers each profile owns."""
        t = tables.identifiers
        found: dict[str, list[IdentifierKey]] = {}
        for part in chunks(sorted(profile_ids)):
            rows = await self._conn.execute(
                select(t.c.profile_id, t.c.id_type, t.c.id_value)
                .where(t.c.profile_id.in_(part))
                .order_by(t.c.id_type, t.c.id_value)
            )
            for r in rows:
                found.setdefault(r.profile_id, []).append((r.id_type, r.id_value))
        return found

    async def reassign_profiles(self, moves: Mapping[str, str]) -> None:
        """Give every identifier of each key profile to its value profile."""
        t = tables.identifiers
        await self._conn.execute(
            update(t)
            .where(t.c.profile_id == bindparam("old_id"))
            .values(profile_id=bindparam("new_id")),
            [{"old_id": old, "new_id": new} for old, new in sorted(moves.items())],
        )

    async def reassign_keys(self, keys: Collection[IdentifierKey], profile_id: str) -> None:
        """Give these identifiers to a profile."""
        t = tables.identifiers
        for part in chunks(sorted(keys)):
            await self._conn.execute(
                update(t)
                .where(tuple_(t.c.id_type, t.c.id_value).in_(part))
                .values(profile_id=profile_id)
            )

    async def delete_profile(self, profile_id: str) -> int:
        """Remove a profile's identifiers, separations and conflicts; return identifiers."""
        i, s, c = tables.identifiers, tables.separations, tables.identity_conflicts
        removed = await self._conn.execute(delete(i).where(i.c.profile_id == profile_id))
        await self._conn.execute(
            delete(s).where(or_(s.c.profile_a == profile_id, s.c.profile_b == profile_id))
        )
        await self._conn.execute(
            delete(c).where(or_(c.c.profile_id == profile_id, c.c.other_profile_id == profile_id))
        )
        return int(removed.rowcount or 0)

    async def separated(self, profile_ids: Collection[str]) -> set[tuple[str, str]]:
        """Return the admin separations that involve any of the profiles."""
        s = tables.separations
        found: set[tuple[str, str]] = set()
        for part in chunks(sorted(profile_ids)):
            rows = await self._conn.execute(
                select(s.c.profile_a, s.c.profile_b).where(
                    or_(s.c.profile_a.in_(part), s.c.profile_b.in_(part))
                )
            )
            found.update((r.profile_a, r.profile_b) for r in rows)
        return found

    async def separate(self, first: str, second: str) -> None:
        """Record that two profiles must never be merged again."""
        a, b = separation(first, second)
        stmt = upsert_insert(self._conn)(tables.separations).on_conflict_do_nothing(
            index_elements=["profile_a", "profile_b"]
        )
        await self._conn.execute(
            stmt, [{"profile_a": a, "profile_b": b, "created_at": datetime.now(UTC)}]
        )

    async def record_conflicts(self, conflicts: Sequence[IdentityConflict]) -> None:
        """Keep refused merges for review, identifiers as fingerprints."""
        now = datetime.now(UTC)
        stmt = upsert_insert(self._conn)(tables.identity_conflicts).on_conflict_do_nothing(
            index_elements=["event_id", "other_profile_id"]
        )
        rows = {
            (c.event_id, c.other_profile_id): {
                "event_id": c.event_id,
                "other_profile_id": c.other_profile_id,
                "profile_id": c.profile_id,
                "reason": c.reason,
                "identifier_types": [key[0] for key in c.keys],
                "identifier_fingerprints": [fingerprint(key) for key in c.keys],
                "created_at": now,
            }
            for c in conflicts
        }
        await self._conn.execute(stmt, [rows[k] for k in sorted(rows)])


class SqlProfileRepository:
    """Profiles (state as a JSON snapshot), forwards of merged ids, erasure receipts."""

    def __init__(self, conn: AsyncConnection, pg: PgSession | None = None) -> None:
        self._conn = conn
        self._pg = pg

    async def lock(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """Return the stored profiles among the ids, rows locked in id order (PostgreSQL)."""
        t = tables.profiles
        found: dict[str, Profile] = {}
        for part in chunks(sorted(profile_ids)):
            stmt = select(t).where(among(self._conn, t.c.profile_id, part)).order_by(t.c.profile_id)
            if is_postgres(self._conn):
                stmt = stmt.with_for_update()
            rows = await self._conn.execute(stmt)
            found.update({row.profile_id: profile_from_row(row) for row in rows})
        return found

    async def save(self, profiles: Sequence[Profile]) -> None:
        """Insert or replace the profiles in one executemany."""
        if not profiles:
            return
        ordered = sorted(profiles, key=lambda p: p.profile_id)
        if self._pg is not None:
            # One statement over arrays: a fixed, prepared statement whatever the batch size
            # (one per change time, and the profiles of one save share it).
            by_time: dict[datetime, list[Profile]] = {}
            for profile in ordered:
                by_time.setdefault(profile.updated_at, []).append(profile)
            for updated_at, same in by_time.items():
                await self._save_pg(self._pg, same, updated_at)
            self._pg.saved.extend(ordered)
            return
        t = tables.profiles
        insert = upsert_insert(self._conn)(t)
        stmt = insert.on_conflict_do_update(
            index_elements=["profile_id"],
            set_={
                "version": insert.excluded.version,
                "created_at": insert.excluded.created_at,
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
                    "state": msgspec.json.decode(p.to_json()),
                }
                for p in ordered
            ],
        )

    @staticmethod
    async def _save_pg(pg: PgSession, profiles: list[Profile], updated_at: datetime) -> None:
        seen, created = pg.seen, pg.created
        guards = [seen.get(p.profile_id) for p in profiles]
        rows = await pg.fetch(
            "save_profiles",
            [p.profile_id for p in profiles],
            [p.version for p in profiles],
            [
                None
                if guard is not None and created.get(p.profile_id) == p.created_at
                else p.created_at
                for p, guard in zip(profiles, guards, strict=True)
            ],
            [p.stage.value for p in profiles],
            [p.to_json().decode() for p in profiles],
            guards,
            updated_at,
        )
        expected = len(guards) - guards.count(None)
        if rows[0][0] != expected:
            raise ConcurrentChangeError(
                f"{expected - rows[0][0]} profile(s) changed since they were read"
            )

    async def delete(self, profile_ids: Collection[str]) -> None:
        """Remove profiles."""
        t = tables.profiles
        if self._pg is not None:
            self._pg.decoded.forget(profile_ids)
        for part in chunks(sorted(profile_ids)):
            await self._conn.execute(delete(t).where(t.c.profile_id.in_(part)))

    async def ids_after(self, cursor: str | None, limit: int) -> list[str]:
        """Return up to limit profile ids greater than cursor, in order."""
        t = tables.profiles
        stmt = select(t.c.profile_id).order_by(t.c.profile_id).limit(limit)
        if cursor is not None:
            stmt = stmt.where(t.c.profile_id > cursor)
        return list((await self._conn.execute(stmt)).scalars())

    async def forward(self, moves: Mapping[str, str], at: datetime) -> None:
        """Make each merged id, and every id forwarding to it, forward to its survivor."""
        if not moves:
            return
        f = tables.profile_forwards
        params = [{"old_id": old, "new_id": new} for old, new in sorted(moves.items())]
        await self._conn.execute(
            update(f)
            .where(f.c.survivor_id == bindparam("old_id"))
            .values(survivor_id=bindparam("new_id")),
            params,
        )
        insert = upsert_insert(self._conn)(f)
        await self._conn.execute(
            insert.on_conflict_do_update(
                index_elements=["merged_id"],
                set_={
                    "survivor_id": insert.excluded.survivor_id,
                    "merged_at": insert.excluded.merged_at,
                },
            ),
            [
                {"merged_id": old, "survivor_id": new, "merged_at": at}
                for old, new in sorted(moves.items())
            ],
        )

    async def resolve(self, profile_id: str) -> str:
        """Return the live id a profile id forwards to (itself when not merged)."""
        f = tables.profile_forwards
        found: str | None = await self._conn.scalar(
            select(f.c.survivor_id).where(f.c.merged_id == profile_id)
        )
        return found or profile_id

    async def drop_forwards_to(self, profile_id: str) -> int:
        """Remove the forwards that end at a profile; return how many."""
        f = tables.profile_forwards
        result = await self._conn.execute(delete(f).where(f.c.survivor_id == profile_id))
        return int(result.rowcount or 0)

    async def erasure(self, profile_id: str) -> ErasureReceipt | None:
        """Return the receipt of an earlier erasure of the profile, if any."""
        e = tables.erasures
        row = (await self._conn.execute(select(e).where(e.c.profile_id == profile_id))).first()
        return receipt_from_row(row) if row is not None else None

    async def record_erasure(self, receipt: ErasureReceipt) -> None:
        """Keep an erasure receipt."""
        await self._conn.execute(
            tables.erasures.insert(),
            [
                {
                    "profile_id": receipt.profile_id,
                    "request_id": receipt.request_id,
                    "erased_at": receipt.erased_at,
                    "identifiers_removed": receipt.identifiers_removed,
                    "touchpoints_removed": receipt.touchpoints_removed,
                    "forwards_removed": receipt.forwards_removed,
                }
            ],
        )


def receipt_from_row(row: Row[Any]) -> ErasureReceipt:
    """Rebuild an erasure receipt from its row."""
    return ErasureReceipt(
        request_id=row.request_id,
        profile_id=row.profile_id,
        erased_at=row.erased_at,
        identifiers_removed=row.identifiers_removed,
        touchpoints_removed=row.touchpoints_removed,
        forwards_removed=row.forwards_removed,
    )


def _by_event_id(entry: tuple[str, ReceivedTouchpoint]) -> str:
    return entry[1].event.event_id


def _payload(event: TouchpointRecordedView, raw: bytes | None) -> str:
    """Return the touchpoint's JSON: the record as delivered, or the view encoded again."""
    if raw is not None:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            pass  # valid for the decoder, not as text: the view's own encoding is
    return encode_touchpoint(event).decode()


class SqlTimeline:
    """Touchpoints (the full event, basis of rebuilds) and consent stated through the API."""

    def __init__(self, conn: AsyncConnection, pg: PgSession | None = None) -> None:
        self._conn = conn
        self._pg = pg

    async def known(self, event_ids: Collection[str]) -> set[str]:
        """Return the ids among event_ids already applied: on a timeline, or erased."""
        t, e = tables.touchpoints, tables.erased_events
        found: set[str] = set()
        for part in chunks(sorted(event_ids)):
            for column in (t.c.event_id, e.c.event_id):
                rows = await self._conn.execute(
                    select(column).where(among(self._conn, column, part))
                )
                found.update(rows.scalars())
        return found

    async def add(self, entries: Sequence[tuple[str, ReceivedTouchpoint]]) -> None:
        """File touchpoints under their profiles."""
        if not entries:
            return
        ordered = [(pid, r.event, r.raw) for pid, r in sorted(entries, key=_by_event_id)]
        if self._pg is not None:
            # COPY is several times cheaper per row than INSERT. Rows here are new (the inbox
            # and timeline filtered repeats); a concurrent duplicate raises a unique violation,
            # which retries the batch, and the retry then finds it known.
            await self._pg.copy(
                "touchpoints",
                _TIMELINE_COLUMNS,
                [
                    (
                        event.event_id,
                        profile_id,
                        event.occurred_at,
                        event.data.kind.value,
                        event.data.channel.value,
                        event.data.direction.value,
                        event.data.agent.agent_id if event.data.agent else None,
                        _payload(event, raw),
                    )
                    for profile_id, event, raw in ordered
                ],
            )
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
                    "payload": touchpoint_builtins(event),
                }
                for profile_id, event, _ in ordered
            ],
        )

    async def add_consent(self, update: ConsentUpdate) -> None:
        """File a consent decision stated through the API (a repeated id is ignored)."""
        stmt = upsert_insert(self._conn)(tables.consent_updates).on_conflict_do_nothing(
            index_elements=["update_id"]
        )
        await self._conn.execute(
            stmt,
            [
                {
                    "update_id": update.update_id,
                    "profile_id": update.profile_id,
                    "channel": update.channel.value,
                    "status": update.status.value,
                    "source": update.source,
                    "occurred_at": update.occurred_at,
                }
            ],
        )

    async def history(self, profile_ids: Collection[str]) -> dict[str, ProfileHistory]:
        """Return the stored touchpoints and consent decisions of each profile."""
        t, c = tables.touchpoints, tables.consent_updates
        found = {pid: ProfileHistory([], []) for pid in profile_ids}
        for part in chunks(sorted(profile_ids)):
            rows = await self._conn.execute(
                select(t.c.profile_id, t.c.payload)
                .where(t.c.profile_id.in_(part))
                .order_by(t.c.occurred_at, t.c.event_id)
            )
            for r in rows:
                found[r.profile_id].touchpoints.append(
                    touchpoint_view(TouchpointRecorded.model_validate(r.payload))
                )
            consents = await self._conn.execute(
                select(c).where(c.c.profile_id.in_(part)).order_by(c.c.occurred_at)
            )
            for r in consents:
                found[r.profile_id].consents.append(
                    ConsentUpdate(
                        r.update_id,
                        r.profile_id,
                        Channel(r.channel),
                        ConsentStatus(r.status),
                        r.source,
                        r.occurred_at,
                    )
                )
        return found

    async def reassign_profiles(self, moves: Mapping[str, str]) -> None:
        """Refile everything of each key profile under its value profile."""
        params = [{"old_id": old, "new_id": new} for old, new in sorted(moves.items())]
        for table in (tables.touchpoints, tables.consent_updates):
            await self._conn.execute(
                update(table)
                .where(table.c.profile_id == bindparam("old_id"))
                .values(profile_id=bindparam("new_id")),
                params,
            )

    async def reassign_events(self, event_ids: Collection[str], profile_id: str) -> None:
        """Refile these touchpoints under a profile."""
        t = tables.touchpoints
        for part in chunks(sorted(event_ids)):
            await self._conn.execute(
                update(t).where(t.c.event_id.in_(part)).values(profile_id=profile_id)
            )

    async def delete_profile(self, profile_id: str) -> int:
        """Remove a profile's touchpoints and consent decisions; return the touchpoints.

        The touchpoints' ids (no personal data) go to erased_events: the timeline is the
        inbox, so without them a redelivered erased touchpoint would be applied again.
        """
        t, c, e = tables.touchpoints, tables.consent_updates, tables.erased_events
        count = await self._conn.scalar(
            select(func.count()).select_from(t).where(t.c.profile_id == profile_id)
        )
        erased_at = bindparam("erased_at", datetime.now(UTC), type_=UtcDateTime())
        await self._conn.execute(
            upsert_insert(self._conn)(e)
            .from_select(
                ["event_id", "erased_at"],
                select(t.c.event_id, erased_at).where(t.c.profile_id == profile_id),
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        await self._conn.execute(delete(t).where(t.c.profile_id == profile_id))
        await self._conn.execute(delete(c).where(c.c.profile_id == profile_id))
        return int(count or 0)


class SqlUnitOfWork(shared_outbox.SqlTransaction):
    """One database transaction over the profile store, with its inbox and outbox."""

    def __init__(
        self,
        engine: AsyncEngine,
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
        self._writer_lock: asyncio.Lock | None = None
        if engine.dialect.name == "sqlite":
            self._writer_lock = _SQLITE_WRITERS.setdefault(engine.sync_engine, asyncio.Lock())
        self._identities: SqlIdentityGraph | None = None
        self._profiles: SqlProfileRepository | None = None
        self._timeline: SqlTimeline | None = None
        self._pg: PgSession | None = None
        self.round_trips = 0
        """Round trips to the database of the last transaction (BEGIN and COMMIT included)."""
        count_statements(engine)

    @staticmethod
    def _open(part: T | None) -> T:
        if part is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return part

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

    def _opened(self, conn: AsyncConnection) -> None:
        self._identities = SqlIdentityGraph(conn)
        self._profiles = SqlProfileRepository(conn)
        self._timeline = SqlTimeline(conn)

    def _closed(self) -> None:
        self._identities = self._profiles = self._timeline = self._pg = None

    async def __aenter__(self) -> Self:
        """Begin the transaction (on SQLite, after the service's other writers finished)."""
        if self._writer_lock is not None:
            await self._writer_lock.acquire()
        try:
            await super().__aenter__()
            self.connection.info[_STATEMENTS] = 0
            if is_postgres(self.connection):
                pg = self._pg = await pg_session(self.connection)
                pg.decoded = decoded_profiles(self._engine, pg.schema)
                self._identities = SqlIdentityGraph(self.connection, pg)
                self._profiles = SqlProfileRepository(self.connection, pg)
                self._timeline = SqlTimeline(self.connection, pg)
            return self
        except BaseException:
            if self._writer_lock is not None:
                self._writer_lock.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back what was not committed; report a lost race as ConcurrentChangeError."""
        if self._conn is not None:
            statements = self._conn.info.pop(_STATEMENTS, 0)
            raw = self._pg.statements if self._pg is not None else 0
            # BEGIN goes with the first statement; COMMIT (or ROLLBACK) closes.
            self.round_trips = statements + raw + (2 if statements + raw else 0)
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if self._writer_lock is not None:
                self._writer_lock.release()
        state = _sqlstate(exc) if isinstance(exc, Exception) else None
        if state in _RACE_SQLSTATES:
            raise ConcurrentChangeError(f"database reported a race ({state})") from exc

    async def fresh_events(self, event_ids: Sequence[str]) -> set[str]:
        """Return the ids among event_ids neither on a timeline nor erased."""
        unique = sorted(set(event_ids))
        if not unique:
            return set()
        if self._pg is not None:
            return {r[0] for r in await self._pg.fetch("fresh_events", unique)}
        # SQLite: Python's driver begins a transaction at the first write, not at a read, so
        # the inbox insert stays first: it takes the write lock before anything is read,
        # which serialises writers sharing the file from other engines or processes.
        fresh = await self.claim_new(unique)
        return fresh - await self.timeline.known(fresh) if fresh else fresh

    async def lock_owners(self, keys: Collection[IdentifierKey]) -> LockedOwners:
        """Read the owners of keys and their profiles in one round trip (locked on SQLite's
        serialised path; on PostgreSQL their writes are guarded by the version read)."""
        if self._pg is not None:
            return await self._lock_owners_pg(self._pg, keys)
        owners = await self.identities.owners(keys)
        profiles = await self.profiles.lock(set(owners.values()))
        separated = await self.identities.separated(profiles) if profiles else set()
        # SQLite: writers are serialised, nothing changes between the read and the lock.
        return LockedOwners(owners, profiles, separated)

    async def fresh_and_owners(
        self, event_ids: Sequence[str], keys: Collection[IdentifierKey]
    ) -> tuple[set[str], LockedOwners]:
        """Return fresh_events(event_ids) and lock_owners(keys), in one round trip on
        PostgreSQL."""
        if self._pg is None or not keys:
            fresh = await self.fresh_events(event_ids)
            return fresh, await self.lock_owners(keys) if keys else LockedOwners({}, {}, set())
        fresh = set()
        locked = await self._lock_owners_pg(self._pg, keys, sorted(set(event_ids)), fresh)
        return fresh, locked

    @staticmethod
    async def _lock_owners_pg(
        pg: PgSession,
        keys: Collection[IdentifierKey],
        event_ids: list[str] | None = None,
        fresh: set[str] | None = None,
    ) -> LockedOwners:
        owners = {}
        profiles: dict[str, Profile] = {}
        separated: set[tuple[str, str]] = set()
        if event_ids is None:
            rows = await pg.fetch("lock_owners", *_key_arrays(keys))
        else:
            rows = await pg.fetch("fresh_and_owners", *_key_arrays(keys), event_ids)
        for r in rows:
            kind = r[0]
            if kind == 3:
                if fresh is not None:
                    fresh.add(r[1])
            elif kind == 0:
                owners[(r[1], r[2])] = r[3]
            elif kind == 1:
                profile = pg.decoded.take(r[3], r[4], r[6])
                if profile is None:
                    profile = Profile.from_state(r[3], r[4], r[5], r[6], r[7], r[8])
                profiles[r[3]] = profile
            else:
                separated.add((r[1], r[2]))
        for pid, p in profiles.items():
            pg.seen[pid] = p.version
            pg.created[pid] = p.created_at
        # Owners and profiles come from one statement, one snapshot: never stale.
        return LockedOwners(owners, profiles, separated)

    async def merge_away(self, moves: Mapping[str, str], at: datetime) -> None:
        """Move identifiers, touchpoints and consent decisions to survivors; forward merged
        ids; delete the merged profiles."""
        if not moves:
            return
        if self._pg is not None:
            ordered = sorted(moves.items())
            seen = self._pg.seen
            rows = await self._pg.fetch(
                "merge_away",
                [old for old, _ in ordered],
                [new for _, new in ordered],
                at,
                [seen.get(old) for old, _ in ordered],
            )
            if rows[0][0] != len(ordered):
                raise ConcurrentChangeError("a merged profile changed since it was read")
            return
        await self.identities.reassign_profiles(moves)
        await self.timeline.reassign_profiles(moves)
        await self.profiles.delete(sorted(moves))
        await self.profiles.forward(moves, at)

    async def commit(self) -> None:
        """Commit; keep the saved profiles decoded for the next batch (PostgreSQL)."""
        await super().commit()
        if self._pg is not None and self._pg.saved:
            self._pg.decoded.put(self._pg.saved)
            self._pg.saved = []
