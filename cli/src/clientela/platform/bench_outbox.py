"""`python -m clientela.platform.bench_outbox`: the inbox + outbox + relay path on PostgreSQL.

Runs what every consuming hop pays besides its own state: one transaction per batch that
claims the incoming event ids in the inbox and stages the outgoing events in the outbox, then
the relay that publishes the outbox to a real broker and deletes what was acknowledged. The two
phases run one after the other so each is measured alone: events/s, CPU µs per event of this
process (all its threads) and of the PostgreSQL backends serving it, and the broker's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import REGISTRY
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.shared.codec import OutgoingEvent, to_record
from clientela.shared.contracts import TouchpointRecorded, topics
from clientela.shared.db import create_engine, create_tables
from clientela.shared.embedded_broker import EmbeddedBroker, free_port
from clientela.shared.kafka import KafkaPublisher, ensure_topics
from clientela.shared.outbox import OutboxRelay, SqlTransaction, inbox_table, outbox_table
from clientela.shared.settings import DatabaseSettings, KafkaSettings
from clientela.shared.testing import drop_schema

SERVICE = "benchoutbox"


@dataclass(frozen=True, slots=True)
class Phase:
    """What one phase cost."""

    name: str
    events: int
    wall_s: float
    process_cpu_s: float
    postgres_cpu_s: float
    broker_cpu_s: float

    def row(self) -> dict[str, float | int | str]:
        """Return the figures per event."""
        n = max(self.events, 1)
        return {
            "phase": self.name,
            "events": self.events,
            "events_per_s": round(self.events / self.wall_s) if self.wall_s else 0,
            "process_cpu_us_per_event": round(self.process_cpu_s / n * 1e6, 2),
            "postgres_cpu_us_per_event": round(self.postgres_cpu_s / n * 1e6, 2),
            "broker_cpu_us_per_event": round(self.broker_cpu_s / n * 1e6, 2),
        }


async def _backend_pids(engine: AsyncEngine) -> list[int]:
    """Return the pids of the PostgreSQL backends serving this process's connections."""
    ports = [
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == (engine.url.port or 5432)
    ]
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(:ports)"),
            {"ports": ports},
        )
        return [int(r[0]) for r in rows]


