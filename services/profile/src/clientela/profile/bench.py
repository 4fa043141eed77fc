"""Benchmark: touchpoints/s applied into PostgreSQL and identifier lookup latency under load.

`python -m clientela.profile.bench --output .bench/bench-profile.json [--touchpoints N]`
generates a population with a realistic identifier mix (customers known by customer id and
email, phone callers, anonymous web visitors who later identify themselves), applies it in
batches through the real use case and SQL unit of work from several concurrent workers (one
per partition), while another process looks identifiers up through the read side. The
baseline is the bare insert of the same touchpoints into a table through the same driver.
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
from clientela.profile.adapters.outbound.sql_reader import SqlProfileReader
from clientela.profile.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.profile.application.handle_touchpoints import BatchOutcome, handle_touchpoints
from clientela.profile.application.ports import ReceivedTouchpoint
from clientela.profile.application.queries import golden_record_by_identifier
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.migrations import MIGRATIONS
from clientela.shared.codec import decode_event
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.db import create_engine
from clientela.shared.migrations import upgrade
from clientela.shared.settings import DatabaseSettings, KafkaSettings

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
) -> list[list[TouchpointRecorded]]:
    # Ingest keys by the strongest identifier; by person is the same split for this population.
    parts: list[list[TouchpointRecorded]] = [[] for _ in range(workers)]
    for index, event in items:
        parts[index % workers].append(event)
    return parts


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did, and the database round trips its last attempt took."""

    outcome: BatchOutcome
    round_trips: int


async def _worker(
    engine: AsyncEngine, events: Sequence[TouchpointRecorded], batch: int, policy: ProfilePolicy
) -> list[Applied]:
    kafka = KafkaSettings()
    applied = []
    for start in range(0, len(events), batch):
        chunk = [ReceivedTouchpoint(e) for e in events[start : start + batch]]
        uow = SqlUnitOfWork(engine, kafka)
        outcome = await handle_touchpoints(chunk, uow, policy)
        applied.append(Applied(outcome, uow.round_trips))
    return applied


async def _apply_all(
    engine: AsyncEngine, parts: list[list[TouchpointRecorded]], batch: int, policy: ProfilePolicy
) -> tuple[float, list[Applied]]:
    started = time.perf_counter()
    results = await asyncio.gather(*(_worker(engine, part, batch, policy) for part in parts))
    return time.perf_counter() - started, [a for applied in results for a in applied]


def _decode_us(events: Sequence[TouchpointRecorded]) -> float:
    """Return what decoding a touchpoint record costs the consumer (outside the measure)."""
    records = [e.model_dump_json().encode() for e in events]
    started = time.perf_counter()
    for record in records:
        decode_event(TouchpointRecorded, record)
    return (time.perf_counter() - started) / max(1, len(records)) * 1e6


