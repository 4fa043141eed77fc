"""Benchmark: CPU per consumed record of the campaign consumer, on a realistic mix of topics.

A synthetic population is loaded (a profile and its scores per person), then a steady stream
arrives as the subscriber receives it: per touchpoint, the `TouchpointRecorded` itself, the
`ProfileChanged` it causes, the `ScoresUpdated` of the re-scored profile and, for some, a
`TierChanged`; a few touchpoints answer a campaign message. Records are handed, as raw Kafka
records in consumer-sized batches, to the same callable the subscriber calls: decoding,
filtering, the use case and the store (inbox, state, outbox, contact ledger). The main figure
is the CPU time of this process per touchpoint-equivalent (the four records one touchpoint
causes), with the CPU of the PostgreSQL backends and Redis beside it when they run locally.
The baseline is the bare transactional consumer on the same store (inbox claim plus outbox
staging of one record per event, no decision).

    python -m clientela.campaign.bench --output .bench/bench-campaign.json
    python -m clientela.campaign.bench --profiles 20000 --touchpoints 20000 \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        --cache-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

import psutil
from aiokafka import ConsumerRecord
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.responses import referenced_message
from clientela.campaign.migrations import MIGRATIONS
from clientela.campaign.wiring import Container, batch_consumer, build
from clientela.shared.codec import HEADER_REFERS_TO_MESSAGE, OutgoingEvent, to_record
from clientela.shared.contracts import (
    Agent,
    BranchVisitDetails,
    Channel,
    ConsentState,
    ConsentStatus,
    Direction,
    EmailDetails,
    Envelope,
    Identifiers,
    Lifecycle,
    LineItem,
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    SaleDetails,
    ScoresUpdated,
    ScoresUpdatedEvent,
    Segment,
    Tier,
    TierChanged,
    TierChangedEvent,
    TierMove,
    Touchpoint,
    TouchpointKind,
    TouchpointRecorded,
    WebVisitDetails,
)
from clientela.shared.contracts.topics import (
    CAMPAIGN_MESSAGES,
    PROFILES,
    SCORES,
    TIER_CHANGES,
    TOUCHPOINTS,
    TopicSpec,
)
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.migrations import upgrade
from clientela.shared.settings import CacheSettings, DatabaseSettings, KafkaSettings

NOW = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
REACH = [Channel.EMAIL, Channel.SMS, Channel.PHONE, Channel.BRANCH]
ZONES = ["Europe/Madrid", "Europe/London", "America/New_York", "UTC"]
USED = [Channel.WEB, Channel.EMAIL, Channel.PHONE, Channel.BRANCH, Channel.APP]
CATEGORIES = ["shoes", "bags", "outerwear", "knitwear", "accessories", "home"]
TIER_VALUE = {Tier.A: 4000.0, Tier.B: 900.0, Tier.C: 150.0, Tier.P: 0.0}
Record: TypeAlias = ConsumerRecord[bytes | None, bytes | None]
Header: TypeAlias = tuple[str, bytes]


@dataclass
class Person:
    """One synthetic person and what the profile and scoring services know of them."""

    pid: str
    prospect: bool
    tier: Tier
    value: float
    reach: list[Channel]
    consent: dict[Channel, ConsentState]
    traits: dict[str, str | int | float | bool | None]
    segment: Segment | None
    potential: float = 0.0
    version: int = 0
    touchpoints: int = 0
    purchases: int = 0
    spend: Decimal = Decimal(0)
    last_purchase_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    by_channel: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)


class Stream:
    """Generates the records the campaign consumer receives, deterministic by seed."""

    def __init__(self, people: int, seed: int, topic_prefix: str, span_days: float) -> None:
        self._rng = random.Random(seed)
        self._prefix = topic_prefix
        self._offsets: dict[str, int] = {}
        self._span = timedelta(days=span_days)
        self.people = [self._person(n) for n in range(people)]
        self.message_ids: list[str] = []
        self.marked = True

    def _person(self, n: int) -> Person:
        rng = self._rng
        prospect = rng.random() < 0.15
        tier = Tier.P if prospect else rng.choices([Tier.A, Tier.B, Tier.C], [0.2, 0.3, 0.5])[0]
        reach = rng.sample(REACH, rng.randint(1, 4))
        consent = {
            ch: ConsentState(
                status=ConsentStatus.OPTED_IN if rng.random() < 0.8 else ConsentStatus.OPTED_OUT,
                updated_at=datetime(2024, 1, 1, tzinfo=UTC),
                source="bench",
            )
            for ch in reach
            if prospect or rng.random() < 0.3
        }
        return Person(
            pid=f"bench-{n}",
            prospect=prospect,
            tier=tier,
            value=TIER_VALUE[tier] * rng.uniform(0.5, 1.5),
            reach=reach,
            consent=consent,
            traits={
                "timezone": rng.choice(ZONES),
                "first_name": f"Given{n}",
                "last_name": f"Family{n}",
                "value_driver": rng.choice(["price", "service"]),
            },
            segment=None if prospect else rng.choice(list(Segment)),
            potential=rng.random() * 0.8,
        )

    def _record(self, spec: TopicSpec, key: str, event: Envelope, *extra: Header) -> Record:
        out = to_record(self._prefix + spec.name, key, event, 1)
        offset = self._offsets.get(out.topic, 0)
        self._offsets[out.topic] = offset + 1
        return ConsumerRecord(
            out.topic, 0, offset, 0, 0, out.key, out.value, None,
            len(out.key or b""), len(out.value or b""), [*out.headers, *extra],
        )  # fmt: skip

    def _profile(self, p: Person, at: datetime) -> Record:
        p.version += 1
        data = ProfileChanged(
            profile_id=p.pid,
            version=p.version,
            lifecycle=Lifecycle.PROSPECT if p.purchases == 0 else Lifecycle.CUSTOMER,
            created_at=NOW - timedelta(days=400),
            identifier_types=["customer_id", "email"],
            reachable_channels=p.reach,
            consent=p.consent,
            traits=p.traits,
            aggregates=ProfileAggregates(
                first_seen_at=p.first_seen_at,
                last_seen_at=p.last_seen_at,
                touchpoint_count=p.touchpoints,
                counts_by_kind=dict(p.by_kind),
                counts_by_channel=dict(p.by_channel),
                inbound_count=p.touchpoints,
                purchase_count=p.purchases,
                purchase_days=p.purchases,
                last_purchase_at=p.last_purchase_at,
                currency="EUR",
                total_spend=p.spend,
                average_order_value=(
                    (p.spend / p.purchases).quantize(Decimal("0.01")) if p.purchases else Decimal(0)
                ),
                purchase_categories=dict(p.categories),
            ),
        )
        return self._record(PROFILES, p.pid, ProfileChangedEvent(source="bench", data=data))

    def _scores(self, p: Person) -> Record:
        data = ScoresUpdated(
            profile_id=p.pid,
            profile_version=max(p.version, 1),
            model_version="bench",
            lifecycle=Lifecycle.PROSPECT if p.purchases == 0 else Lifecycle.CUSTOMER,
            tier=p.tier,
            predicted_value=round(p.value, 2),
            segment=p.segment,
            potential=round(p.potential, 3) if p.prospect else None,
            probability_alive=0.9,
        )
        return self._record(SCORES, p.pid, ScoresUpdatedEvent(source="bench", data=data))

    def _tier_change(self, p: Person, move: TierMove, from_tier: Tier | None) -> Record:
        data = TierChanged(
            profile_id=p.pid,
            profile_version=max(p.version, 1),
            from_tier=from_tier,
            to_tier=p.tier,
            move=move,
            lifecycle=Lifecycle.PROSPECT if p.prospect else Lifecycle.CUSTOMER,
            predicted_value=p.value,
            model_version="bench",
        )
        return self._record(TIER_CHANGES, p.pid, TierChangedEvent(source="bench", data=data))

    def load(self) -> list[Record]:
        """Return each person's first profile, scores and tier entry (the warm-up)."""
        records: list[Record] = []
        for p in self.people:
            if not p.prospect:
                p.purchases, p.spend = 1, Decimal("50.00")
                p.last_purchase_at = NOW - timedelta(days=60)
            p.first_seen_at = p.last_seen_at = NOW - timedelta(days=60)
            records += [
                self._profile(p, NOW),
                self._scores(p),
                self._tier_change(p, TierMove.ENTERED, None),
            ]
        return records

    def _pick(self) -> Person:
        # Activity is skewed: a few people are seen far more often than the long tail.
        index = int(len(self.people) * self._rng.random() ** 1.8)
        return self.people[min(index, len(self.people) - 1)]

    def _newcomer(self) -> Person:
        # Someone first seen now: a prospect in P until they buy, who enters their tier on
        # their first scores (as people arriving through ingest do).
        p = self._person(len(self.people))
        p.prospect, p.tier, p.segment = True, Tier.P, None
        p.value = 0.0
        self.people.append(p)
        return p

    def steady(
        self, touchpoints: int, response_share: float, new_share: float = 0.0
    ) -> list[Record]:
        """Return the records of `touchpoints` touchpoints and what each one causes.

        A `new_share` of touchpoints come from people never seen before.
        """
        rng = self._rng
        records: list[Record] = []
        step = self._span / max(touchpoints, 1)
        for n in range(touchpoints):
            # Drawn only when asked for: the default stream stays the one measured before.
            first = new_share > 0 and rng.random() < new_share
            p = self._newcomer() if first else self._pick()
            at = NOW + step * n
            touchpoint, bought = self._touchpoint(p, at, n, response_share)
            # Marked as ingest marks it, unless the stream stands for older, unmarked records.
            names = referenced_message(touchpoint.data) is not None
            mark = [(HEADER_REFERS_TO_MESSAGE, b"1" if names else b"0")] if self.marked else []
            records.append(self._record(TOUCHPOINTS, p.pid, touchpoint, *mark))
            p.touchpoints += 1
            p.first_seen_at = p.first_seen_at or at
            p.last_seen_at = at
            channel = touchpoint.data.channel.value
            p.by_channel[channel] = p.by_channel.get(channel, 0) + 1
            kind = touchpoint.data.kind.value
            p.by_kind[kind] = p.by_kind.get(kind, 0) + 1
            if bought is not None:
                p.purchases += 1
                p.spend += bought
                p.last_purchase_at = at
                if p.prospect:
                    p.prospect, p.segment = False, rng.choice(list(Segment))
                    if first:
                        p.tier, p.value = Tier.C, TIER_VALUE[Tier.C]
            if rng.random() < 0.005:
                ch = rng.choice(p.reach)
                p.consent[ch] = ConsentState(
                    status=ConsentStatus.OPTED_OUT, updated_at=at, source="bench"
                )
            records.append(self._profile(p, at))
            # A touchpoint without a sale moves the prediction a little, a sale more.
            p.value *= rng.uniform(0.99, 1.02) if bought is None else 1.15
            p.potential = min(1.0, max(0.0, p.potential + rng.uniform(-0.02, 0.03)))
            move = (TierMove.ENTERED, None) if first else self._move(p)
            records.append(self._scores(p))
            if move is not None:
                records.append(self._tier_change(p, *move))
        return records

    def _move(self, p: Person) -> tuple[TierMove, Tier | None] | None:
        if p.prospect or self._rng.random() > 0.12:
            return None
        order = [Tier.C, Tier.B, Tier.A]
        old = p.tier if p.tier in order else None
        if old is None:
            p.tier = Tier.C
            return TierMove.ENTERED, None
        up = self._rng.random() < 0.5
        i = order.index(old) + (1 if up else -1)
        if not 0 <= i < len(order):
            return None
        p.tier = order[i]
        p.value = TIER_VALUE[p.tier] * self._rng.uniform(0.6, 1.4)
        return (TierMove.UP if up else TierMove.DOWN), old

    def _touchpoint(
        self, p: Person, at: datetime, n: int, response_share: float
    ) -> tuple[TouchpointRecorded, Decimal | None]:
        rng = self._rng
        ids = Identifiers(customer_id=f"C-{p.pid}", email=f"{p.pid}@people.example")
        reply = rng.random() < response_share
        message = (
            rng.choice(self.message_ids)
            if reply and self.message_ids and rng.random() < 0.5
            else (str(uuid.UUID(int=rng.getrandbits(128))) if reply else None)
        )
        channel = rng.choice(USED)
        if rng.random() < 0.12:
            amount = Decimal(str(round(rng.uniform(20, 400), 2)))
            category = rng.choice(CATEGORIES)
            p.categories[category] = p.categories.get(category, 0) + 1
            data = Touchpoint(
                kind=TouchpointKind.SALE,
                channel=Channel.BRANCH if channel is Channel.BRANCH else Channel.WEB,
                direction=Direction.INBOUND,
                identifiers=ids,
                sale=SaleDetails(
                    order_id=f"O-{n}",
                    amount=amount,
                    currency="EUR",
                    items=[LineItem(sku=f"SKU-{category}-{n % 50}", category=category)],
                ),
                properties={"campaign_message_id": message} if message else {},
            )
            return TouchpointRecorded(source="bench", occurred_at=at, data=data), amount
        if channel is Channel.EMAIL:
            data = Touchpoint(
                kind=TouchpointKind.EMAIL,
                channel=channel,
                direction=Direction.OUTBOUND,
                identifiers=ids,
                email=EmailDetails(
                    opened=rng.random() < 0.4,
                    clicked=reply or rng.random() < 0.1,
                    campaign_message_id=message,
                ),
            )
        elif channel is Channel.BRANCH:
            data = Touchpoint(
                kind=TouchpointKind.BRANCH_VISIT,
                channel=channel,
                direction=Direction.INBOUND,
                identifiers=ids,
                agent=Agent(agent_id=f"rep-{n % 25}", role="sales_rep"),
                branch_visit=BranchVisitDetails(branch_id=f"B{n % 12:02d}"),
                properties={"campaign_message_id": message} if message else {},
            )
        else:
            data = Touchpoint(
                kind=TouchpointKind.WEB_VISIT if channel is Channel.WEB else TouchpointKind.CHAT,
                channel=channel,
                direction=Direction.INBOUND,
                identifiers=ids,
                web_visit=(
                    WebVisitDetails(page_views=1 + n % 7) if channel is Channel.WEB else None
                ),
                properties={"campaign_message_id": message} if message else {},
            )
        return TouchpointRecorded(source="bench", occurred_at=at, data=data), None


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _server_cpu_s() -> dict[str, float]:
    """Return the CPU seconds of local PostgreSQL backends and Redis."""
    totals = {"postgres": 0.0, "redis": 0.0}
    for process in psutil.process_iter(["name"]):
        name = (process.info.get("name") or "").lower()
        group = "postgres" if name.startswith("postgres") else "redis" if "redis" in name else None
        if group is not None:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                # A backend that exits hands its CPU time to the postmaster's children times.
                totals[group] += (
                    times.user + times.system + times.children_user + times.children_system
                )
    return totals


