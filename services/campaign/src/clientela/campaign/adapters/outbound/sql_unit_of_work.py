"""SQL repositories and the unit of work: one transaction per consumed batch."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import (
    ARRAY,
    Column,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clientela.campaign.adapters.outbound.records import (
    ContactRow,
    aware,
    contact_of,
    habits_text,
    profile_json,
    scores_json,
    trigger_json,
    trigger_of,
)
from clientela.campaign.adapters.outbound.tables import MICROS, CampaignTables
from clientela.campaign.application.ports import (
    ContactStamp,
    Conversion,
    DecisionRef,
    ProfileAdvance,
    ViewChanges,
)
from clientela.campaign.domain.economics import PosteriorKey, ResponseCounts
from clientela.campaign.domain.model import (
    ERASED_PROFILE,
    Contact,
    Decision,
    Merge,
    Outcome,
    ScoreFacts,
    Trigger,
    TriggerKind,
)
from clientela.shared.contracts import Channel, Segment, Tier
from clientela.shared.db import UtcDateTime, is_postgres, upsert_insert
from clientela.shared.outbox import SqlTransaction, unstage_keys
from clientela.shared.settings import KafkaSettings

PENDING = "pending"
DECIDED = "decided"
EXPIRED = "expired"


def micros(amount: Decimal | float) -> int:
    """Return an amount in millionths of the base currency."""
    return round(Decimal(str(amount)) * MICROS)


async def _asyncpg(conn: AsyncConnection) -> Any:
    """Return the driver's connection under SQLAlchemy's, in the same transaction."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def one_of(conn: AsyncConnection, column: Column[Any], values: Collection[str]) -> Any:
    """Return `column IN values` whose SQL text does not depend on how many values there are.

    On PostgreSQL an expanding IN list gives every list length its own statement text, so
    asyncpg prepares (and the server plans) a new statement nearly every batch; `= ANY` of
    one array parameter is prepared once.
    """
    if is_postgres(conn):
        return column == any_(bindparam(None, sorted(values), type_=ARRAY(String())))
    return column.in_(sorted(values))


_ENCODE_JSON = msgspec.json.Encoder().encode


_DECODE_JSON = msgspec.json.decode


def _read_json(text: str) -> Any:
    return _DECODE_JSON(text)


def _json(value: Any) -> str:
    # msgspec: several times cheaper than the standard library on every written row.
    return _ENCODE_JSON(value).decode()


# One row per person: the profile part is facts (fingerprint set), an advance (version
# only) or absent (version 0); the scores part likewise. An advance never inserts a row.
_SAVE_VIEW = (
    "INSERT INTO {table} AS c (profile_id, version, profile, profile_fp, last_seen_at, habits, "
    "scored_version, scores, scores_fp, complained_at, updated_at) "
    "SELECT p, v, j::json, f, l, h, sv, sj::json, sf, NULL, $11 FROM unnest("
    "$1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], "
    "$7::int[], $8::text[], $9::text[], $10::bool[]) AS t(p, v, j, f, l, h, sv, sj, sf, n) "
    "WHERE n OR EXISTS (SELECT 1 FROM {table} k WHERE k.profile_id = t.p) "
    "ON CONFLICT (profile_id) DO UPDATE SET "
    "version = GREATEST(c.version, EXCLUDED.version), "
    "profile = CASE WHEN EXCLUDED.profile_fp IS NOT NULL AND EXCLUDED.version > c.version "
    "THEN EXCLUDED.profile ELSE c.profile END, "
    "profile_fp = CASE WHEN EXCLUDED.profile_fp IS NOT NULL AND EXCLUDED.version > c.version "
    "THEN EXCLUDED.profile_fp ELSE c.profile_fp END, "
    "last_seen_at = CASE WHEN EXCLUDED.profile_fp IS NULL "
    "THEN GREATEST(c.last_seen_at, EXCLUDED.last_seen_at) "
    "WHEN EXCLUDED.version > c.version THEN EXCLUDED.last_seen_at ELSE c.last_seen_at END, "
    "habits = CASE WHEN EXCLUDED.version > c.version THEN EXCLUDED.habits ELSE c.habits END, "
    "scored_version = GREATEST(c.scored_version, EXCLUDED.scored_version), "
    "scores = CASE WHEN EXCLUDED.scores_fp IS NOT NULL "
    "AND EXCLUDED.scored_version >= c.scored_version THEN EXCLUDED.scores ELSE c.scores END, "
    "scores_fp = CASE WHEN EXCLUDED.scores_fp IS NOT NULL "
    "AND EXCLUDED.scored_version >= c.scored_version THEN EXCLUDED.scores_fp "
    "ELSE c.scores_fp END, "
    "updated_at = EXCLUDED.updated_at "
    # A row that would change nothing is not rewritten (a redelivered batch writes nothing).
    "WHERE EXCLUDED.version > c.version OR EXCLUDED.scored_version > c.scored_version "
    "OR (EXCLUDED.scores_fp IS NOT NULL AND EXCLUDED.scored_version = c.scored_version) "
    "OR (EXCLUDED.profile_fp IS NULL "
    "AND GREATEST(c.last_seen_at, EXCLUDED.last_seen_at) IS DISTINCT FROM c.last_seen_at)"
)