async def _baseline(
    engine: AsyncEngine, parts: list[list[TouchpointRecorded]], batch: int
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

    async def insert(events: Sequence[TouchpointRecorded]) -> None:
        for start in range(0, len(events), batch):
            async with engine.begin() as conn:
                await conn.execute(
                    bare.insert(),
                    [
                        {"event_id": e.event_id, "payload": e.model_dump(mode="json")}
                        for e in events[start : start + batch]
                    ],
                )

    started = time.perf_counter()
    await asyncio.gather(*(insert(part) for part in parts))
    return time.perf_counter() - started


def _lookup_process(
    url: str, schema: str, keys: list[tuple[str, str]], ready: Any, stop: Any, out: Any
) -> None:
    """Look identifiers up until stop is set; send the latencies in ms back."""

    async def run() -> list[float]:
        settings = DatabaseSettings(url=url, schema_name=schema, pool_size=2)
        engine = create_engine(settings, "profile")
        reader = SqlProfileReader(engine)
        policy = ProfilePolicy()
        rng = random.Random(3)
        latencies: list[float] = []
        try:
            # One lookup connects the pool; only then is the process ready to measure.
            await golden_record_by_identifier(reader, *keys[0], datetime.now(UTC), policy)
            ready.set()
            while not stop.is_set():
                id_type, value = rng.choice(keys)
                started = time.perf_counter()
                await golden_record_by_identifier(reader, id_type, value, datetime.now(UTC), policy)
                latencies.append((time.perf_counter() - started) * 1000)
                # About 200 lookups/s: an API under steady use, not a second load generator.
                await asyncio.sleep(0.005)
        finally:
            await engine.dispose()
        return latencies

    out.send(asyncio.run(run()))
    out.close()


def _percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its flat result."""
    schema = f"bench_profile_{uuid.uuid4().hex[:8]}"
    settings = DatabaseSettings(
        url=args.database_url, schema_name=schema, pool_size=args.workers + 2
    )
    engine = create_engine(settings, "profile")
    policy = ProfilePolicy()
    try:
        await upgrade(settings, MIGRATIONS, engine=engine)
        print(f"generating {args.touchpoints} touchpoints of {args.people} people ...")
        warm_count = max(args.batch, args.touchpoints // 10)
        items = generate(args.touchpoints + warm_count, args.people, seed=args.seed)
        warm, timed = items[:warm_count], items[warm_count:]
        # The generated input is not the service's heap: kept out of the collector's sight,
        # it does not make every full collection walk tens of thousands of events.
        gc.collect()
        gc.freeze()
        # Warm-up: the population exists before the measured load, so lookups find people.
        await _apply_all(engine, _partition(warm, args.workers), args.batch, policy)
        keys = [
            (id_type, value)
            for _, e in warm[:2000]
            for id_type, value in e.data.identifiers.pairs()
        ]
        parts = _partition(timed, args.workers)
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        ready, stop = ctx.Event(), ctx.Event()
        lookups = ctx.Process(
            target=_lookup_process, args=(args.database_url, schema, keys, ready, stop, sender)
        )
        lookups.start()
        if not await asyncio.to_thread(ready.wait, 120):
            raise RuntimeError("the lookup process did not start")
        cpu_before = time.process_time()
        elapsed, applied = await _apply_all(engine, parts, args.batch, policy)
        cpu = time.process_time() - cpu_before
        outcomes = [a.outcome for a in applied]
        stop.set()
        latencies: list[float] = receiver.recv()
        lookups.join()
        baseline_elapsed = await _baseline(engine, parts, args.batch)
        async with engine.connect() as conn:
            profiles = int(
                await conn.scalar(select(func.count()).select_from(tables.profiles)) or 0
            )
    finally:
        await engine.dispose()
        cleanup = create_engine(DatabaseSettings(url=args.database_url), "profile")
        async with cleanup.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await cleanup.dispose()
    events_per_s = len(timed) / elapsed
    baseline = len(timed) / baseline_elapsed
    return {
        "touchpoints": len(timed),
        "people": args.people,
        "profiles": profiles,
        "workers": args.workers,
        "batch_size": args.batch,
        "duration_s": round(elapsed, 3),
        "events_per_s": round(events_per_s, 1),
        "baseline_events_per_s": round(baseline, 1),
        "ratio": round(events_per_s / baseline, 3),
        "cpu_us_per_event": round(cpu / len(timed) * 1e6, 1),
        "decode_us_per_event": round(_decode_us([e for _, e in timed[:5000]]), 1),
        "round_trips_per_batch": round(
            sum(a.round_trips for a in applied) / max(1, len(applied)), 2
        ),
        "round_trips_per_batch_without_merge": round(
            statistics.mean([a.round_trips for a in applied if not a.outcome.merges] or [0]), 2
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "merges": sum(o.merges for o in outcomes),
        "conflicts": sum(o.conflicts for o in outcomes),
        "retried_batches": sum(1 for o in outcomes if o.attempts > 1),
        "lookups": len(latencies),
        "lookup_p50_ms": round(_percentile(latencies, 0.50), 3),
        "lookup_p99_ms": round(_percentile(latencies, 0.99), 3),
        "lookup_max_ms": round(max(latencies, default=float("nan")), 3),
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
