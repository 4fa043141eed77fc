"""Benchmark: touchpoints/s applied into PostgreSQL and identifier lookup latency under load.

`python -m clientela.profile.bench --output .bench/bench-profile.json [--touchpoints N]`
generates a population with a realistic identifier mix (customers known by customer id and
email, phone callers, anonymous web visitors who later identify themselves), applies it in
batches through the real use case and SQL unit of work, one consumer process per partition
(`--in-process`: one process for all), while another process looks identifiers up through
the read side and its cache (Redis, kept current by the writers; `--cache-url none`: no
cache); lookup latency is also reported for cache hits and misses apart. CPU per
touchpoint is reported for the consumer processes and for the PostgreSQL backends serving
them. The baseline is the bare insert of the same touchpoints into a table through
the same driver.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.adapters.outbound.profile_cache import (
    CachedProfileReader,
    ProfileCacheWriter,
)
from clientela.profile.adapters.outbound.sql_reader import SqlProfileReader
from clientela.profile.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.profile.application.handle_touchpoints import BatchOutcome, handle_touchpoints
from clientela.profile.application.ports import ProfileCache, ProfileReader, ReceivedTouchpoint
from clientela.profile.application.queries import golden_record_by_identifier
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.migrations import MIGRATIONS
from clientela.profile.wiring import tune_gc
from clientela.shared.benchmarking import BackendCpu
from clientela.shared.cache import Cache, make_cache
from clientela.shared.codec import decode_event
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.db import create_engine
from clientela.shared.migrations import upgrade
from clientela.shared.readers.touchpoint import TOUCHPOINTS, touchpoint_builtins, touchpoint_view
from clientela.shared.settings import CacheSettings, DatabaseSettings, KafkaSettings

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
START = datetime(2024, 1, 1, tzinfo=UTC)

_KINDS: list[tuple[str, str, str, float]] = [
    # kind, channel, direction, share
    ("web_visit", "web", "inbound", 0.42),
    ("email", "email", "outbound", 0.22),
    ("sale", "web", "inbound", 0.10),
    ("phone_call", "phone", "inbound", 0.10),
    ("branch_visit", "branch", "inbound", 0.05),
    ("app_session", "app", "inbound", 0.06),
    ("support_case", "chat", "inbound", 0.05),
]


@dataclass(frozen=True, slots=True)
class Person:
    """One simulated customer and the identifiers upstream systems know them by."""

    customer_id: str | None
    email: str | None
    phone: str | None
    anonymous_id: str
    device_id: str


def _people(count: int, rng: random.Random) -> list[Person]:
    return [
        Person(
            customer_id=f"C{n:08d}" if rng.random() < 0.6 else None,
            email=f"user{n}@mail{n % 97}.example.com" if rng.random() < 0.8 else None,
            phone=f"+3361{n:07d}" if rng.random() < 0.5 else None,
            anonymous_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            device_id=f"dev-{n}",
        )
        for n in range(count)
    ]


def _identifiers(person: Person, kind: str, rng: random.Random) -> dict[str, str]:
    """Return the identifiers a system of this kind would send for the person."""
    ids: dict[str, str] = {}
    if kind in ("web_visit", "app_session"):
        ids["anonymous_id" if kind == "web_visit" else "device_id"] = (
            person.anonymous_id if kind == "web_visit" else person.device_id
        )
        # A visitor logs in now and then: the anonymous id becomes linked to the person.
        if person.email and rng.random() < 0.3:
            ids["email"] = person.email
    elif kind == "phone_call":
        if person.phone:
            ids["phone"] = person.phone
    elif kind == "sale":
        if person.customer_id:
            ids["customer_id"] = person.customer_id
        if person.email:
            ids["email"] = person.email
    elif person.email and kind in ("email", "support_case"):
        ids["email"] = person.email
    elif person.customer_id:
        ids["customer_id"] = person.customer_id
    return ids or {"anonymous_id": person.anonymous_id}


def generate(count: int, people: int, seed: int = 7) -> list[tuple[int, TouchpointRecorded]]:
    """Return (person index, touchpoint) pairs in a random arrival order."""
    rng = random.Random(seed)
    population = _people(people, rng)
    kinds = [k for k, *_ in _KINDS]
    weights = [w for *_, w in _KINDS]
    by_kind = {k: (c, d) for k, c, d, _ in _KINDS}
    found = []
    for _ in range(count):
        index = rng.randrange(people)
        person = population[index]
        kind = rng.choices(kinds, weights)[0]
        channel, direction = by_kind[kind]
        data: dict[str, Any] = {
            "kind": kind,
            "channel": channel,
            "direction": direction,
            "identifiers": _identifiers(person, kind, rng),
        }
        if kind == "sale":
            data["sale"] = {
                "order_id": f"o-{rng.getrandbits(40):x}",
                "amount": f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d}",
                "currency": "EUR",
                "items": [{"sku": "s1", "category": rng.choice(["shoes", "hats", "bags"])}],
            }
        elif kind == "phone_call":
            data["call"] = {"duration_seconds": rng.randint(10, 900), "outcome": "answered"}
        elif kind == "email":
            data["email"] = {"opened": rng.random() < 0.3}
        elif kind == "web_visit":
            data["web_visit"] = {"page_views": rng.randint(1, 12)}
        elif kind == "branch_visit":
            data["branch_visit"] = {"branch_id": f"b{rng.randint(1, 40)}"}
        elif kind == "support_case":
            data["properties"] = {"case_id": f"K{index}", "status": rng.choice(["open", "closed"])}
        if rng.random() < 0.05:
            data["traits"] = {"city": rng.choice(["Lyon", "Paris", "Nice"])}
        event = TouchpointRecorded.model_validate(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "occurred_at": START + timedelta(minutes=rng.randint(0, 500_000)),
                "source": "bench",
                "data": data,
            }
        )
        found.append((index, event))
    return found


def _partition(
    items: Sequence[tuple[int, TouchpointRecorded]], workers: int
) -> list[list[ReceivedTouchpoint]]:
    # Ingest keys by the strongest identifier; by person is the same split for this population.
    # Each touchpoint comes with its record bytes, as the consumer receives it.
    parts: list[list[ReceivedTouchpoint]] = [[] for _ in range(workers)]
    for index, event in items:
        parts[index % workers].append(
            ReceivedTouchpoint(touchpoint_view(event), None, event.model_dump_json().encode())
        )
    return parts


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did, and the database round trips its last attempt took."""

    outcome: BatchOutcome
    round_trips: int