ViewRow = tuple[
    str, int, str | None, str | None, datetime | None, str | None, int, str | None, str | None,
    bool,
]  # fmt: skip


def _view_rows(changes: ViewChanges) -> list[ViewRow]:
    """Return one row per person for _SAVE_VIEW, in profile id order (a stable lock order)."""
    profiles = {c.profile_id: c for c in changes.profiles}
    scores = {s.profile_id: s for s in changes.scores}
    ids = sorted({*profiles, *scores, *changes.advanced, *changes.scored_versions})
    rows: list[ViewRow] = []
    for pid in ids:
        c, s, a = profiles.get(pid), scores.get(pid), changes.advanced.get(pid)
        if c is not None:
            version, profile = c.version, _json(profile_json(c))
            profile_fp = changes.profile_fingerprints.get(pid)
            seen, habits = c.last_seen_at, habits_text(c.habits)
        elif a is not None:
            version, profile, profile_fp = a.version, None, None
            seen, habits = a.last_seen_at, habits_text(a.habits)
        else:
            version, profile, profile_fp, seen, habits = 0, None, None, None, None
        if s is not None:
            scored, score_json = s.profile_version, _json(scores_json(s))
            scores_fp = changes.score_fingerprints.get(pid)
            if profile is None and c is None:
                # A row first made by scores holds the lifecycle until the profile arrives.
                profile = _json({"lifecycle": s.lifecycle.value})
        else:
            scored, score_json, scores_fp = changes.scored_versions.get(pid, 0), None, None
        new = c is not None or s is not None
        rows.append(
            # NOT NULL holds before a conflict is found: an unwritten part carries "{}".
            (pid, version, profile or "{}", profile_fp, seen, habits, scored, score_json or "{}",
             scores_fp, new)
        )  # fmt: skip
    return rows


