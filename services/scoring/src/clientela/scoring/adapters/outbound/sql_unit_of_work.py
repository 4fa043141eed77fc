"""SQL unit of work: inbox, scores, tier history, parameters and outbox in one transaction."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Row, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clientela.scoring.adapters.outbound import tables
from clientela.scoring.application.ports import (
    LoadedBatch,
    ScoreRecord,
    StoredScore,
    TierTransition,
    UnpublishedChange,
)
from clientela.scoring.application.wire import encode
from clientela.scoring.domain.clv import BgNbdParams, GammaGammaParams
from clientela.scoring.domain.facts import CustomerFacts
from clientela.scoring.domain.potential import ProspectFeatures
from clientela.scoring.domain.value_model import FittedParameters
from clientela.shared.codec import EncodedEvent
from clientela.shared.contracts import Lifecycle, ScoresUpdated, Tier
from clientela.shared.db import is_postgres, upsert_insert
from clientela.shared.outbox import PACKED, SqlTransaction, unstage_keys
from clientela.shared.settings import KafkaSettings

_RECORD_COLUMNS = (
    "profile_version",
    "revision",
    "tier_seq",
    "lifecycle",
    "tier",
    "predicted_value",
    "at_risk",
    "purchase_days",
    "purchase_count",
    "first_purchase_s",
    "last_purchase_s",
    "total_spend",
    "cost_to_serve",
    "prospect_features",
    "state",
    "updated_at",
    "inputs_digest",
    "republish",
    "potential",
)


def as_utc(moment: datetime) -> datetime:
    """Return an aware UTC datetime (SQLite hands timestamps back without a zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stored_score(state: str, updated_at: datetime) -> StoredScore:
    """Rebuild stored scores from the state and updated_at columns."""
    return StoredScore(
        scores=ScoresUpdated.model_validate_json(state), updated_at=as_utc(updated_at)
    )


def record_of(row: Row[Any], state: bytes = b"") -> ScoreRecord:
    """Rebuild a ScoreRecord from a profile_scores row (the state only when given)."""
    return _record(
        row.profile_id,
        row.profile_version,
        row.revision,
        row.tier_seq,
        row.lifecycle,
        row.tier,
        row.predicted_value,
        row.at_risk,
        row.purchase_days,
        row.purchase_count,
        row.first_purchase_s,
        row.last_purchase_s,
        row.total_spend,
        row.cost_to_serve,
        row.prospect_features,
        row.updated_at,
        state,
        row.inputs_digest,
        row.republish,
        row.potential,
    )


def _record(
    profile_id: str,
    profile_version: int,
    revision: int,
    tier_seq: int,
    lifecycle: str,
    tier: str,
    predicted_value: float,
    at_risk: bool,
    purchase_days: int,
    purchase_count: int,
    first_purchase_s: float | None,
    last_purchase_s: float | None,
    total_spend: float,
    cost_to_serve: float,
    prospect_features: Any,
    updated_at: datetime,
    state: bytes = b"",
    inputs_digest: int | None = None,
    republish: bool = False,
    potential: float | None = None,
) -> ScoreRecord:
    facts = (
        CustomerFacts(
            purchase_days=int(purchase_days),
            purchase_count=int(purchase_count),
            first_purchase_s=float(first_purchase_s),
            last_purchase_s=float(last_purchase_s if last_purchase_s is not None else 0.0),
            total_spend=float(total_spend),
            cost_to_serve=float(cost_to_serve),
        )
        if first_purchase_s is not None
        else None
    )
    if isinstance(prospect_features, str):
        prospect_features = msgspec.json.decode(prospect_features)
    return ScoreRecord(
        profile_id=profile_id,
        profile_version=int(profile_version),
        revision=int(revision),
        tier_seq=int(tier_seq),
        lifecycle=Lifecycle(lifecycle),
        tier=Tier(tier),
        predicted_value=float(predicted_value),
        at_risk=bool(at_risk),
        facts=facts,
        prospect_features=ProspectFeatures.from_json(prospect_features)
        if prospect_features
        else None,
        updated_at=as_utc(updated_at),
        state=state,
        inputs_digest=inputs_digest,
        cost_to_serve=float(cost_to_serve),
        republish=bool(republish),
        potential=None if potential is None else float(potential),
    )


_LIFECYCLES = {lc.value: lc for lc in Lifecycle}
_TIERS = {t.value: t for t in Tier}


def _loaded_record(row: Any) -> ScoreRecord:
    """Rebuild a ScoreRecord from a `load_batch` row (asyncpg: columns already typed).

    The same record `_record` builds, without its conversions: asyncpg hands bigint, float8
    and bool columns back as int, float and bool, and timestamptz as an aware UTC datetime;
    enum members come from dicts. A batch rebuilds one record per stored profile.
    """
    first_purchase_s = row[11]
    last_purchase_s = row[12]
    cost_to_serve = row[14]
    features = row[15]
    updated_at = row[16]
    return ScoreRecord(
        row[1],
        row[2],
        row[3],
        row[4],
        _LIFECYCLES[row[5]],
        _TIERS[row[6]],
        row[7],
        row[8],
        None
        if first_purchase_s is None
        else CustomerFacts(
            row[9],
            row[10],
            first_purchase_s,
            0.0 if last_purchase_s is None else last_purchase_s,
            row[13],
            cost_to_serve,
        ),
        ProspectFeatures.from_json(msgspec.json.decode(features)) if features else None,
        updated_at if updated_at.tzinfo is UTC else as_utc(updated_at),
        b"",
        row[17],
        cost_to_serve,
        row[18],
        row[19],
    )


def _row(record: ScoreRecord) -> dict[str, Any]:
    """Return a record as the SQLAlchemy insert takes it (enum values, JSON as text)."""
    row = _pg_row(record)
    features = record.prospect_features
    row.update(
        lifecycle=record.lifecycle.value,
        tier=record.tier.value,
        prospect_features=encode(features.as_json()).decode() if features else None,
        state=record.state.decode(),
    )
    return row


# Everything but the published state: what streaming and the start-up load read.
_COUNTER_COLUMNS = [c for c in tables.profile_scores.c if c.name != "state"]


class SqlScoreStore:
    """Score records read and written on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get_many(
        self, profile_ids: Sequence[str], *, with_state: bool = False
    ) -> dict[str, ScoreRecord]:
        """Return the stored records of those profiles that have any, in one query."""
        if not profile_ids:
            return {}
        table = tables.profile_scores
        columns: list[Any] = list(_COUNTER_COLUMNS)
        if with_state:
            # Kept as the bytes that were published, not parsed here.
            columns.append(table.c.state.label("state_text"))
        result = await self._conn.execute(
            select(*columns).where(table.c.profile_id.in_(sorted(set(profile_ids))))
        )
        return {
            row.profile_id: record_of(row, row.state_text.encode() if with_state else b"")
            for row in result
        }

    async def all_records(self) -> list[ScoreRecord]:
        """Return every stored record (without the published state)."""
        result = await self._conn.execute(select(*_COUNTER_COLUMNS))
        return [record_of(row) for row in result]

    async def save_many(self, records: Sequence[ScoreRecord]) -> None:
        """Upsert in one statement, in key order; a lower revision never overwrites a higher."""
        if not records:
            return
        table = tables.profile_scores
        insert = upsert_insert(self._conn)(table)
        stmt = insert.on_conflict_do_update(
            index_elements=[table.c.profile_id],
            set_={name: insert.excluded[name] for name in _RECORD_COLUMNS},
            where=table.c.revision < insert.excluded.revision,
        )
        rows = sorted((_row(r) for r in records), key=lambda r: str(r["profile_id"]))
        await self._conn.execute(stmt, rows)


class SqlParameterStore:
    """Versioned model parameters on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def latest(self) -> FittedParameters | None:
        """Return the newest parameter set, or None."""
        found = await self.history(1)
        return found[0] if found else None

    async def history(self, limit: int) -> list[FittedParameters]:
        """Return the newest parameter sets, newest first."""
        table = tables.model_parameters
        result = await self._conn.execute(
            select(table).order_by(table.c.version.desc()).limit(limit)
        )
        return [parameters_of(row) for row in result]

    async def add(self, parameters: FittedParameters) -> None:
        """Store a new parameter set."""
        p = parameters
        await self._conn.execute(
            tables.model_parameters.insert(),
            {
                "version": p.version,
                "parameters": {
                    "bgnbd": dict(zip(("r", "alpha", "a", "b"), p.bgnbd.as_tuple(), strict=True)),
                    "gamma_gamma": dict(
                        zip(("p", "q", "gamma"), p.gamma_gamma.as_tuple(), strict=True)
                    ),
                    "period_days": p.period_days,
                    "repeat_customer_count": p.repeat_customer_count,
                    "bgnbd_log_likelihood": p.bgnbd_log_likelihood,
                    "gamma_gamma_log_likelihood": p.gamma_gamma_log_likelihood,
                },
                "fitted_at": p.fitted_at,
                "as_of": p.as_of,
                "customer_count": p.customer_count,
            },
        )


def parameters_of(row: Row[Any]) -> FittedParameters:
    """Rebuild a parameter set from a model_parameters row."""
    data = row.parameters
    return FittedParameters(
        version=int(row.version),
        bgnbd=BgNbdParams(**{k: float(v) for k, v in data["bgnbd"].items()}),
        gamma_gamma=GammaGammaParams(**{k: float(v) for k, v in data["gamma_gamma"].items()}),
        period_days=float(data["period_days"]),
        fitted_at=as_utc(row.fitted_at),
        as_of=as_utc(row.as_of),
        customer_count=int(row.customer_count),
        repeat_customer_count=int(data["repeat_customer_count"]),
        bgnbd_log_likelihood=float(data["bgnbd_log_likelihood"]),
        gamma_gamma_log_likelihood=float(data["gamma_gamma_log_likelihood"]),
    )


# The key of the erasure markers when none is configured (development and tests).
DEVELOPMENT_MARKER_KEY = b"clientela-scoring-development-erasure-marker-key"


def erasure_marker(key: bytes, profile_id: str) -> str:
    """Return the keyed, non-reversible marker of an erased profile id (HMAC-SHA256, hex)."""
    # The one-shot form: the same MAC without an HMAC object per profile id.
    return hmac.digest(key, profile_id.encode(), "sha256").hex()


def quoted(schema: str, table: str) -> str:
    """Return a schema-qualified table name for raw SQL."""
    return '"' + schema.replace('"', '""') + '"."' + table + '"'


# The streaming hot path on PostgreSQL, run on the asyncpg connection under the SQLAlchemy one
# (same transaction). Rows travel as one JSON document per table, encoded by msgspec in one
# call and unpacked by json_to_recordset: asyncpg's array parameters check every element
# against the collection ABCs in Python, which cost more than the rest of the write. `{name}`
# is the schema-qualified table.
_PG_SQL = {
    # Stored counters of the batch's profiles (kind 1) and erasure markers among them
    # (kind 2) in one round trip. Each key is looked up on its own (the lateral subquery
    # with OFFSET 0 is not flattened into a join): an index probe per key is the only plan,
    # whatever the statistics say. A join here was planned as a hash join over a sequential
    # scan while the table was new and small, and asyncpg's cached statement kept that plan
    # as the table grew.
    "load_batch": """
        SELECT 1 AS kind, s.profile_id, s.profile_version, s.revision, s.tier_seq,
               s.lifecycle, s.tier, s.predicted_value, s.at_risk, s.purchase_days,
               s.purchase_count, s.first_purchase_s, s.last_purchase_s, s.total_spend,
               s.cost_to_serve, s.prospect_features::text, s.updated_at, s.inputs_digest,
               s.republish, s.potential
        FROM json_array_elements_text($1::json) AS k(id)
        CROSS JOIN LATERAL (SELECT * FROM {profile_scores} AS p
                            WHERE p.profile_id = k.id OFFSET 0) AS s
        UNION ALL
        SELECT 2, e.marker, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM json_array_elements_text($2::json) AS m(marker)
        CROSS JOIN LATERAL (SELECT marker FROM {erased_profiles} AS e
                            WHERE e.marker = m.marker OFFSET 0) AS e""",
    # Scores upserted in key order (a lower revision never overwrites a higher one), history
    # rows, the batch's events as one packed outbox row (see shared.outbox), and the changes
    # kept unpublished (as `store_unpublished`; other profiles than the upserted ones, so no
    # row is touched twice), in one statement.
    "write_scored": """
        WITH s AS (
            INSERT INTO {profile_scores} (profile_id, profile_version, revision, tier_seq,
                lifecycle, tier, predicted_value, at_risk, purchase_days, purchase_count,
                first_purchase_s, last_purchase_s, total_spend, cost_to_serve,
                prospect_features, state, updated_at, inputs_digest, republish, potential)
            SELECT u.profile_id, u.profile_version, u.revision, u.tier_seq, u.lifecycle, u.tier,
                   u.predicted_value, u.at_risk, u.purchase_days, u.purchase_count,
                   u.first_purchase_s, u.last_purchase_s, u.total_spend, u.cost_to_serve,
                   u.prospect_features{features_cast}, u.state::{state_type},
                   u.updated_at, u.inputs_digest, u.republish, u.potential
            FROM ROWS FROM (
                json_to_recordset($1::json) AS (profile_id text, profile_version bigint,
                    revision bigint, tier_seq bigint, lifecycle text, tier text,
                    predicted_value float8, at_risk bool, purchase_days int,
                    purchase_count int, first_purchase_s float8, last_purchase_s float8,
                    total_spend float8, cost_to_serve float8, prospect_features json,
                    updated_at timestamptz, inputs_digest bigint, republish bool,
                    potential float8),
                string_to_table($2::text, chr(30)))
                AS u(profile_id, profile_version, revision, tier_seq, lifecycle, tier,
                     predicted_value, at_risk, purchase_days, purchase_count,
                     first_purchase_s, last_purchase_s, total_spend, cost_to_serve,
                     prospect_features, updated_at, inputs_digest, republish, potential, state)
            ORDER BY u.profile_id
            ON CONFLICT (profile_id) DO UPDATE SET
                profile_version = EXCLUDED.profile_version, revision = EXCLUDED.revision,
                tier_seq = EXCLUDED.tier_seq, lifecycle = EXCLUDED.lifecycle,
                tier = EXCLUDED.tier, predicted_value = EXCLUDED.predicted_value,
                at_risk = EXCLUDED.at_risk, purchase_days = EXCLUDED.purchase_days,
                purchase_count = EXCLUDED.purchase_count,
                first_purchase_s = EXCLUDED.first_purchase_s,
                last_purchase_s = EXCLUDED.last_purchase_s,
                total_spend = EXCLUDED.total_spend, cost_to_serve = EXCLUDED.cost_to_serve,
                prospect_features = EXCLUDED.prospect_features, state = EXCLUDED.state,
                updated_at = EXCLUDED.updated_at, inputs_digest = EXCLUDED.inputs_digest,
                republish = EXCLUDED.republish, potential = EXCLUDED.potential
            WHERE {profile_scores}.revision < EXCLUDED.revision
            RETURNING 1),
        h AS (
            INSERT INTO {tier_history} (event_id, profile_id, profile_version, from_tier,
                to_tier, move, occurred_at)
            SELECT * FROM json_to_recordset($3::json) AS h(event_id text, profile_id text,
                profile_version bigint, from_tier text, to_tier text, move text,
                occurred_at timestamptz)
            ON CONFLICT (event_id) DO NOTHING
            RETURNING 1),
        o AS (
            INSERT INTO {outbox} (topic, key, value, headers)
            SELECT $4::text, NULL, $5::bytea, '[]'
            WHERE $5::bytea IS NOT NULL
            RETURNING 1),
        k AS ({keep_sql}
            RETURNING 1)
        SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM h), (SELECT count(*) FROM o),
               (SELECT count(*) FROM k)""",
    # Newer versions' cost to serve and prospect features, stored without publishing (a
    # customer's pre-purchase snapshot stays); the sweep announces them.
    "store_unpublished": "{keep_sql}",
}

# The kept changes' UPDATE (`$keep` is their JSON document). Each row is found by its key
# with an index probe (lateral, not flattened), then updated by its row address (a TID
# scan): the same plan on a new table without statistics as on a large analysed one. The
# address is read in the same statement, so it is the row version this statement sees.
_KEEP_SQL = """
        UPDATE {profile_scores} AS p
        SET profile_version = a.profile_version, cost_to_serve = a.cost_to_serve,
            prospect_features = COALESCE(a.prospect_features{features_cast},
                                         p.prospect_features),
            inputs_digest = COALESCE(a.inputs_digest, p.inputs_digest),
            republish = true
        FROM (SELECT a.*, f.row_address
              FROM json_to_recordset($keep::json)
                  AS a(profile_id text, profile_version bigint, cost_to_serve float8,
                       prospect_features json, inputs_digest bigint)
              CROSS JOIN LATERAL (SELECT ctid AS row_address FROM {profile_scores} AS q
                                  WHERE q.profile_id = a.profile_id OFFSET 0) AS f) AS a
        WHERE p.ctid = a.row_address AND p.profile_version < a.profile_version"""

_SQL_BY_SCHEMA: dict[str, dict[str, str]] = {}
_ENCODER = msgspec.json.Encoder()


def _joined(documents: list[bytes]) -> str | None:
    # Encoded JSON never holds a raw control character (msgspec escapes them in strings), so
    # the record separator splits the documents again on the server: one text parameter, no
    # per-element work in the driver, each document parsed once (by the json column).
    return b"\x1e".join(documents).decode() if documents else None


def _unpublished_rows(changes: Sequence[UnpublishedChange]) -> list[dict[str, Any]]:
    """Return unpublished changes as rows, in key order."""
    return [
        {
            "profile_id": c.profile_id,
            "profile_version": c.profile_version,
            "cost_to_serve": c.cost_to_serve,
            "prospect_features": c.prospect_features.as_json()
            if c.prospect_features is not None
            else None,
            "inputs_digest": c.inputs_digest,
        }
        for c in sorted(changes, key=lambda c: c.profile_id)
    ]


def _pg_row(record: ScoreRecord) -> dict[str, Any]:
    """Return a record's columns but its state, as msgspec encodes them for PostgreSQL."""
    f = record.facts
    features = record.prospect_features
    return {
        "profile_id": record.profile_id,
        "profile_version": record.profile_version,
        "revision": record.revision,
        "tier_seq": record.tier_seq,
        "lifecycle": record.lifecycle,
        "tier": record.tier,
        "predicted_value": record.predicted_value,
        "at_risk": record.at_risk,
        "purchase_days": f.purchase_days if f else 0,
        "purchase_count": f.purchase_count if f else 0,
        "first_purchase_s": f.first_purchase_s if f else None,
        "last_purchase_s": f.last_purchase_s if f else None,
        "total_spend": f.total_spend if f else 0.0,
        "cost_to_serve": f.cost_to_serve if f else record.cost_to_serve,
        "prospect_features": features.as_json() if features else None,
        "updated_at": record.updated_at,
        "inputs_digest": record.inputs_digest,
        "republish": record.republish,
        "potential": record.potential,
    }


async def _pg_statements(driver: Any, schema: str) -> dict[str, str]:
    found = _SQL_BY_SCHEMA.get(schema)
    if found is None:
        # JSON columns are json as migrated; a store made another way may hold jsonb: cast
        # to what is there (asked once per schema and process).
        rows = await driver.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND column_name IN ('state', 'prospect_features')",
            schema,
        )
        types = {(r[0], r[1]): r[2] for r in rows}
        names = {t.name: quoted(schema, t.name) for t in tables.metadata.sorted_tables}
        # json values go in as they came (no second parse); jsonb columns get a cast.
        for cast_name, column in (("features_cast", ("profile_scores", "prospect_features")),):
            names[cast_name] = "::jsonb" if types.get(column) == "jsonb" else ""
        # Text as migrated (0006); a store made before keeps its json or jsonb.
        names["state_type"] = {"jsonb": "jsonb", "json": "json"}.get(
            types.get(("profile_scores", "state"), ""), "text"
        )
        keep = _KEEP_SQL.format(**names)
        found = {}
        for name, sql in _PG_SQL.items():
            # The kept changes are the write's sixth parameter, and store_unpublished's only.
            position = 6 if name == "write_scored" else 1
            found[name] = sql.format(**names, keep_sql=keep.replace("$keep", f"${position}"))
        _SQL_BY_SCHEMA[schema] = found
    return found


