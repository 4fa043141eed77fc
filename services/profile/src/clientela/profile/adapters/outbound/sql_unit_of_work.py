"""SQL unit of work: identity graph, profiles, timeline, inbox and outbox in one transaction."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    String,
    and_,
    any_,
    bindparam,
    delete,
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
    ProfileHistory,
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
from clientela.shared.codec import OutgoingRecord
from clientela.shared.contracts import Channel, ConsentStatus, TopicSpec, TouchpointRecorded
from clientela.shared.db import is_postgres, upsert_insert
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


async def _asyncpg(conn: AsyncConnection) -> tuple[Any, str]:
    """Return the asyncpg connection under conn (same transaction) and the service's schema."""
    raw = await conn.get_raw_connection()
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    schema = options.get("schema_translate_map", {}).get(None) or "public"
    return raw.driver_connection, schema


def _quoted(schema: str, table: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + table + '"'


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

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

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

    async def attach(self, claims: Sequence[IdentifierClaim]) -> set[IdentifierKey]:
        """Insert new identifiers; return those another writer inserted first."""
        if not claims:
            return set()
        t = tables.identifiers
        now = datetime.now(UTC)
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
        inserted = {(r.id_type, r.id_value) for r in result}
        return {(c.id_type, c.id_value) for c in claims} - inserted

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

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

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
        if is_postgres(self._conn):
            # One statement over arrays: a fixed, prepared statement whatever the batch size.
            driver, schema = await _asyncpg(self._conn)
            await driver.execute(
                f"INSERT INTO {_quoted(schema, 'profiles')} "
                "(profile_id, version, created_at, updated_at, lifecycle, state) "
                "SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], "
                "$4::timestamptz[], $5::text[], $6::jsonb[]) "
                "ON CONFLICT (profile_id) DO UPDATE SET version = EXCLUDED.version, "
                "created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, "
                "lifecycle = EXCLUDED.lifecycle, state = EXCLUDED.state",
                [p.profile_id for p in ordered],
                [p.version for p in ordered],
                [p.created_at for p in ordered],
                [p.updated_at for p in ordered],
                [p.stage.value for p in ordered],
                [json.dumps(p.to_state(), separators=(",", ":")) for p in ordered],
            )
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
                    "state": p.to_state(),
                }
                for p in ordered
            ],
        )

    async def delete(self, profile_ids: Collection[str]) -> None:
        """Remove profiles."""
        t = tables.profiles
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


class SqlTimeline:
    """Touchpoints (the full event, basis of rebuilds) and consent stated through the API."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def known(self, event_ids: Collection[str]) -> set[str]:
        """Return the ids among event_ids already stored."""
        t = tables.touchpoints
        found: set[str] = set()
        for part in chunks(sorted(event_ids)):
            rows = await self._conn.execute(
                select(t.c.event_id).where(among(self._conn, t.c.event_id, part))
            )
            found.update(rows.scalars())
        return found

    async def add(self, entries: Sequence[tuple[str, TouchpointRecorded]]) -> None:
        """File touchpoints under their profiles."""
        if not entries:
            return
        ordered = sorted(entries, key=lambda e: e[1].event_id)
        if is_postgres(self._conn):
            # COPY is several times cheaper per row than INSERT. Rows here are new (the inbox
            # and known() filtered repeats); a concurrent duplicate raises a unique violation,
            # which retries the batch, and the retry then finds it known.
            driver, schema = await _asyncpg(self._conn)
            await driver.copy_records_to_table(
                "touchpoints",
                schema_name=schema,
                columns=[
                    "event_id",
                    "profile_id",
                    "occurred_at",
                    "kind",
                    "channel",
                    "direction",
                    "agent_id",
                    "payload",
                ],
                records=[
                    (
                        event.event_id,
                        profile_id,
                        event.occurred_at,
                        event.data.kind.value,
                        event.data.channel.value,
                        event.data.direction.value,
                        event.data.agent.agent_id if event.data.agent else None,
                        event.model_dump_json(),
                    )
                    for profile_id, event in ordered
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
                    "payload": event.model_dump(mode="json"),
                }
                for profile_id, event in ordered
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
                found[r.profile_id].touchpoints.append(TouchpointRecorded.model_validate(r.payload))
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
        """Remove a profile's touchpoints and consent decisions; return the touchpoints."""
        t, c = tables.touchpoints, tables.consent_updates
        count = await self._conn.scalar(
            select(func.count()).select_from(t).where(t.c.profile_id == profile_id)
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
        self._identities = self._profiles = self._timeline = None

    async def __aenter__(self) -> Self:
        """Begin the transaction (on SQLite, after the service's other writers finished)."""
        if self._writer_lock is not None:
            await self._writer_lock.acquire()
        try:
            return await super().__aenter__()
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
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if self._writer_lock is not None:
                self._writer_lock.release()
        state = _sqlstate(exc) if isinstance(exc, Exception) else None
        if state in _RACE_SQLSTATES:
            raise ConcurrentChangeError(f"database reported a race ({state})") from exc

    async def stage_tombstones(self, topic: TopicSpec, keys: Sequence[str]) -> None:
        """Queue null-valued records under the keys: deletions on a compacted topic."""
        name = self._kafka.topic(topic)
        records = [OutgoingRecord(topic=name, key=key.encode(), value=None) for key in keys]
        await shared_outbox.stage(self.connection, tables.outbox, records)
        # The base class counts what it staged to decide whether a commit wakes the relay.
        self._staged += len(records)