class SqlContacts:
    """Contacts in SQL; each group of facts is guarded by its own version.

    On PostgreSQL the statements run for every consumed batch go through the driver with
    arrays (`unnest`): one round trip and one statement however many rows.
    """

    def __init__(self, conn: AsyncConnection, tables: CampaignTables, schema: str | None) -> None:
        self._conn = conn
        self._t = tables.contacts
        self._triggers = tables.triggers
        self._q = f'"{schema}".contacts' if schema else None

    async def stamps(self, profile_ids: Collection[str]) -> dict[str, ContactStamp]:
        """Return the versions and fingerprints of the stored contacts of these profiles."""
        if not profile_ids:
            return {}
        if self._q is not None:
            pg = await _asyncpg(self._conn)
            rows = await pg.fetch(
                "SELECT profile_id, version, scored_version, profile_fp, scores_fp "
                f"FROM {self._q} WHERE profile_id = ANY($1::text[])",
                list(profile_ids),
            )
            return {r[0]: ContactStamp(r[1], r[2], r[3], r[4]) for r in rows}
        t = self._t
        result = await self._conn.execute(
            select(
                t.c.profile_id, t.c.version, t.c.scored_version, t.c.profile_fp, t.c.scores_fp
            ).where(one_of(self._conn, t.c.profile_id, profile_ids))
        )
        return {r[0]: ContactStamp(r[1], r[2], r[3], r[4]) for r in result}

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Contact]:
        """Return the stored contacts of these profiles."""
        if not profile_ids:
            return {}
        if self._q is not None:
            pg = await _asyncpg(self._conn)
            # JSON as text, read with msgspec: the driver's codec would use the json module.
            found = await pg.fetch(
                "SELECT profile_id, version, profile::text, scored_version, scores::text, "
                f"last_seen_at, habits, complained_at FROM {self._q} "
                "WHERE profile_id = ANY($1::text[])",
                list(profile_ids),
            )
            return {
                r[0]: contact_of(
                    ContactRow(r[0], r[1], _read_json(r[2]), r[3], _read_json(r[4]), *r[5:])
                )
                for r in found
            }
        rows = await self._conn.execute(
            select(self._t).where(one_of(self._conn, self._t.c.profile_id, profile_ids))
        )
        return {row.profile_id: contact_of(row) for row in rows}

    async def save(self, changes: ViewChanges, now: datetime) -> None:
        """Write a batch's changes to the view (see ViewChanges for each part's guard).

        On PostgreSQL one statement writes every changed contact once, whichever of its
        parts changed; elsewhere each part has its statement.
        """
        if self._q is None:
            await self._save_profiles(changes.profiles, changes.profile_fingerprints, now)
            await self._save_scores(changes.scores, changes.score_fingerprints, now)
            await self._advance(changes.advanced, changes.scored_versions, now)
            return
        rows = _view_rows(changes)
        if rows:
            pg = await _asyncpg(self._conn)
            columns = [list(column) for column in zip(*rows, strict=True)]
            await pg.execute(_SAVE_VIEW.format(table=self._q), *columns, now)

    async def _save_profiles(
        self, contacts: Sequence[Contact], fingerprints: Mapping[str, str], now: datetime
    ) -> None:
        """Store profile facts unless a newer or equal profile version is stored."""
        if not contacts:
            return
        ordered = sorted(contacts, key=lambda c: c.profile_id)
        insert = upsert_insert(self._conn)(self._t)
        stmt = insert.on_conflict_do_update(
            index_elements=["profile_id"],
            set_={
                name: insert.excluded[name]
                for name in (
                    "version",
                    "profile",
                    "last_seen_at",
                    "updated_at",
                    "profile_fp",
                    "habits",
                )
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
                    "profile_fp": fingerprints.get(c.profile_id),
                    "scores_fp": None,
                    "habits": habits_text(c.habits),
                }
                for c in ordered
            ],
        )

    async def _save_scores(
        self, scores: Sequence[ScoreFacts], fingerprints: Mapping[str, str], now: datetime
    ) -> None:
        """Store score facts unless scores of a newer profile version are stored."""
        if not scores:
            return
        ordered = sorted(scores, key=lambda c: c.profile_id)
        insert = upsert_insert(self._conn)(self._t)
        stmt = insert.on_conflict_do_update(
            index_elements=["profile_id"],
            set_={
                name: insert.excluded[name]
                for name in ("scored_version", "scores", "updated_at", "scores_fp")
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
                    "scored_version": c.profile_version,
                    "scores": scores_json(c),
                    "last_seen_at": None,
                    "complained_at": None,
                    "updated_at": now,
                    "profile_fp": None,
                    "scores_fp": fingerprints.get(c.profile_id),
                    "habits": None,
                }
                for c in ordered
            ],
        )

    async def _advance(
        self,
        profiles: Mapping[str, ProfileAdvance],
        scored_versions: Mapping[str, int],
        now: datetime,
    ) -> None:
        """Raise versions (and last-seen, habits) of contacts whose other facts are unchanged."""
        ids = sorted(set(profiles) | set(scored_versions))
        if not ids:
            return
        rows = [
            (p, a.version if a else 0, scored_versions.get(p, 0), a.last_seen_at if a else None,
             habits_text(a.habits) if a else None)
            for p in ids
            for a in (profiles.get(p),)
        ]  # fmt: skip
        t = self._t
        seen = bindparam("l", type_=UtcDateTime())
        await self._conn.execute(
            update(t)
            .where(t.c.profile_id == bindparam("pid"))
            .values(
                habits=case((bindparam("v") > t.c.version, bindparam("h")), else_=t.c.habits),
                version=func.max(t.c.version, bindparam("v")),
                scored_version=func.max(t.c.scored_version, bindparam("s")),
                last_seen_at=func.coalesce(
                    func.max(t.c.last_seen_at, seen), t.c.last_seen_at, seen
                ),
                updated_at=now,
            ),
            [{"pid": r[0], "v": r[1], "s": r[2], "l": r[3], "h": r[4]} for r in rows],
        )

    async def delete(self, profile_ids: Collection[str]) -> None:
        """Forget these people entirely."""
        if profile_ids:
            await self._conn.execute(
                delete(self._t).where(one_of(self._conn, self._t.c.profile_id, profile_ids))
            )

    async def merge(self, merges: Sequence[Merge], now: datetime) -> None:
        """Carry absorbed people's complaints to their survivors, in order; forget the absorbed."""
        if not merges:
            return
        t = self._t
        people = {p for merge in merges for p in merge}
        rows = await self._conn.execute(
            select(t.c.profile_id, t.c.complained_at).where(
                one_of(self._conn, t.c.profile_id, people)
            )
        )
        complained = {
            r.profile_id: aware(r.complained_at) if r.complained_at is not None else None
            for r in rows
        }
        # Played merge by merge on what was read: a complaint reaches a survivor only while
        # both contacts exist, as if each merge had been applied alone.
        raised: dict[str, datetime] = {}
        for merged_id, survivor_id in merges:
            if merged_id not in complained:
                continue
            at = complained.pop(merged_id)
            if at is not None and survivor_id in complained:
                kept = complained[survivor_id]
                if kept is None or kept < at:
                    complained[survivor_id] = raised[survivor_id] = at
        await self.save_complaints({p: at for p, at in raised.items() if p in complained}, now)
        await self.delete({merged_id for merged_id, _ in merges})

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

    def __init__(self, conn: AsyncConnection, tables: CampaignTables, schema: str | None) -> None:
        self._conn = conn
        self._t = tables.triggers
        self._q = f'"{schema}".triggers' if schema else None

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
        ordered = sorted(triggers, key=lambda t: t.event_id)
        if self._q is not None:
            pg = await _asyncpg(self._conn)
            await pg.execute(
                f"INSERT INTO {self._q} (trigger_event_id, profile_id, kind, payload, status, "
                "not_before, episode_days, episode_at, created_at, decided_at) "
                "SELECT i, p, k, j::json, s, n, d, e, $9::timestamptz, "
                "CASE WHEN s = 'decided' THEN $9::timestamptz END "
                "FROM unnest($1::text[], $2::text[], "
                "$3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::int[], "
                "$8::timestamptz[]) AS t(i, p, k, j, s, n, d, e) "
                "ON CONFLICT (trigger_event_id) DO NOTHING",
                [t.event_id for t in ordered],
                [t.profile_id for t in ordered],
                [t.kind.value for t in ordered],
                [_json(trigger_json(t)) for t in ordered],
                [DECIDED if t.event_id in done else PENDING for t in ordered],
                [later.get(t.event_id) for t in ordered],
                [t.inactive_days if t.kind is TriggerKind.INACTIVITY else None for t in ordered],
                [t.episode_at for t in ordered],
                now,
            )
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
                    "kind": t.kind.value,
                    "payload": trigger_json(t),
                    "status": DECIDED if t.event_id in done else PENDING,
                    "not_before": later.get(t.event_id),
                    "episode_days": t.inactive_days if t.kind is TriggerKind.INACTIVITY else None,
                    "episode_at": t.episode_at,
                    "created_at": now,
                    "decided_at": now if t.event_id in done else None,
                }
                for t in ordered
            ],
        )

    async def pending_for(self, profile_ids: Collection[str]) -> list[Trigger]:
        """Return the pending, not deferred triggers of these profiles, oldest first."""
        if not profile_ids:
            return []
        if self._q is not None:
            pg = await _asyncpg(self._conn)
            found = await pg.fetch(
                f"SELECT payload::text FROM {self._q} WHERE profile_id = ANY($1::text[]) "
                f"AND status = '{PENDING}' AND not_before IS NULL "
                "ORDER BY created_at, trigger_event_id",
                list(profile_ids),
            )
            return [trigger_of(_read_json(r[0])) for r in found]
        t = self._t
        rows = await self._conn.execute(
            select(t.c.payload)
            .where(
                one_of(self._conn, t.c.profile_id, profile_ids),
                t.c.status == PENDING,
                t.c.not_before.is_(None),
            )
            .order_by(t.c.created_at, t.c.trigger_event_id)
        )
        return [trigger_of(row.payload) for row in rows]

    async def waiting_and_known(
        self, profile_ids: Collection[str], trigger_ids: Collection[str]
    ) -> tuple[list[Trigger], set[str]]:
        """Return pending_for(profile_ids) and which of these trigger ids are stored, at once.

        A trigger is stored whatever its status (pending, deferred, decided, expired): a
        tier move whose trigger is stored was consumed before, and needs no inbox entry.
        """
        if not trigger_ids:
            return await self.pending_for(profile_ids), set()
        people, ids = set(profile_ids), set(trigger_ids)
        if self._q is not None:
            pg = await _asyncpg(self._conn)
            found = await pg.fetch(
                "SELECT trigger_event_id, profile_id, status = 'pending' AND not_before IS NULL, "
                f"payload::text FROM {self._q} WHERE (profile_id = ANY($1::text[]) "
                f"AND status = '{PENDING}' AND not_before IS NULL) "
                "OR trigger_event_id = ANY($2::text[]) ORDER BY created_at, trigger_event_id",
                sorted(people),
                sorted(ids),
            )
            rows = [(r[0], r[1], r[2], r[3]) for r in found]
        else:
            t = self._t
            result = await self._conn.execute(
                select(
                    t.c.trigger_event_id, t.c.profile_id, t.c.status, t.c.not_before, t.c.payload
                )
                .where(
                    and_(
                        one_of(self._conn, t.c.profile_id, people),
                        t.c.status == PENDING,
                        t.c.not_before.is_(None),
                    )
                    | one_of(self._conn, t.c.trigger_event_id, ids)
                )
                .order_by(t.c.created_at, t.c.trigger_event_id)
            )
            rows = [(r[0], r[1], r[2] == PENDING and r[3] is None, r[4]) for r in result]
        waiting = [
            trigger_of(_read_json(payload) if isinstance(payload, str) else payload)
            for _, pid, pending, payload in rows
            if pending and pid in people
        ]
        return waiting, {tid for tid, *_ in rows if tid in ids}

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
            .where(one_of(self._conn, self._t.c.trigger_event_id, trigger_event_ids))
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

    async def expire(self, created_before: datetime, now: datetime) -> int:
        """Drop triggers still waiting for data since before that time; return how many."""
        t = self._t
        # The row stays (status expired, payload emptied): its id still tells a redelivered
        # cause that it was seen.
        result = await self._conn.execute(
            update(t)
            .where(
                t.c.status == PENDING,
                t.c.not_before.is_(None),
                t.c.created_at < created_before,
            )
            .values(status=EXPIRED, decided_at=now, payload={})
        )
        return int(result.rowcount or 0)

    async def delete(self, profile_ids: Collection[str]) -> None:
        """Delete every trigger of these people."""
        if profile_ids:
            await self._conn.execute(
                delete(self._t).where(one_of(self._conn, self._t.c.profile_id, profile_ids))
            )

    async def move(self, holders: Mapping[str, str]) -> None:
        """Give each absorbed person's triggers to who holds their data now (merge_targets).

        A waiting trigger named a version of the absorbed profile, which says nothing about
        the survivor's: it now waits only for the survivor to be known.
        """
        if not holders:
            return
        t = self._t
        rows = await self._conn.execute(
            select(t.c.trigger_event_id, t.c.profile_id, t.c.payload, t.c.status)
            .where(one_of(self._conn, t.c.profile_id, holders))
            .order_by(t.c.trigger_event_id)
        )
        moved = []
        for row in rows:
            survivor_id = holders[row.profile_id]
            payload = row.payload
            if payload:
                version = 0 if row.status == PENDING else payload.get("profile_version", 0)
                payload = {**payload, "profile_id": survivor_id, "profile_version": version}
            moved.append({"tid": row.trigger_event_id, "pid": survivor_id, "payload": payload})
        if moved:
            # Keyed by trigger id: each row moves once, whatever the order of the merges.
            await self._conn.execute(
                update(t)
                .where(t.c.trigger_event_id == bindparam("tid"))
                .values(profile_id=bindparam("pid"), payload=bindparam("payload")),
                moved,
            )