def _cpu(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[pid] = times.user + times.system
    return found


async def _measure(
    name: str,
    events: int,
    engine: AsyncEngine,
    broker_pid: int | None,
    work: Callable[[], Awaitable[None]],
) -> Phase:
    broker_pids = [broker_pid] if broker_pid else []
    pg0, broker0 = _cpu(await _backend_pids(engine)), _cpu(broker_pids)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await work()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    # A backend opened during the phase started from zero CPU.
    pg = sum(t - pg0.get(pid, 0.0) for pid, t in _cpu(await _backend_pids(engine)).items())
    broker = sum(_cpu(broker_pids).values()) - sum(broker0.values())
    return Phase(name, events, wall, cpu, pg, broker)


def _event(i: int, people: int) -> TouchpointRecorded:
    return TouchpointRecorded.model_validate(
        {
            "source": "bench",
            "causation_id": str(uuid.uuid4()),
            "data": {
                "kind": "web_visit",
                "channel": "web",
                "direction": "inbound",
                "identifiers": {"customer_id": f"c{i % people}"},
                "web_visit": {"url": f"https://example.test/p/{i}"},
            },
        }
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run both phases and return the figures."""
    broker: EmbeddedBroker | None = None
    broker_pid: int | None = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker(prefer_port=free_port()).start()
        bootstrap = broker.bootstrap_servers
        # The broker is this process's only child.
        broker_pid = next((c.pid for c in psutil.Process().children()), None)
    run_id = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{run_id}.")
    if args.producer:
        # The setting every service reads; the publisher picks its client from it.
        os.environ["CLIENTELA_KAFKA_PRODUCER"] = args.producer
    schema = f"bench_outbox_{run_id}"
    database = DatabaseSettings(
        url=args.postgres_url, schema_name=schema, pool_size=4, pool_pre_ping=args.pre_ping
    )
    engine = create_engine(database, SERVICE)
    metadata = MetaData()
    inbox, outbox = inbox_table(metadata), outbox_table(metadata)
    publisher = KafkaPublisher(kafka)
    try:
        await create_tables(engine, metadata, SERVICE, database)
        await ensure_topics(kafka, [topics.TOUCHPOINTS])
        await publisher.start()
        rng = random.Random(7)
        n, size = args.events, args.batch
        built = [_event(i, args.people) for i in range(n + size)]
        staged = [
            OutgoingEvent(topics.TOUCHPOINTS, e.data.identifiers.customer_id or "", e)
            for e in built
        ]
        incoming = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n + size)]
        relay = OutboxRelay(
            engine,
            outbox,
            inbox,
            publisher,
            name=SERVICE,
            batch_size=500,
            idle_interval_s=30,
            pending_sample_s=3600,
        )

        def uow() -> SqlTransaction:
            return SqlTransaction(engine, inbox=inbox, outbox=outbox, kafka=kafka)

        async def write(start: int, stop: int) -> None:
            for offset in range(start, stop, size):
                async with uow() as tx:
                    fresh = await tx.claim_new(incoming[offset : offset + size])
                    assert len(fresh) == min(size, stop - offset)
                    await tx.stage(staged[offset : offset + size])
                    await tx.commit()

        def published() -> float:
            found = REGISTRY.get_sample_value(
                "clientela_outbox_published_total", {"relay": SERVICE}
            )
            return found or 0.0

        async def drain() -> None:
            # The relay's own loop, as in a service: it keeps its connection between batches.
            goal = published() + await relay.pending()
            task = asyncio.create_task(relay.run())
            try:
                # Polling an in-process counter: cheap, and the relay needs no test hook.
                while True:
                    if published() >= goal:
                        break
                    await asyncio.sleep(0.005)
                # Let the relay find the outbox empty and wait for a wake-up, as it would.
                await asyncio.sleep(0.05)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        # Warm up: connections, prepared statements, producer metadata.
        await write(n, n + size)
        await drain()
        # What encoding the events costs, included in the write phase.
        cpu0 = time.process_time()
        for e in staged[:n]:
            to_record(kafka.topic(e.topic), e.key, e.event, e.accepted_at_ms)
        encode_us = (time.process_time() - cpu0) / n * 1e6
        phases = [
            await _measure("write", n, engine, broker_pid, lambda: write(0, n)),
            await _measure("relay", n, engine, broker_pid, drain),
        ]
        assert await relay.pending() == 0
    finally:
        await publisher.stop()
        await engine.dispose()
        await drop_schema(args.postgres_url, schema)
        if broker is not None:
            broker.stop()
    load = os.getloadavg()
    return {
        "events": n,
        "batch": size,
        "producer": getattr(publisher, "client", "aiokafka"),
        "pool_pre_ping": args.pre_ping,
        "encode_us_per_event": round(encode_us, 2),
        "load_1m": round(load[0], 2),
        "phases": [p.row() for p in phases],
    }


def main() -> None:
    """Command line: run the bench, print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200, help="events per transaction")
    parser.add_argument("--people", type=int, default=5_000, help="distinct keys")
    parser.add_argument("--producer", choices=["aiokafka", "confluent"], default=None)
    parser.add_argument("--bootstrap", default=None, help="a running broker (default: embedded)")
    parser.add_argument(
        "--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--no-pre-ping", dest="pre_ping", action="store_false")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    header = f"{'phase':<8}{'events/s':>10}{'process µs/ev':>15}{'postgres µs/ev':>16}"
    print(
        f"events={result['events']} batch={result['batch']} producer={result['producer']} "
        f"pre_ping={result['pool_pre_ping']} encode={result['encode_us_per_event']} µs/ev "
        f"load={result['load_1m']}"
    )
    print(header + f"{'broker µs/ev':>14}")
    for p in result["phases"]:
        print(
            f"{p['phase']:<8}{p['events_per_s']:>10}{p['process_cpu_us_per_event']:>15}"
            f"{p['postgres_cpu_us_per_event']:>16}{p['broker_cpu_us_per_event']:>14}"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