class SqlScoringUnitOfWork(SqlTransaction):
    """The shared transaction (inbox, outbox, relay wake-up) plus scores and parameters.

    On PostgreSQL a streamed batch takes two statements (load; write everything)
    on the asyncpg connection under SQLAlchemy's; SQLite goes through SQLAlchemy Core.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        kafka: KafkaSettings,
        on_staged_commit: Callable[[], None] | None = None,
        *,
        marker_key: bytes = DEVELOPMENT_MARKER_KEY,
    ) -> None:
        super().__init__(
            engine,
            inbox=tables.inbox,
            outbox=tables.outbox,
            kafka=kafka,
            on_staged_commit=on_staged_commit,
        )
        self._marker_key = marker_key
        self._scores: SqlScoreStore | None = None
        self._parameters: SqlParameterStore | None = None
        self._begun = False

    def _opened(self, conn: AsyncConnection) -> None:
        self._scores = SqlScoreStore(conn)
        self._parameters = SqlParameterStore(conn)
        self._begun = False

    def _closed(self) -> None:
        self._scores = None
        self._parameters = None

    async def _pg(self) -> tuple[Any, dict[str, str]]:
        conn = self.connection
        raw = await conn.get_raw_connection()
        options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
        schema = options.get("schema_translate_map", {}).get(None) or "public"
        driver = raw.driver_connection
        return driver, await _pg_statements(driver, schema)

    async def _pg_fetch(self, sql: str, *args: Any) -> list[Any]:
        # SQLAlchemy sends BEGIN lazily, before its first statement: a statement sent to the
        # driver first would run outside the transaction. So the first one goes through
        # SQLAlchemy (BEGIN, then the statement), the rest straight to the driver.
        if not self._begun:
            self._begun = True
            result = await self.connection.exec_driver_sql(sql, args)
            return list(result.all())
        driver, _ = await self._pg()
        return list(await driver.fetch(sql, *args))

    async def load_batch(self, profile_ids: Sequence[str]) -> LoadedBatch:
        """Read the profiles' stored records and which of them were erased."""
        markers = {erasure_marker(self._marker_key, pid): pid for pid in profile_ids}
        if not is_postgres(self.connection):
            return LoadedBatch(await self.scores.get_many(profile_ids), await self._erased(markers))
        _, sql = await self._pg()
        rows = await self._pg_fetch(
            sql["load_batch"],
            _ENCODER.encode(list(profile_ids)).decode(),
            _ENCODER.encode(list(markers)).decode(),
        )
        stored: dict[str, ScoreRecord] = {}
        erased: set[str] = set()
        for row in rows:
            if row[0] == 1:
                stored[row[1]] = _loaded_record(row)
            else:
                erased.add(markers[row[1]])
        return LoadedBatch(stored, erased)

    async def _erased(self, markers: dict[str, str]) -> set[str]:
        if not markers:
            return set()
        table = tables.erased_profiles
        result = await self.connection.execute(
            select(table.c.marker).where(table.c.marker.in_(list(markers)))
        )
        return {markers[m] for m in result.scalars()}

    async def write_scored(
        self,
        records: Sequence[ScoreRecord],
        transitions: Sequence[TierTransition],
        events: Sequence[EncodedEvent],
        unpublished: Sequence[UnpublishedChange] = (),
    ) -> None:
        """Store records, history, staged events and kept changes (one statement on PostgreSQL)."""
        if not is_postgres(self.connection):
            await self.store_unpublished(unpublished)
            await self.scores.save_many(records)
            await self.record_tier_changes(transitions)
            await self.stage_encoded(events)
            return
        _, sql = await self._pg()
        await self._pg_fetch(
            sql["write_scored"],
            _ENCODER.encode([_pg_row(r) for r in records]).decode(),
            _joined([r.state for r in records]),
            _ENCODER.encode(
                [
                    {
                        "event_id": t.event_id,
                        "profile_id": t.profile_id,
                        "profile_version": t.profile_version,
                        "from_tier": t.from_tier,
                        "to_tier": t.to_tier,
                        "move": t.move,
                        "occurred_at": t.occurred_at,
                    }
                    for t in transitions
                ]
            ).decode(),
            PACKED,
            self.packed(events) if events else None,
            _ENCODER.encode(_unpublished_rows(unpublished)).decode(),
        )
        self.count_staged(len(events))

    async def store_unpublished(self, changes: Sequence[UnpublishedChange]) -> None:
        """Store newer versions' unpublished inputs, marked to republish; older ones no-op."""
        if not changes:
            return
        rows = _unpublished_rows(changes)
        if is_postgres(self.connection):
            _, sql = await self._pg()
            await self._pg_fetch(sql["store_unpublished"], _ENCODER.encode(rows).decode())
            return
        table = tables.profile_scores
        await self.connection.execute(
            update(table)
            .where(
                table.c.profile_id == bindparam("pid"),
                table.c.profile_version < bindparam("version"),
            )
            .values(
                profile_version=bindparam("version"),
                cost_to_serve=bindparam("cost"),
                prospect_features=func.coalesce(bindparam("features"), table.c.prospect_features),
                inputs_digest=func.coalesce(bindparam("digest"), table.c.inputs_digest),
                republish=True,
            ),
            [
                {
                    "pid": r["profile_id"],
                    "version": r["profile_version"],
                    "cost": r["cost_to_serve"],
                    "features": None
                    if r["prospect_features"] is None
                    else encode(r["prospect_features"]).decode(),
                    "digest": r["inputs_digest"],
                }
                for r in rows
            ],
        )

    async def stale_ids(self) -> list[str]:
        """Return the ids of the profiles marked to republish, in id order."""
        table = tables.profile_scores
        result = await self.connection.execute(
            select(table.c.profile_id).where(table.c.republish).order_by(table.c.profile_id)
        )
        return list(result.scalars())

    async def erase(self, profile_ids: Sequence[str]) -> None:
        """Delete the profiles' scores, tier history and unpublished events; keep markers."""
        if not profile_ids:
            return
        conn = self.connection
        ids = list(profile_ids)
        await conn.execute(
            delete(tables.profile_scores).where(tables.profile_scores.c.profile_id.in_(ids))
        )
        await conn.execute(
            delete(tables.tier_history).where(tables.tier_history.c.profile_id.in_(ids))
        )
        # Events about them not yet published go too; the tombstone staged next supersedes
        # whatever the relay had already sent under the same key.
        await unstage_keys(conn, tables.outbox, {pid.encode() for pid in ids})
        now = datetime.now(UTC)
        await conn.execute(
            upsert_insert(conn)(tables.erased_profiles).on_conflict_do_nothing(
                index_elements=["marker"]
            ),
            [{"marker": erasure_marker(self._marker_key, pid), "erased_at": now} for pid in ids],
        )

    @property
    def scores(self) -> SqlScoreStore:
        """Return the scores of this unit of work."""
        if self._scores is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._scores

    @property
    def parameters(self) -> SqlParameterStore:
        """Return the model parameters of this unit of work."""
        if self._parameters is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._parameters

    async def record_tier_changes(self, changes: Sequence[TierTransition]) -> None:
        """Append tier moves to the history; a repeated event id is kept once."""
        if not changes:
            return
        conn = self.connection
        stmt = upsert_insert(conn)(tables.tier_history).on_conflict_do_nothing(
            index_elements=["event_id"]
        )
        await conn.execute(
            stmt,
            [
                {
                    "event_id": c.event_id,
                    "profile_id": c.profile_id,
                    "profile_version": c.profile_version,
                    "from_tier": c.from_tier.value if c.from_tier is not None else None,
                    "to_tier": c.to_tier.value,
                    "move": c.move.value,
                    "occurred_at": c.occurred_at,
                }
                for c in changes
            ],
        )