class SqlDecisions:
    """Decisions in SQL, unique per campaign and trigger, with responses and conversions."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables, schema: str | None) -> None:
        self._conn = conn
        self._t = tables.decisions
        self._q = f'"{schema}".decisions' if schema else None

    async def add(self, decisions: Sequence[Decision]) -> set[str]:
        """Record decisions; return the ids recorded now (an existing one is not replaced)."""
        if not decisions:
            return set()
        if self._q is not None:
            ordered = sorted(decisions, key=lambda d: d.decision_id)
            pg = await _asyncpg(self._conn)
            rows = await pg.fetch(
                f"INSERT INTO {self._q} (decision_id, campaign_id, trigger_event_id, profile_id, "
                "channel, variant, offer, purpose, tier, segment, outcome, reasons, "
                "expected_value, cost_micros, created_at, revenue_micros) "
                "SELECT i, c, g, p, ch, v, o, pu, ti, se, ou, r::json, ev, co, cr, 0 "
                "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
                "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], "
                "$12::text[], $13::float8[], $14::int8[], $15::timestamptz[]) "
                "AS t(i, c, g, p, ch, v, o, pu, ti, se, ou, r, ev, co, cr) "
                "ON CONFLICT DO NOTHING RETURNING decision_id",
                [d.decision_id for d in ordered],
                [d.campaign_id for d in ordered],
                [d.trigger_event_id for d in ordered],
                [d.profile_id for d in ordered],
                [d.channel.value if d.channel is not None else None for d in ordered],
                [d.variant for d in ordered],
                [d.offer for d in ordered],
                [d.purpose.value for d in ordered],
                [d.tier.value for d in ordered],
                [d.segment.value if d.segment is not None else None for d in ordered],
                [d.outcome.value for d in ordered],
                [_json([r.as_json() for r in d.reasons]) for d in ordered],
                [d.expected_value for d in ordered],
                [micros(d.cost) if d.outcome is Outcome.SENT else 0 for d in ordered],
                [d.decided_at for d in ordered],
            )
            return {row[0] for row in rows}
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
                    "reasons": [r.as_json() for r in d.reasons],
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
                one_of(self._conn, t.c.trigger_event_id, trigger_event_ids)
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
            select(*self._ref_columns()).where(one_of(self._conn, t.c.decision_id, decision_ids))
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
                one_of(self._conn, t.c.profile_id, profile_ids),
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

    async def answered_and_open(
        self, decision_ids: Collection[str], profile_ids: Collection[str], since: datetime
    ) -> tuple[dict[str, DecisionRef], list[DecisionRef]]:
        """Return refs() of these ids and open_for_conversion() of these people, read at once."""
        if not decision_ids or not profile_ids:
            # One of the two is empty: the other query alone, exactly.
            return await self.refs(decision_ids), await self.open_for_conversion(profile_ids, since)
        t = self._t
        opened = [Outcome.SENT, Outcome.CONTROL]
        stmt = (
            select(*self._ref_columns())
            .where(
                one_of(self._conn, t.c.decision_id, decision_ids)
                | and_(
                    one_of(self._conn, t.c.profile_id, profile_ids),
                    t.c.outcome.in_([o.value for o in opened]),
                    t.c.created_at >= since,
                    t.c.converted_at.is_(None),
                )
            )
            .order_by(t.c.decision_id)
        )
        if is_postgres(self._conn):
            stmt = stmt.with_for_update()
        found = [self._ref(row) for row in await self._conn.execute(stmt)]
        people = set(profile_ids)
        refs = {r.decision_id: r for r in found if r.decision_id in decision_ids}
        still_open = [
            r
            for r in found
            if r.profile_id in people
            and r.outcome in opened
            and r.decided_at >= aware(since)
            and not r.converted
        ]
        return refs, still_open

    async def record_responses(self, decision_ids: Collection[str], at: datetime) -> set[str]:
        """Mark sent decisions as responded; return those marked now."""
        if not decision_ids:
            return set()
        t = self._t
        result = await self._conn.execute(
            update(t)
            .where(
                one_of(self._conn, t.c.decision_id, decision_ids),
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


class SqlDecisionHistory(SqlDecisions):
    """Decisions, with what erasure and merges do to them."""

    async def anonymise(self, profile_ids: Collection[str]) -> None:
        """Detach these people's decisions from them, keeping what the results count."""
        if not profile_ids:
            return
        t = self._t
        # Outcome, channel, tier, segment, money and the response and conversion marks stay:
        # counts, uplift and ROI are unchanged. The reasons go (they quote the person's data).
        await self._conn.execute(
            update(t)
            .where(one_of(self._conn, t.c.profile_id, profile_ids))
            .values(profile_id=ERASED_PROFILE, reasons=[])
        )

    async def move(self, holders: Mapping[str, str]) -> None:
        """Give each absorbed person's decisions (contact history) to who holds their data now."""
        if not holders:
            return
        t = self._t
        # One statement: every row moves by the holder of its original profile, once.
        await self._conn.execute(
            update(t)
            .where(one_of(self._conn, t.c.profile_id, holders))
            .values(profile_id=case(dict(sorted(holders.items())), value=t.c.profile_id))
        )


