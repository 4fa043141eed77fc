"""Benchmark: `python -m clientela.scoring.bench [--customers N] [--profiles N] [--output F]`.

Two figures. Streaming: ProfileChanged events re-scored per second by the streaming use case
(batches of 500 with the BG/NBD + Gamma-Gamma model), first on in-memory storage so the
figure is the scoring cost itself, then with the SQL unit of work (SQLite by default,
`--database URL` for PostgreSQL) so it includes the upsert, history and outbox writes;
against a bare baseline: the closed-form model alone on the same batches. Events start as
the bytes on the wire (decoding is timed); CPU per profile is reported for this process and,
on PostgreSQL, for the server backends that served the benchmark's connections. Sweep: the
vectorised re-score of a synthetic population (values, exact cut-offs, tiers with
hysteresis, RFM, risk) with the same functions the service's sweep calls.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import numpy as np
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.scoring.adapters.inbound.profile_wire import decode_profile_change
from clientela.scoring.adapters.outbound import tables
from clientela.scoring.adapters.outbound.sql_unit_of_work import SqlScoringUnitOfWork
from clientela.scoring.application.population import RankingContext
from clientela.scoring.application.ports import (
    LoadedBatch,
    ProfileChangeMessage,
    ScoreRecord,
    ScoringUnitOfWork,
    TierTransition,
    UnpublishedChange,
)
from clientela.scoring.application.scorer import ScoringPolicy, score_customers
from clientela.scoring.application.service import ScoringApplication, ScoringConfig
from clientela.scoring.domain.clv import BgNbdParams, GammaGammaParams
from clientela.scoring.domain.facts import SECONDS_PER_DAY, FactColumns, facts_of
from clientela.scoring.domain.rfm import fit_rfm_edges
from clientela.scoring.domain.tiers import TieringPolicy, compute_cutoffs
from clientela.scoring.domain.value_model import BgNbdGammaGammaModel, FittedParameters
from clientela.shared.benchmarking import BackendCpu
from clientela.shared.codec import EncodedEvent, decode_event, encode_event
from clientela.shared.contracts import (
    Channel,
    ConsentState,
    ConsentStatus,
    Lifecycle,
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    TopicSpec,
)
from clientela.shared.db import create_engine, create_tables, is_postgres
from clientela.shared.settings import DatabaseSettings, KafkaSettings

NOW = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 500
PARAMETERS = FittedParameters(
    version=1,
    bgnbd=BgNbdParams(0.243, 4.414, 0.793, 2.426),
    gamma_gamma=GammaGammaParams(6.25, 3.74, 15.44),
    period_days=7.0,
    fitted_at=NOW,
    as_of=NOW,
    customer_count=0,
    repeat_customer_count=0,
    bgnbd_log_likelihood=0.0,
    gamma_gamma_log_likelihood=0.0,
)


def synthetic_facts(n: int, seed: int = 1) -> FactColumns:
    """Return n customers with CDNOW-like habits: mostly one-off, a few frequent buyers."""
    rng = np.random.default_rng(seed)
    now_s = NOW.timestamp()
    first = now_s - rng.uniform(1, 730, n) * SECONDS_PER_DAY
    days = 1 + rng.negative_binomial(0.3, 0.15, n)
    last = first + (now_s - first) * np.where(days > 1, rng.uniform(0, 1, n), 0.0)
    spend = days * rng.gamma(6.0, 6.0, n)
    return FactColumns(
        purchase_days=days.astype(np.float64),
        purchase_count=days.astype(np.float64),
        first_purchase_s=first,
        last_purchase_s=last,
        total_spend=spend,
        cost_to_serve=rng.gamma(2.0, 5.0, n),
    )


def bench_sweep(n: int) -> dict[str, float]:
    """Time one vectorised sweep over n synthetic customers."""
    facts = synthetic_facts(n)
    model = BgNbdGammaGammaModel(PARAMETERS)
    policy = TieringPolicy()
    previous = np.random.default_rng(2).integers(1, 4, n).astype(np.int8)
    started = time.perf_counter()
    values = model.estimate(facts, NOW).predicted_value
    estimated = time.perf_counter()
    context = RankingContext(
        cutoffs=compute_cutoffs(values, policy),
        rfm_edges=fit_rfm_edges(facts, NOW.timestamp()),
        reference=None,
    )
    scored = score_customers(model, facts, NOW, previous, context, ScoringPolicy())
    changed = int(np.count_nonzero(scored.tiers != previous))
    finished = time.perf_counter()
    return {
        "sweep_customers": n,
        "sweep_s": round(finished - started, 3),
        "sweep_model_s": round(estimated - started, 3),
        "sweep_customers_per_s": round(n / (finished - started)),
        "sweep_tier_changes": changed,
    }


class _MemoryUnitOfWork:
    """Just enough storage for the streaming use case, in dicts (records without state)."""

    def __init__(self) -> None:
        self.rows: dict[str, ScoreRecord] = {}
        self.inbox: set[str] = set()
        self.staged = 0

    @property
    def scores(self) -> Self:
        return self

    @property
    def parameters(self) -> Self:
        return self

    def __call__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def get_many(
        self, profile_ids: Sequence[str], *, with_state: bool = False
    ) -> dict[str, ScoreRecord]:
        return {p: self.rows[p] for p in profile_ids if p in self.rows}

    async def save_many(self, records: Sequence[ScoreRecord]) -> None:
        # Like a database row: the published state is kept as bytes only.
        self.rows.update((r.profile_id, replace(r, state=b"")) for r in records)

    async def all_records(self) -> list[ScoreRecord]:
        return list(self.rows.values())

    async def latest(self) -> FittedParameters | None:
        return PARAMETERS

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        new = set(event_ids) - self.inbox
        self.inbox |= new
        return new

    async def load_batch(self, profile_ids: Sequence[str]) -> LoadedBatch:
        return LoadedBatch(await self.get_many(profile_ids), set())

    async def write_scored(
        self,
        records: Sequence[ScoreRecord],
        transitions: Sequence[TierTransition],
        events: Sequence[EncodedEvent],
        unpublished: Sequence[UnpublishedChange] = (),
    ) -> None:
        await self.store_unpublished(unpublished)
        await self.save_many(records)
        await self.stage_encoded(events)

    async def store_unpublished(self, changes: Sequence[UnpublishedChange]) -> None:
        rows = self.rows
        for change in changes:
            kept = rows.get(change.profile_id)
            stored = change.applied_to(kept) if kept is not None else None
            if stored is not None:
                rows[change.profile_id] = stored

    async def stale_ids(self) -> list[str]:
        return sorted(pid for pid, r in self.rows.items() if r.republish)

    async def erase(self, profile_ids: Sequence[str]) -> None:
        for pid in profile_ids:
            self.rows.pop(pid, None)

    async def stage_tombstones(self, topic: TopicSpec, keys: Sequence[str]) -> None:
        self.staged += len(keys)

    async def record_tier_changes(self, changes: Sequence[TierTransition]) -> None:
        return None

    async def stage_encoded(self, events: Sequence[EncodedEvent]) -> None:
        self.staged += len(events)

    async def commit(self) -> None:
        return None


def synthetic_changes(start: int, stop: int, facts: FactColumns, profiles: int) -> list[bytes]:
    """Return events start..stop from synthetic facts, encoded as on the wire.

    Profile ids recur every `profiles`; each event carries what a real ProfileChanged carries
    (identifier types, consent, traits, channel counts), decoding included in the timing.
    """
    out = []
    for i in range(start, stop):
        first = datetime.fromtimestamp(float(facts.first_purchase_s[i]), UTC)
        last = datetime.fromtimestamp(float(facts.last_purchase_s[i]), UTC)
        days = int(facts.purchase_days[i])
        profile = ProfileChanged(
            profile_id=f"p-{i % profiles}",
            version=1 + i // profiles,
            lifecycle=Lifecycle.CUSTOMER,
            created_at=first - timedelta(days=1),
            aggregates=ProfileAggregates(
                currency="EUR",
                purchase_count=days,
                purchase_days=days,
                first_purchase_at=first,
                last_purchase_at=last,
                total_spend=Decimal(f"{facts.total_spend[i]:.2f}"),
                counts_by_channel={"web": days, "email": 1},
                counts_by_kind={"sale": days, "email_open": 1},
                touchpoint_count=days + 1,
                inbound_count=days,
                outbound_count=1,
                first_seen_at=first - timedelta(days=1),
                last_seen_at=last,
                inbound_channel_preference={"web": 1.0},
            ),
            identifier_types=["customer_id", "email", "phone"],
            reachable_channels=[Channel.EMAIL, Channel.SMS],
            consent={
                Channel.EMAIL: ConsentState(
                    status=ConsentStatus.OPTED_IN, updated_at=first, source="web"
                )
            },
            traits={"country": "NL", "account_type": "consumer"},
        )
        event = ProfileChangedEvent(
            event_id=f"e-{i}", source="profile", correlation_id=f"c-{i}", data=profile
        )
        out.append(encode_event(event))
    return out


# Of every ten profiles in the mixed workload, three never buy (prospects).
_PROSPECTS_PER_TEN = 3
_MIX_VERSIONS = 5


def mixed_changes(start: int, stop: int, facts: FactColumns, profiles: int) -> list[bytes]:
    """Return events start..stop of a pipeline-like mix, encoded as on the wire.

    Each profile changes five times. A customer buys at its first and last change and visits
    the web in between (each visit: one more touchpoint, one cent more cost to serve); a
    prospect only visits. This is what the pipeline sends scoring: most changes are visits.
    """
    out = []
    for i in range(start, stop):
        person = i % profiles
        version = 1 + i // profiles
        buys = person % 10 >= _PROSPECTS_PER_TEN
        base = int(facts.purchase_days[person]) if buys else 0
        days = base + (1 if buys and version == _MIX_VERSIONS else 0)
        spend = float(facts.total_spend[person]) * days / max(base, 1) if buys else 0.0
        first = datetime.fromtimestamp(float(facts.first_purchase_s[person]), UTC)
        last = (
            NOW - timedelta(hours=1)
            if version == _MIX_VERSIONS
            else datetime.fromtimestamp(float(facts.last_purchase_s[person]), UTC)
        )
        touches = days + version
        profile = ProfileChanged(
            profile_id=f"m-{person}",
            version=version,
            lifecycle=Lifecycle.CUSTOMER if buys else Lifecycle.PROSPECT,
            created_at=first - timedelta(days=1),
            aggregates=ProfileAggregates(
                currency="EUR",
                purchase_count=days,
                purchase_days=days,
                first_purchase_at=first if buys else None,
                last_purchase_at=last if buys else None,
                total_spend=Decimal(f"{spend:.2f}"),
                cost_to_serve=Decimal(version) / 100,
                counts_by_channel={"web": touches},
                counts_by_kind={"sale": days, "page_view": version},
                touchpoint_count=touches,
                inbound_count=touches,
                first_seen_at=first - timedelta(days=1),
                last_seen_at=NOW,
            ),
            identifier_types=["customer_id", "email"],
            reachable_channels=[Channel.EMAIL],
            traits={"country": "NL"},
        )
        event = ProfileChangedEvent(
            event_id=f"m-{i}", source="profile", correlation_id=f"c-{i}", data=profile
        )
        out.append(encode_event(event))
    return out


def decode_changes(values: Sequence[bytes]) -> list[ProfileChangeMessage]:
    """Decode records as the service's consumer does (the lean decoder, the contract if not)."""
    out = []
    for value in values:
        change = decode_profile_change(value)
        out.append(
            ProfileChangeMessage(
                change if change is not None else decode_event(ProfileChangedEvent, value)
            )
        )
    return out


