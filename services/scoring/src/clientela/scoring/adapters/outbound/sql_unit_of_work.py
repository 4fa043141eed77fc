"""SQL unit of work: inbox, scores, tier history, parameters and outbox in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Text, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from clientela.scoring.adapters.outbound import tables
from clientela.scoring.application.ports import (
    EncodedEvent,
    ScoreRecord,
    StoredScore,
    TierTransition,
)
from clientela.scoring.application.wire import encode
from clientela.scoring.domain.clv import BgNbdParams, GammaGammaParams
from clientela.scoring.domain.facts import CustomerFacts
from clientela.scoring.domain.potential import ProspectFeatures
from clientela.scoring.domain.value_model import FittedParameters
from clientela.shared import tracing
from clientela.shared.codec import (
    HEADER_ACCEPTED_AT,
    HEADER_CONTENT_TYPE,
    HEADER_EVENT_ID,
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    OutgoingRecord,
)
from clientela.shared.contracts import Lifecycle, ScoresUpdated, Tier
from clientela.shared.db import upsert_insert
from clientela.shared.outbox import SqlTransaction, stage
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
)


def as_utc(moment: datetime) -> datetime:
    """Return an aware UTC datetime (SQLite hands timestamps back without a zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stored_score(state: Any, updated_at: datetime) -> StoredScore:
    """Rebuild stored scores from the state and updated_at columns."""
    return StoredScore(scores=ScoresUpdated.model_validate(state), updated_at=as_utc(updated_at))


def record_of(row: Row[Any], state: bytes = b"") -> ScoreRecord:
    """Rebuild a ScoreRecord from a profile_scores row (the state only when given)."""
    facts = (
        CustomerFacts(
            purchase_days=int(row.purchase_days),
            purchase_count=int(row.purchase_count),
            first_purchase_s=float(row.first_purchase_s),
            last_purchase_s=float(row.last_purchase_s),
            total_spend=float(row.total_spend),
            cost_to_serve=float(row.cost_to_serve),
        )
        if row.first_purchase_s is not None
        else None
    )
    return ScoreRecord(
        profile_id=row.profile_id,
        profile_version=int(row.profile_version),
        revision=int(row.revision),
        tier_seq=int(row.tier_seq),
        lifecycle=Lifecycle(row.lifecycle),
        tier=Tier(row.tier),
        predicted_value=float(row.predicted_value),
        at_risk=bool(row.at_risk),
        facts=facts,
        prospect_features=ProspectFeatures.from_json(row.prospect_features)
        if row.prospect_features
        else None,
        updated_at=as_utc(row.updated_at),
        state=state,
    )


def _row(record: ScoreRecord) -> dict[str, Any]:
    f = record.facts
    features = record.prospect_features
    return {
        "profile_id": record.profile_id,
        "profile_version": record.profile_version,
        "revision": record.revision,
        "tier_seq": record.tier_seq,
        "lifecycle": record.lifecycle.value,
        "tier": record.tier.value,
        "predicted_value": record.predicted_value,
        "at_risk": record.at_risk,
        "purchase_days": f.purchase_days if f else 0,
        "purchase_count": f.purchase_count if f else 0,
        "first_purchase_s": f.first_purchase_s if f else None,
        "last_purchase_s": f.last_purchase_s if f else None,
        "total_spend": f.total_spend if f else 0.0,
        "cost_to_serve": f.cost_to_serve if f else 0.0,
        "prospect_features": encode(features.as_json()).decode() if features else None,
        "state": record.state.decode(),
        "updated_at": record.updated_at,
    }


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
            # As text: it is kept as the bytes that were published, not parsed here.
            columns.append(cast(table.c.state, Text).label("state_text"))
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


class SqlScoringUnitOfWork(SqlTransaction):
    """The shared transaction (inbox, outbox, relay wake-up) plus scores and parameters."""

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
        self._scores: SqlScoreStore | None = None
        self._parameters: SqlParameterStore | None = None

    def _opened(self, conn: AsyncConnection) -> None:
        self._scores = SqlScoreStore(conn)
        self._parameters = SqlParameterStore(conn)

    def _closed(self) -> None:
        self._scores = None
        self._parameters = None

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

    async def stage_encoded(self, events: Sequence[EncodedEvent]) -> None:
        """Queue encoded events in the outbox, to be published once this transaction commits."""
        records = [
            OutgoingRecord(
                topic=self._kafka.topic(e.topic),
                key=e.key.encode(),
                value=e.value,
                headers=_headers(e),
            )
            for e in events
        ]
        await stage(self.connection, self._outbox_table, records)
        self._staged += len(records)

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


def _headers(event: EncodedEvent) -> list[tuple[str, bytes]]:
    # The headers shared.codec.event_headers gives an event model, from the encoded event.
    headers = [
        (HEADER_CONTENT_TYPE, b"application/json"),
        (HEADER_TYPE, event.event_type.encode()),
        (HEADER_SCHEMA_VERSION, b"1"),
        (HEADER_EVENT_ID, event.event_id.encode()),
    ]
    if event.accepted_at_ms is not None:
        headers.append((HEADER_ACCEPTED_AT, str(event.accepted_at_ms).encode()))
    trace = tracing.derived(event.causation_id)
    if trace is not None:
        headers += trace.headers()
    return headers