@dataclass(frozen=True, slots=True)
class Consumed:
    """What one consumer applied, when, and the CPU it and its database backends used."""

    started: float
    finished: float
    cpu_s: float
    db_cpu_s: float
    applied: list[Applied]


async def _rows_written(engine: AsyncEngine, schema: str) -> int:
    """Return the rows inserted, updated and deleted so far in the schema's tables.

    PostgreSQL's table statistics: a backend reports its counts at the latest when it exits,
    so the engines that wrote are disposed (and given a moment) before this is read.
    """
    await asyncio.sleep(0.5)
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                "FROM pg_stat_user_tables WHERE schemaname = :schema"
            ),
            {"schema": schema},
        )
    return int(found or 0)


def _cache(url: str | None, prefix: str) -> Cache | None:
    return make_cache(CacheSettings(url=url, key_prefix=prefix)) if url else None


async def _worker(
    engine: AsyncEngine,
    events: Sequence[ReceivedTouchpoint],
    batch: int,
    policy: ProfilePolicy,
    cache: ProfileCache | None,
) -> list[Applied]:
    kafka = KafkaSettings()
    applied = []
    for start in range(0, len(events), batch):
        chunk = list(events[start : start + batch])
        uow = SqlUnitOfWork(engine, kafka)
        outcome = await handle_touchpoints(chunk, uow, policy, cache=cache)
        applied.append(Applied(outcome, uow.round_trips))
    return applied


async def _consume(
    engine: AsyncEngine,
    parts: list[list[ReceivedTouchpoint]],
    batch: int,
    policy: ProfilePolicy,
    cache: ProfileCache | None,
    backends: BackendCpu,
) -> Consumed:
    """Apply the partitions concurrently in this process; measure time and CPU."""
    db_before, cpu_before = backends.seconds(), time.process_time()
    started = time.monotonic()
    results = await asyncio.gather(*(_worker(engine, p, batch, policy, cache) for p in parts))
    finished = time.monotonic()
    return Consumed(
        started,
        finished,
        time.process_time() - cpu_before,
        backends.seconds() - db_before,
        [a for applied in results for a in applied],
    )