class PgWork:
    """Statements sent to PostgreSQL (every one, BEGIN and COMMIT too) and rows it touched."""

    def __init__(self) -> None:
        self.statements = 0
        self.rows_read = 0
        self.rows_written = 0

    def watch(self, engine: AsyncEngine) -> None:
        """Count the statements of every connection the engine opens from now on."""
        event.listen(engine.sync_engine, "connect", self._connected)

    def _connected(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._logged)

    def _logged(self, _query: Any) -> None:
        self.statements += 1

    async def count_rows(self, engine: AsyncEngine, schema: str) -> None:
        """Read the schema's table counters, once the benchmark's backends have flushed them.

        A backend reports its counters at exit at the latest: the pool is closed first, and
        the figures are read until they stop moving.
        """
        await engine.dispose()
        query = text(
            "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0), "
            "coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
            "FROM pg_stat_user_tables WHERE schemaname = :schema"
        )
        seen: tuple[int, int] | None = None
        for _ in range(50):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
                row = (await conn.execute(query, {"schema": schema})).one()
            found = (int(row[0]), int(row[1]))
            if found == seen and found[1] > 0:
                break
            seen = found
            await asyncio.sleep(0.2)
        self.rows_read, self.rows_written = seen or (0, 0)


@asynccontextmanager
async def _store(
    database_url: str | None, backends: BackendCpu, work: PgWork | None = None
) -> AsyncIterator[Callable[[], ScoringUnitOfWork]]:
    """Yield a unit-of-work factory: in memory (None), or SQL on the given URL.

    "sqlite" means a fresh SQLite file; a PostgreSQL URL gets a private schema, dropped after
    (its statements and rows counted into `work` first).
    """
    if database_url is None:
        memory = _MemoryUnitOfWork()
        yield lambda: cast(ScoringUnitOfWork, memory)
        return
    with tempfile.TemporaryDirectory() as tmp:
        schema = f"scoring_bench_{os.getpid()}"
        settings = DatabaseSettings(
            url=None if database_url == "sqlite" else database_url,
            data_dir=Path(tmp),
            schema_name=schema,
        )
        engine = create_engine(settings, tables.SERVICE)
        if is_postgres(engine):
            backends.watch(engine)
        try:
            await create_tables(engine, tables.metadata, tables.SERVICE, settings)
            kafka = KafkaSettings()
            if work is not None and is_postgres(engine):
                await engine.dispose()
                work.watch(engine)
            yield lambda: SqlScoringUnitOfWork(engine, kafka)
            if work is not None and is_postgres(engine):
                await work.count_rows(engine, schema)
        finally:
            if is_postgres(engine):
                async with engine.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await engine.dispose()