async def _own_backends(container: Container) -> set[int]:
    """Return the PostgreSQL backend pids serving this process's connections."""
    from sqlalchemy import text

    url = container.engine.url
    port = url.port or 5432
    mine = {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    }
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL")
        )
        return {int(pid) for pid, client_port in rows if client_port in mine}


def _backend_cpu_s(pids: set[int]) -> dict[int, float]:
    """Return the CPU seconds of these processes (those still running)."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            out[pid] = times.user + times.system
    return out


@dataclass
class StatementCount:
    """Statements sent to the database, transaction control apart."""

    statements: int = 0
    transaction_control: int = 0
    by_text: Counter[str] = field(default_factory=Counter)

    def saw(self, sql: str) -> None:
        """Count one statement."""
        if sql.lstrip()[:8].upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOIN")):
            self.transaction_control += 1
        else:
            self.statements += 1
            self.by_text[" ".join(sql.split())[:100]] += 1


@contextlib.contextmanager
def _counting_statements(engine: AsyncEngine) -> Iterator[StatementCount]:
    """Count what SQLAlchemy executes and what the service sends through asyncpg directly."""
    import asyncpg

    count = StatementCount()

    def on_execute(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        count.saw(statement)

    originals = {
        name: getattr(asyncpg.Connection, name) for name in ("execute", "fetch", "fetchrow")
    }

    def counted(name: str) -> Any:
        original = originals[name]

        async def call(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            count.saw(query)
            return await original(self, query, *args, **kwargs)

        return call

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    for name in originals:
        setattr(asyncpg.Connection, name, counted(name))
    try:
        yield count
    finally:
        for name, original in originals.items():
            setattr(asyncpg.Connection, name, original)
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


async def _rows_written(container: Container, schema: str | None) -> dict[str, int]:
    """Return rows inserted, updated and deleted so far per table of the schema (PostgreSQL)."""
    if schema is None:
        return {}
    from sqlalchemy import text

    # A backend reports its counts when it ends: close the pool's connections first.
    await container.engine.dispose()
    await asyncio.sleep(0.5)
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                "WHERE schemaname = :schema"
            ),
            {"schema": schema},
        )
        return {name: int(n) for name, n in rows}


async def _baseline(container: Container, events: Sequence[Envelope], batch: int) -> float:
    """Return events/s of the bare transactional consumer: inbox claim + one outbox record."""
    started = time.perf_counter()
    for chunk in _chunks(events, batch):
        async with container.unit_of_work() as uow:
            await uow.claim_new([f"base-{e.event_id}" for e in chunk])
            await uow.stage([OutgoingEvent(CAMPAIGN_MESSAGES, "k", e, 1) for e in chunk])
            await uow.commit()
    return len(events) / (time.perf_counter() - started)


async def _sent_ids(container: Container, limit: int) -> list[str]:
    from sqlalchemy import select

    t = container.tables.decisions
    async with container.engine.connect() as conn:
        rows = await conn.execute(select(t.c.decision_id).where(t.c.outcome == "sent").limit(limit))
        return [row.decision_id for row in rows]


async def _count(container: Container, table: str) -> int:
    from sqlalchemy import func, select

    t = getattr(container.tables, table)
    async with container.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(t)) or 0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        database = DatabaseSettings(
            url=args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'campaign.db'}",
            schema_name=f"bench_campaign_{uuid.uuid4().hex[:8]}" if args.database_url else None,
            # The database is local: a ping per checkout would only add round trips.
            pool_pre_ping=False,
        )
        settings = CampaignSettings(
            database=database,
            kafka=KafkaSettings(topic_prefix="bench."),
            cache=CacheSettings(
                url=args.cache_url or "memory://", key_prefix=f"bench{uuid.uuid4().hex[:6]}:"
            ),
        )
        stream = Stream(args.profiles, args.seed, "bench.", args.span_days)
        warm_up = stream.load()
        if args.database_url:
            await upgrade(database, MIGRATIONS)
        async with build(
            settings, catalog=load_catalog(), clock=lambda: NOW, consume=False
        ) as container:
            # Never started: it would publish dead letters only, and the stream has none.
            consume = batch_consumer(container, KafkaPublisher(settings.kafka))
            load_started = time.perf_counter()
            for chunk in _chunks(warm_up, args.batch):
                await consume(chunk)
            load_s = time.perf_counter() - load_started
            stream.message_ids = await _sent_ids(container, 5000)
            stream.marked = not args.unmarked_touchpoints
            records = stream.steady(args.touchpoints, args.response_share, args.new_share)
            by_topic: dict[str, int] = {}
            for r in records:
                by_topic[r.topic] = by_topic.get(r.topic, 0) + 1
            decisions_before = await _count(container, "decisions")

            latencies: list[float] = []
            # The generated stream stands for the broker's data: keep the collector from
            # walking it again and again, which the service would never do.
            gc.collect()
            gc.freeze()
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            schema = database.resolved_schema("campaign") if args.database_url else None
            written_before = await _rows_written(container, schema)
            # This process's own backends: other clients of the server do not count here.
            own_before = _backend_cpu_s(await _own_backends(container)) if schema else {}
            servers_before = _server_cpu_s()
            with _counting_statements(container.engine) as sent:
                cpu_before = time.process_time()
                started = time.perf_counter()
                for chunk in _chunks(records, args.batch):
                    t0 = time.perf_counter()
                    await consume(chunk)
                    latencies.append((time.perf_counter() - t0) * 1000)
                elapsed = time.perf_counter() - started
                cpu_s = time.process_time() - cpu_before
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            servers = {k: v - servers_before[k] for k, v in _server_cpu_s().items()}
            own_after = _backend_cpu_s(await _own_backends(container)) if schema else {}
            own_pg = sum(v - own_before.get(pid, 0.0) for pid, v in own_after.items())
            written = {
                k: v - written_before.get(k, 0)
                for k, v in (await _rows_written(container, schema)).items()
            }
            if args.statements:
                print("rows written per table:", dict(sorted(written.items())))
            if args.statements:
                for text, n in sent.by_text.most_common():
                    print(f"{n / max(len(latencies), 1):6.2f} per batch  {text}")
            decisions = await _count(container, "decisions") - decisions_before
            envelopes = [e for e in (_first(r) for r in records[:5000]) if e is not None]
            baseline = await _baseline(container, envelopes, args.batch)
            if args.database_url:
                from clientela.shared.testing import drop_schema

                await container.engine.dispose()
                await drop_schema(args.database_url, database.resolved_schema("campaign"))
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    n_records, n_touch = len(records), args.touchpoints
    pg, rd = servers["postgres"], servers["redis"]
    return {
        "backend_database": "postgresql" if args.database_url else "sqlite",
        "backend_cache": "redis" if args.cache_url else "memory",
        "profiles": args.profiles,
        "touchpoints": n_touch,
        "batch_size": args.batch,
        "span_days": args.span_days,
        "records": n_records,
        "records_touchpoints": by_topic.get("bench." + TOUCHPOINTS.name, 0),
        "records_profiles": by_topic.get("bench." + PROFILES.name, 0),
        "records_scores": by_topic.get("bench." + SCORES.name, 0),
        "records_tier_changes": by_topic.get("bench." + TIER_CHANGES.name, 0),
        "touchpoints_marked": stream.marked,
        "new_share": args.new_share,
        "batches": len(latencies),
        "statements_per_batch": round(sent.statements / max(len(latencies), 1), 1),
        "pg_rows_written_per_batch": round(sum(written.values()) / max(len(latencies), 1), 1),
        "pg_rows_written_per_touchpoint": round(sum(written.values()) / n_touch, 3),
        "records_skipped_undecoded": sum(
            (HEADER_REFERS_TO_MESSAGE, b"0") in (r.headers or ()) for r in records
        ),
        "campaign_cpu_us_per_touchpoint": round(cpu_s / n_touch * 1e6, 1),
        "campaign_cpu_us_per_record": round(cpu_s / n_records * 1e6, 1),
        "postgres_cpu_us_per_touchpoint": round(pg / n_touch * 1e6, 1) if args.database_url else 0,
        "postgres_own_cpu_us_per_touchpoint": round(own_pg / n_touch * 1e6, 1),
        "postgres_own_cpu_us_per_record": round(own_pg / n_records * 1e6, 1),
        "statements_per_touchpoint": round(sent.statements / n_touch, 4),
        "redis_cpu_us_per_touchpoint": round(rd / n_touch * 1e6, 1) if args.cache_url else 0,
        "records_per_s": round(n_records / elapsed, 1),
        "touchpoints_per_s": round(n_touch / elapsed, 1),
        "decisions": decisions,
        "decisions_per_s": round(decisions / elapsed, 1),
        "batch_p50_ms": round(quantiles[49], 2),
        "batch_p99_ms": round(quantiles[98], 2),
        "load_records_per_s": round(len(warm_up) / load_s, 1),
        "baseline_events_per_s": round(baseline, 1),
        "ratio_records_to_baseline": round(n_records / elapsed / baseline, 3),
        "elapsed_s": round(elapsed, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _first(record: Record) -> Envelope | None:
    if record.value is None:
        return None
    return (
        TouchpointRecorded.model_validate_json(record.value)
        if b"touchpoint" in (record.topic.encode())
        else None
    )


def _print(figures: dict[str, Any]) -> None:
    width = max(len(k) for k in figures)
    print("campaign consumer benchmark")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(prog="clientela.campaign.bench", description=__doc__)
    parser.add_argument("--output", type=Path, help="write the figures as one JSON object here")
    parser.add_argument("--profiles", type=int, default=10_000, help="people in the population")
    parser.add_argument("--touchpoints", type=int, default=20_000, help="touchpoints streamed")
    parser.add_argument(
        "--batch",
        type=int,
        default=CampaignSettings.model_fields["max_poll_records"].default,
        help="records per consumed batch (default: the service's CAMPAIGN_MAX_POLL_RECORDS)",
    )
    parser.add_argument("--span-days", type=float, default=7.0, help="event time the stream spans")
    parser.add_argument(
        "--response-share", type=float, default=0.02, help="touchpoints answering a message"
    )
    parser.add_argument(
        "--new-share",
        type=float,
        default=0.0,
        help="touchpoints from people never seen before (each enters a tier on first scores)",
    )
    parser.add_argument(
        "--unmarked-touchpoints",
        action="store_true",
        help="touchpoints without the header that says whether they name a message",
    )
    parser.add_argument(
        "--statements", action="store_true", help="print the statements run, most frequent first"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the stream here")
    parser.add_argument("--database-url", help="SQLAlchemy async URL; default a SQLite file")
    parser.add_argument("--cache-url", help="redis://... for the Redis ledger; default memory")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    _print(figures)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