def _consumer_process(options: dict[str, Any], index: int, ready: Any, go: Any, out: Any) -> None:
    """Apply one partition of the measured touchpoints when go is set (one per partition)."""

    async def run() -> Consumed:
        items = generate(options["count"], options["people"], seed=options["seed"])
        part = _partition(items[options["warm"] :], options["workers"])[index]
        del items
        settings = DatabaseSettings(url=options["url"], schema_name=options["schema"], pool_size=2)
        engine = create_engine(settings, "profile")
        backends = BackendCpu()
        backends.watch(engine)
        cache = _cache(options["cache_url"], options["cache_prefix"])
        cache_writer = ProfileCacheWriter(cache, ttl_s=300, grace_s=2.0) if cache else None
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            # As the service does once started (the input, like its start-up, is frozen).
            tune_gc()
            ready.set()
            await asyncio.to_thread(go.wait)
            return await _consume(
                engine, [part], options["batch"], ProfilePolicy(), cache_writer, backends
            )
        finally:
            if cache_writer is not None:
                await cache_writer.drain()
            if cache is not None:
                await cache.close()
            await engine.dispose()

    out.send(asyncio.run(run()))
    out.close()


def _decode_us(events: Sequence[TouchpointRecorded]) -> tuple[float, float]:
    """Return what reading a touchpoint record costs the consumer (outside the measure), with
    its reader and with the contract alone."""
    records = [e.model_dump_json().encode() for e in events]
    started = time.perf_counter()
    for record in records:
        TOUCHPOINTS.read(record)
    read = time.perf_counter() - started
    started = time.perf_counter()
    for record in records:
        decode_event(TouchpointRecorded, record)
    contract = time.perf_counter() - started
    count = max(1, len(records))
    return read / count * 1e6, contract / count * 1e6


async def _baseline(
    engine: AsyncEngine, parts: list[list[ReceivedTouchpoint]], batch: int
) -> float:
    """Insert the touchpoints, as they are, into a bare table: the floor of storing them."""
    bare = Table(
        "bench_bare",
        MetaData(),
        Column("event_id", String(128), primary_key=True),
        Column("payload", JSON().with_variant(JSONB(), "postgresql")),
    )
    async with engine.begin() as conn:
        await conn.run_sync(bare.metadata.create_all)

    async def insert(events: Sequence[ReceivedTouchpoint]) -> None:
        for start in range(0, len(events), batch):
            async with engine.begin() as conn:
                await conn.execute(
                    bare.insert(),
                    [
                        {"event_id": r.event.event_id, "payload": touchpoint_builtins(r.event)}
                        for r in events[start : start + batch]
                    ],
                )

    started = time.perf_counter()
    await asyncio.gather(*(insert(part) for part in parts))
    return time.perf_counter() - started


class _CountingReader(SqlProfileReader):
    """The SQL reader, counting the lookups that reached the database."""

    store_reads = 0

    async def by_identifier(self, key: tuple[str, str]) -> Any:
        self.store_reads += 1
        return await super().by_identifier(key)


def _lookup_process(
    options: dict[str, Any], keys: list[tuple[str, str]], ready: Any, stop: Any, out: Any
) -> None:
    """Look identifiers up until stop is set; send back the latencies in ms, the CPU, and
    how many lookups reached the database."""

    async def run() -> tuple[list[float], list[bool], float, int]:
        settings = DatabaseSettings(url=options["url"], schema_name=options["schema"], pool_size=8)
        engine = create_engine(settings, "profile")
        cache = _cache(options["cache_url"], options["cache_prefix"])
        store = _CountingReader(engine)
        reader: ProfileReader = store
        if cache is not None:
            reader = CachedProfileReader(reader, cache, ttl_s=300, grace_s=2.0)
        policy = ProfilePolicy()
        rng = random.Random(3)
        latencies: list[float] = []
        misses: list[bool] = []
        try:
            # Every key looked up once (the cache, if any, is warm as under steady use); only
            # then is the process ready to measure.
            distinct = sorted(set(keys))
            for start in range(0, len(distinct), 8):
                await asyncio.gather(
                    *(
                        golden_record_by_identifier(reader, t, v, datetime.now(UTC), policy)
                        for t, v in distinct[start : start + 8]
                    )
                )
            ready.set()
            reads_before = store.store_reads
            cpu_before = time.process_time()
            while not stop.is_set():
                id_type, value = rng.choice(keys)
                reads = store.store_reads
                started = time.perf_counter()
                await golden_record_by_identifier(reader, id_type, value, datetime.now(UTC), policy)
                latencies.append((time.perf_counter() - started) * 1000)
                misses.append(store.store_reads > reads)
                # About 200 lookups/s: an API under steady use, not a second load generator.
                await asyncio.sleep(0.005)
            cpu = time.process_time() - cpu_before
        finally:
            if cache is not None:
                await cache.close()
            await engine.dispose()
        return latencies, misses, cpu, store.store_reads - reads_before

    out.send(asyncio.run(run()))
    out.close()