class SqlErasures:
    """Markers of erased profiles."""

    def __init__(self, conn: AsyncConnection, tables: CampaignTables) -> None:
        self._conn = conn
        self._t = tables.erased

    async def record(self, markers: Collection[str], now: datetime) -> None:
        """Remember these markers."""
        if not markers:
            return
        await self._conn.execute(
            upsert_insert(self._conn)(self._t).on_conflict_do_nothing(index_elements=["marker"]),
            [{"marker": m, "erased_at": now} for m in sorted(markers)],
        )

    async def erased(self, markers: Collection[str]) -> set[str]:
        """Return the markers among these that were recorded."""
        if not markers:
            return set()
        rows = await self._conn.execute(
            select(self._t.c.marker).where(one_of(self._conn, self._t.c.marker, markers))
        )
        return {row.marker for row in rows}


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
    decisions: SqlDecisionHistory
    evidence: SqlEvidence
    budgets: SqlBudgets
    erasures: SqlErasures

    def __init__(
        self,
        engine: AsyncEngine,
        tables: CampaignTables,
        kafka: KafkaSettings,
        on_staged_commit: Callable[[], None] | None = None,
        schema: str | None = None,
    ) -> None:
        super().__init__(
            engine,
            inbox=tables.inbox,
            outbox=tables.outbox,
            kafka=kafka,
            on_staged_commit=on_staged_commit,
        )
        self._tables = tables
        self._schema = schema

    def _opened(self, conn: AsyncConnection) -> None:
        schema = self._schema if is_postgres(conn) else None
        self.contacts = SqlContacts(conn, self._tables, schema)
        self.triggers = SqlTriggers(conn, self._tables, schema)
        self.decisions = SqlDecisionHistory(conn, self._tables, schema)
        self.evidence = SqlEvidence(conn, self._tables)
        self.budgets = SqlBudgets(conn, self._tables)
        self.erasures = SqlErasures(conn, self._tables)

    def _closed(self) -> None:
        for name in ("contacts", "triggers", "decisions", "evidence", "budgets", "erasures"):
            self.__dict__.pop(name, None)

    async def unstage(self, keys: Collection[str]) -> None:
        """Drop events with these keys that wait for publication (an erased person's)."""
        await unstage_keys(self.connection, self._tables.outbox, {k.encode() for k in keys})