async def bench_stream(
    n: int, database_url: str | None = None, *, mixed: bool = False
) -> dict[str, float]:
    """Time the streaming use case and the bare model on the same batches.

    n / 5 profiles change five times each: a fifth of the events are first scores (a tier
    entered, two events), the rest re-score a known profile (or, `mixed`, are mostly visits:
    see `mixed_changes`). Each batch's events are built just before it is scored, outside
    the timing, so the heap holds what the service holds rather than the whole input at once.
    """
    profiles = max(1, n // 5)
    facts = synthetic_facts(n, seed=5)
    changes = mixed_changes if mixed else synthetic_changes
    scored = moves = 0
    latencies = []
    cpu = 0.0
    backends = BackendCpu()
    work = PgWork()
    async with _store(database_url, backends, work) as unit_of_work:
        app = ScoringApplication(ScoringConfig(), unit_of_work, lambda: NOW)
        app.models.install(PARAMETERS)
        # As the service does after loading its population: start-up objects are never garbage.
        gc.collect()
        gc.freeze()
        elapsed = 0.0
        backend_before = backends.seconds()
        for start in range(0, n, BATCH):
            values = changes(start, min(n, start + BATCH), facts, profiles)
            c0, t0 = time.process_time(), time.perf_counter()
            outcome = await app.score_profiles(decode_changes(values), unit_of_work())
            latencies.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
            elapsed += latencies[-1]
            scored += outcome.scored
            moves += outcome.tier_changes
        backend_cpu = backends.seconds() - backend_before
        statements = work.statements
        gc.unfreeze()
    model = app.models.model
    baseline = 0.0
    for start in range(0, n, BATCH):
        batch = decode_changes(changes(start, min(n, start + BATCH), facts, profiles))
        t0 = time.perf_counter()
        columns = FactColumns.of([f for m in batch if (f := facts_of(m.event.data)) is not None])
        model.estimate(columns, NOW)
        baseline += time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    rate = n / elapsed
    base_rate = n / baseline
    return {
        "events_per_s": round(rate),
        "cpu_us_per_profile": round(cpu / n * 1e6, 1),
        "db_cpu_us_per_profile": round(backend_cpu / n * 1e6, 1),
        "db_statements_per_profile": round(statements / n, 4),
        "db_rows_read_per_profile": round(work.rows_read / n, 3),
        "db_rows_written_per_profile": round(work.rows_written / n, 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "batch_size": BATCH,
        "baseline_events_per_s": round(base_rate),
        "ratio": round(rate / base_rate, 3),
        "scores_per_change": round(scored / n, 3),
        "tier_changes_per_change": round(moves / n, 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run both benchmarks, print a table, write one flat JSON object with --output."""
    parser = argparse.ArgumentParser(prog="clientela.scoring.bench", description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000, help="sweep population")
    parser.add_argument("--profiles", type=int, default=50_000, help="streamed events")
    parser.add_argument(
        "--database",
        action="append",
        default=None,
        help="also stream into SQL: 'sqlite' (a temporary file) or a postgresql+asyncpg URL; "
        "repeatable (default: sqlite)",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    figures: dict[str, float | str] = {}
    memory = asyncio.run(bench_stream(args.profiles))
    for key in [k for k in memory if k.startswith("db_")]:
        del memory[key]
    figures.update(memory)
    mix = asyncio.run(bench_stream(args.profiles, mixed=True))
    figures.update(
        {
            "mix_cpu_us_per_change": mix["cpu_us_per_profile"],
            "mix_scores_per_change": mix["scores_per_change"],
            "mix_tier_changes_per_change": mix["tier_changes_per_change"],
        }
    )
    for database in args.database if args.database is not None else ["sqlite"]:
        name = "sqlite" if database == "sqlite" else "postgres"
        sql = asyncio.run(bench_stream(args.profiles, database))
        figures.update(
            {
                f"{name}_events_per_s": sql["events_per_s"],
                f"{name}_cpu_us_per_profile": sql["cpu_us_per_profile"],
                f"{name}_p50_ms": sql["p50_ms"],
                f"{name}_p99_ms": sql["p99_ms"],
                f"{name}_max_ms": sql["max_ms"],
            }
        )
        if name == "postgres":
            figures.update(
                {
                    "postgres_backend_cpu_us_per_profile": sql["db_cpu_us_per_profile"],
                    "postgres_statements_per_profile": sql["db_statements_per_profile"],
                    "postgres_rows_read_per_profile": sql["db_rows_read_per_profile"],
                    "postgres_rows_written_per_profile": sql["db_rows_written_per_profile"],
                }
            )
            mix = asyncio.run(bench_stream(args.profiles, database, mixed=True))
            figures.update(
                {
                    "postgres_mix_cpu_us_per_change": mix["cpu_us_per_profile"],
                    "postgres_mix_backend_cpu_us_per_change": mix["db_cpu_us_per_profile"],
                    "postgres_mix_statements_per_change": mix["db_statements_per_profile"],
                    "postgres_mix_rows_read_per_change": mix["db_rows_read_per_profile"],
                    "postgres_mix_rows_written_per_change": mix["db_rows_written_per_profile"],
                    "postgres_mix_scores_per_change": mix["scores_per_change"],
                }
            )
    figures.update(bench_sweep(args.customers))
    figures["sweep_target_s"] = 5.0
    width = max(len(k) for k in figures)
    print(
        "scoring benchmark: profiles re-scored per second by the streaming use case (in memory, "
        "then with the SQL unit of work), against the bare model; sweep over memory"
    )
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