def _percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _cache_answers(url: str | None) -> bool:
    cache = _cache(url, "")
    if cache is None:
        return False
    try:
        return await cache.ping()
    finally:
        await cache.close()


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its flat result."""
    schema = f"bench_profile_{uuid.uuid4().hex[:8]}"
    settings = DatabaseSettings(
        url=args.database_url, schema_name=schema, pool_size=args.workers + 2
    )
    engine = create_engine(settings, "profile")
    backends = BackendCpu()
    backends.watch(engine)
    policy = ProfilePolicy()
    cache_url = None if args.cache_url in ("", "none") else args.cache_url
    if cache_url is not None and not await _cache_answers(cache_url):
        print(f"no cache answers at {cache_url}: lookups go to the database")
        cache_url = None
    options = {
        "url": args.database_url,
        "schema": schema,
        "cache_url": cache_url,
        "cache_prefix": f"{schema}:",
        "people": args.people,
        "seed": args.seed,
        "workers": args.workers,
        "batch": args.batch,
    }
    cache = _cache(cache_url, options["cache_prefix"])
    cache_writer = ProfileCacheWriter(cache, ttl_s=300, grace_s=2.0) if cache else None
    ctx = multiprocessing.get_context("spawn")
    try:
        await upgrade(settings, MIGRATIONS, engine=engine)
        print(f"generating {args.touchpoints} touchpoints of {args.people} people ...")
        warm_count = max(args.batch, args.touchpoints // 10)
        options |= {"count": args.touchpoints + warm_count, "warm": warm_count}
        items = generate(args.touchpoints + warm_count, args.people, seed=args.seed)
        warm, timed = items[:warm_count], items[warm_count:]
        # The generated input is not the service's heap: kept out of the collector's sight,
        # it does not make every full collection walk tens of thousands of events.
        gc.collect()
        gc.freeze()
        # Warm-up: the population exists before the measured load, so lookups find people.
        await _consume(engine, _partition(warm, args.workers), args.batch, policy, None, backends)
        # Closed, its backends report what the warm-up wrote before the count starts.
        await engine.dispose()
        rows_before = await _rows_written(engine, schema)
        keys = [
            (id_type, value)
            for _, e in warm[:2000]
            for id_type, value in e.data.identifiers.pairs()
        ]
        parts = _partition(timed, args.workers)
        go = ctx.Event()
        consumers = []
        if not args.in_process:
            for index in range(args.workers):
                receiver, sender = ctx.Pipe(duplex=False)
                ready = ctx.Event()
                process = ctx.Process(
                    target=_consumer_process, args=(options, index, ready, go, sender)
                )
                process.start()
                consumers.append((process, receiver, ready))
            for _, _, ready in consumers:
                if not await asyncio.to_thread(ready.wait, 300):
                    raise RuntimeError("a consumer process did not start")
        lookup_results, lookup_sender = ctx.Pipe(duplex=False)
        lookup_ready, stop = ctx.Event(), ctx.Event()
        lookups = ctx.Process(
            target=_lookup_process, args=(options, keys, lookup_ready, stop, lookup_sender)
        )
        lookups.start()
        if not await asyncio.to_thread(lookup_ready.wait, 120):
            raise RuntimeError("the lookup process did not start")
        if args.in_process:
            consumed = [await _consume(engine, parts, args.batch, policy, cache_writer, backends)]
        else:
            go.set()
            consumed = [await asyncio.to_thread(receiver.recv) for _, receiver, _ in consumers]
            for process, _, _ in consumers:
                process.join()
        load = os.getloadavg()[0]
        await engine.dispose()
        rows_written = await _rows_written(engine, schema) - rows_before
        stop.set()
        latencies, misses, lookup_cpu, store_reads = await asyncio.to_thread(lookup_results.recv)
        lookups.join()
        elapsed = max(c.finished for c in consumed) - min(c.started for c in consumed)
        applied = [a for c in consumed for a in c.applied]
        outcomes = [a.outcome for a in applied]
        baseline_elapsed = await _baseline(engine, parts, args.batch)
        async with engine.connect() as conn:
            profiles = int(
                await conn.scalar(select(func.count()).select_from(tables.profiles)) or 0
            )
    finally:
        if cache_writer is not None:
            await cache_writer.drain()
        if cache is not None:
            await cache.close()
        await engine.dispose()
        cleanup = create_engine(DatabaseSettings(url=args.database_url), "profile")
        async with cleanup.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await cleanup.dispose()
    events_per_s = len(timed) / elapsed
    hit_ms = [ms for ms, miss in zip(latencies, misses, strict=True) if not miss]
    miss_ms = [ms for ms, miss in zip(latencies, misses, strict=True) if miss]
    baseline = len(timed) / baseline_elapsed
    read_us, contract_us = _decode_us([e for _, e in timed[:5000]])
    return {
        "touchpoints": len(timed),
        "people": args.people,
        "profiles": profiles,
        "workers": args.workers,
        "consumer_processes": 1 if args.in_process else args.workers,
        "batch_size": args.batch,
        "duration_s": round(elapsed, 3),
        "events_per_s": round(events_per_s, 1),
        "baseline_events_per_s": round(baseline, 1),
        "ratio": round(events_per_s / baseline, 3),
        "cpu_us_per_event": round(sum(c.cpu_s for c in consumed) / len(timed) * 1e6, 1),
        "postgres_cpu_us_per_event": round(sum(c.db_cpu_s for c in consumed) / len(timed) * 1e6, 1),
        "decode_us_per_event": round(read_us, 1),
        "contract_decode_us_per_event": round(contract_us, 1),
        "postgres_rows_per_event": round(rows_written / len(timed), 3),
        "statements_per_event": round(sum(a.round_trips for a in applied) / len(timed), 4),
        "round_trips_per_batch": round(
            sum(a.round_trips for a in applied) / max(1, len(applied)), 2
        ),
        "round_trips_per_batch_without_merge": round(
            statistics.mean([a.round_trips for a in applied if not a.outcome.merges] or [0]), 2
        ),
        "load_average_1m": round(load, 2),
        "merges": sum(o.merges for o in outcomes),
        "conflicts": sum(o.conflicts for o in outcomes),
        "retried_batches": sum(1 for o in outcomes if o.attempts > 1),
        "lookup_cache": "redis" if cache_url and cache_url.startswith("redis") else "none",
        "lookups": len(latencies),
        "lookup_cpu_us_per_lookup": round(lookup_cpu / max(1, len(latencies)) * 1e6, 1),
        "lookup_cache_hit_ratio": round(1 - store_reads / max(1, len(latencies)), 3),
        "lookup_p50_ms": round(_percentile(latencies, 0.50), 3),
        "lookup_p99_ms": round(_percentile(latencies, 0.99), 3),
        "lookup_max_ms": round(max(latencies, default=float("nan")), 3),
        "lookup_hit_p99_ms": round(_percentile(hit_ms, 0.99), 3),
        "lookup_miss_p99_ms": round(_percentile(miss_ms, 0.99), 3),
        "target_events_per_s": 10_000,
        "target_lookup_p99_ms": 10,
    }


def _table(result: dict[str, Any]) -> str:
    width = max(len(k) for k in result)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in result.items())


def main(argv: Sequence[str] | None = None) -> None:
    """Run the profile benchmark and write its JSON result."""
    parser = argparse.ArgumentParser(prog="clientela.profile.bench", description=__doc__)
    parser.add_argument("--output", type=Path, help="where to write the JSON result")
    parser.add_argument("--touchpoints", type=int, default=60_000, help="measured touchpoints")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="concurrent partitions")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="apply every partition in this process (default: one process per partition)",
    )
    parser.add_argument(
        "--cache-url",
        default=os.environ.get("CLIENTELA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="lookup cache shared by the writers and the lookup process ('none': no cache)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CLIENTELA_TEST_POSTGRES_URL", DEFAULT_URL),
        help="PostgreSQL URL (a private schema is created and dropped)",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run_bench(args))
    print(_table(result))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
