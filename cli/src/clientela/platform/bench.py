"""`make bench`: the whole platform under load, end to end, against a bare Kafka baseline.

Starts a fresh embedded broker, relays the same number of Kafka hops with no processing (the
baseline), then runs the four services on PostgreSQL + Redis (or the embedded stores), streams
synthetic touchpoints through ingest over HTTP, and measures sustained throughput and the
latency from accept to each downstream event using the accept time carried in Kafka headers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from tqdm import tqdm

from clientela.platform.launcher import SERVICES, Platform, PlatformSettings
from clientela.platform.population import Population, PopulationSpec
from clientela.shared.benchmarking import host_speed_ops_per_s
from clientela.shared.codec import accepted_at_ms, now_ms
from clientela.shared.consumer import partition_ends
from clientela.shared.contracts import CleanupPolicy, TopicSpec, topics
from clientela.shared.embedded_broker import EmbeddedBroker, free_port
from clientela.shared.kafka import KafkaPublisher, ensure_topics
from clientela.shared.settings import AuthSettings, KafkaSettings
from clientela.shared.testing import drop_schema

OBSERVED = {
    topics.PROFILES.name: "profile",
    topics.TIER_CHANGES.name: "tier",
    topics.CAMPAIGN_MESSAGES.name: "campaign",
}


@dataclass
class BenchConfig:
    """What to run."""

    events: int = 50_000
    rate: float = 0.0
    people: int = 20_000
    batch: int = 100
    concurrency: int = 8
    backend: str = "production"
    lookup_rate: float = 50.0
    seed: int = 42
    drain_timeout_s: float = 600.0
    baseline: bool = True
    progress: bool = True
    postgres_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/0"


@dataclass
class Observation:
    """What the run saw."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    per_second: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    p99_per_second: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    lookups_ms: list[float] = field(default_factory=list)
    lookup_misses: int = 0
    last_output_at: float = 0.0
    rss_mb: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_breakdown_s: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) by nearest rank, or NaN when empty."""
    if not values:
        return math.nan
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, math.ceil(q / 100 * len(ranked)) - 1))]


def identity_key(event: dict[str, Any]) -> bytes:
    """Return a baseline record's key: the touchpoint's strongest identifier, as ingest keys."""
    ids: dict[str, str] = event.get("identifiers", {})
    for kind in ("customer_id", "email", "phone", "anonymous_id"):
        if kind in ids:
            return f"{kind}:{ids[kind]}".encode()
    return next(iter(ids.values()), "").encode()


async def run_baseline(
    bootstrap: str,
    records: list[tuple[bytes, bytes]],
    hops: int = 4,
    partitions: int = 6,
    broker_pid: int | None = None,
) -> tuple[float, dict[str, float]]:
    """Relay raw (key, value) records through as many hops as the pipeline; return events/s.

    Every topic has the pipeline's partition count, the records the pipeline's keys, and each
    relay pipelines its batches (see relay.py), so the figure is what the hardware allows for
    the same hops, not a latency bound. Returns events/s and the CPU seconds of the relays
    and the broker over the run.
    """
    run = uuid.uuid4().hex[:6]
    names = [f"baseline.{run}.{i}" for i in range(hops)]
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    await ensure_topics(
        settings,
        [
            TopicSpec(name, "key", partitions, CleanupPolicy.DELETE, None, "baseline")
            for name in names
        ],
    )
    relays = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "clientela.platform.relay", "--bootstrap", bootstrap),
            *("--source", names[i], "--target", names[i + 1], "--group", f"baseline-{run}-{i}"),
        )
        for i in range(hops - 1)
    ]
    consumer = AIOKafkaConsumer(
        names[-1], bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    publisher = KafkaPublisher(settings)
    try:
        await consumer.start()
        await publisher.start()
        # Warm-up: wait until one record went all the way through (groups have joined).
        await publisher.publish_rows([(names[0], b"warm-up", b"warm-up", [])])
        async with asyncio.timeout(60):
            while not await consumer.getmany(timeout_ms=200):
                pass
        ledger = CpuLedger(
            {f"relay{i}": r.pid for i, r in enumerate(relays)}
            | ({"broker": broker_pid} if broker_pid is not None else {})
        )
        started = time.perf_counter()
        sends = [
            asyncio.create_task(
                publisher.publish_rows([(names[0], k, v, []) for k, v in records[i : i + 500]])
            )
            for i in range(0, len(records), 500)
        ]
        received = 0
        async with asyncio.timeout(300):
            while received < len(records):
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                received += sum(len(r) for r in batch.values())
        await asyncio.gather(*sends)
        rate = len(records) / (time.perf_counter() - started)
        ledger.sample()
        return rate, ledger.seconds
    finally:
        await publisher.stop()
        await consumer.stop()
        for relay in relays:
            relay.terminate()
        for relay in relays:
            await relay.wait()


async def observe(
    settings: PlatformSettings, seen: Observation, stop: asyncio.Event, started: float
) -> None:
    """Tail the downstream topics, recording accept-to-arrival latency and per-second counts."""
    consumer = AIOKafkaConsumer(
        *(settings.topic_prefix + name for name in OBSERVED),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            arrived = now_ms()
            for records in batch.values():
                for record in records:
                    stage = OBSERVED[record.topic.removeprefix(settings.topic_prefix)]
                    accepted = accepted_at_ms(record.headers)
                    second = int(time.perf_counter() - started)
                    seen.per_second[stage][second] += 1
                    if accepted is not None:
                        latency = float(arrived - accepted)
                        seen.latencies_ms[stage].append(latency)
                        if stage == "tier":
                            seen.p99_per_second[second].append(latency)
                    seen.last_output_at = time.perf_counter()
    finally:
        await consumer.stop()


async def send(
    settings: PlatformSettings,
    bodies: list[bytes],
    sizes: list[int],
    config: BenchConfig,
    seen: Observation,
    started: float,
    progress: tqdm[Any] | None,
) -> None:
    """Post the batches to ingest at the target rate (or as fast as it takes them)."""
    url = f"{settings.url('ingest')}/v1/touchpoints"
    # The services honour CLIENTELA_DEV_WRITE_KEY; the client posts the key they expect.
    key = AuthSettings().dev_write_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=config.concurrency)
    semaphore = asyncio.Semaphore(config.concurrency)

    async def post(client: httpx.AsyncClient, body: bytes, size: int) -> None:
        async with semaphore:
            for attempt in range(20):
                response = await client.post(url, content=body, headers=headers)
                if response.status_code == 200:
                    break
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(f"ingest kept refusing: {response.status_code} {response.text}")
        seen.per_second["accepted"][int(time.perf_counter() - started)] += size
        if progress is not None:
            progress.update(size)

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        tasks = []
        sent = 0
        for body, size in zip(bodies, sizes, strict=True):
            if config.rate > 0:
                due = started + sent / config.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await semaphore.acquire()
            semaphore.release()
            tasks.append(asyncio.create_task(post(client, body, size)))
            sent += size
        await asyncio.gather(*tasks)


async def look_up(
    settings: PlatformSettings,
    customer_ids: list[str],
    rate: float,
    seen: Observation,
    stop: asyncio.Event,
    ledger: CpuLedger,
) -> None:
    """Look profiles up by customer id at a steady rate, recording the latency.

    The lookups run in a process of their own (clientela.platform.lookups): in this one the
    observer's and the load generator's turns of the event loop would count as latency.
    """
    if rate <= 0 or not customer_ids:
        return
    base = f"{settings.url('profile')}/v1/profiles/by/customer_id/"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clientela.platform.lookups",
        "--base",
        base,
        "--rate",
        str(rate),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    ledger.add_harness(process.pid)
    assert process.stdin is not None
    key = AuthSettings().dev_read_key.get_secret_value()
    process.stdin.write(key.encode() + b"\n" + json.dumps(customer_ids).encode() + b"\n")
    await process.stdin.drain()
    await stop.wait()
    ledger.sample()  # the lookups' CPU is read before the process ends
    process.stdin.close()
    out, _ = await process.communicate()
    found = json.loads(out)
    seen.lookups_ms.extend(found["latencies_ms"])
    seen.lookup_misses += found["misses"]


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _tree_cpu_seconds(processes: list[psutil.Process]) -> float:
    """Return the CPU of a process and its children (e.g. an HTTP server's workers)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += _cpu_seconds(process)
    return total


def _tree(process: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [process, *process.children(recursive=True)]
    return [process]


_BACKEND_SCAN_S = 5.0


class CpuLedger:
    """CPU seconds of the processes a run started, the database backends serving them, Redis.

    Services and the broker are counted by pid. A PostgreSQL backend counts when one of its
    connections leads to a port a service holds open (connections come and go with the pools,
    so backends are looked for every few seconds); one started during the run counts whole.
    Redis serves every client from one process: its whole CPU is counted, other clients' too.
    The harness (load generator and observer: this process; the lookups' process) is reported
    apart.
    """

    def __init__(self, processes: Mapping[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self._pids = set(processes.values())
        self._started = time.time()
        self._base: dict[str, float] = {}
        # pid -> (backend, the service it serves, CPU at first sight, CPU at last sample)
        self._backends: dict[int, tuple[psutil.Process, str, float, float]] = {}
        # Backends found serving none of the services: a backend's connection never changes,
        # so each is looked at once (reading a process's sockets parses every socket on the
        # host, and the ledger must not steal the CPU it measures).
        self._foreign: set[int] = set()
        self._listed_at = float("-inf")
        self._redis = [p for p in psutil.process_iter(["name"]) if "redis" in (p.name() or "")]
        # Each service with its children; listed again with the backends (every few seconds).
        self._trees = {name: _tree(process) for name, process in self._processes.items()}
        for name, tree in self._trees.items():
            self._base[name] = _tree_cpu_seconds(tree)
        for process in self._redis:
            with contextlib.suppress(psutil.Error):
                self._base[f"redis:{process.pid}"] = _cpu_seconds(process)
        self._harness = [psutil.Process()]
        self._base["harness"] = _cpu_seconds(self._harness[0])
        self.seconds: dict[str, float] = {}
        self.breakdown: dict[str, float] = {}
        self.sample()

    def _service_ports(self) -> dict[int, str]:
        ports: dict[int, str] = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.Error):
                for c in process.net_connections("tcp"):
                    if c.raddr:
                        ports[c.laddr.port] = name
        return ports

    def _find_backends(self, *, final: bool) -> None:
        # Listing the host's processes costs ~3 ms per 100: looked at every few seconds and at
        # the end. A backend found late loses nothing (one born during the run counts whole).
        now = time.monotonic()
        if not final and now - self._listed_at < _BACKEND_SCAN_S:
            return
        self._listed_at = now
        self._trees = {name: _tree(process) for name, process in self._processes.items()}
        unseen = [
            p
            for p in psutil.process_iter(["name"])
            if (p.info.get("name") or "").startswith("postgres")
            and p.pid not in self._backends
            and p.pid not in self._foreign
        ]
        if not unseen:
            return
        ports = self._service_ports()
        for process in unseen:
            with contextlib.suppress(psutil.Error):
                served = next(
                    (
                        ports[c.raddr.port]
                        for c in process.net_connections("tcp")
                        if c.raddr and c.raddr.port in ports
                    ),
                    None,
                )
                if served is None:
                    self._foreign.add(process.pid)
                    continue
                born_during_run = process.create_time() >= self._started
                base = 0.0 if born_during_run else _cpu_seconds(process)
                self._backends[process.pid] = (process, served, base, base)

    def sample(self, *, final: bool = False) -> None:
        """Bring every figure up to now (`final`: look again for backends born since)."""
        for name, tree in self._trees.items():
            self.seconds[name] = _tree_cpu_seconds(tree) - self._base.get(name, 0.0)
        self._find_backends(final=final)
        by_service: dict[str, float] = defaultdict(float)
        for pid, (process, served, base, last) in list(self._backends.items()):
            with contextlib.suppress(psutil.Error):
                last = _cpu_seconds(process)
                self._backends[pid] = (process, served, base, last)
            by_service[served] += last - base
        self.seconds["postgres"] = sum(by_service.values())
        # Which service's statements the database spends on (apart from the total above).
        self.breakdown = {f"postgres_for_{name}": s for name, s in by_service.items()}
        redis = 0.0
        for process in self._redis:
            with contextlib.suppress(psutil.Error):
                redis += _cpu_seconds(process) - self._base[f"redis:{process.pid}"]
        self.seconds["redis"] = redis
        harness = 0.0
        for process in self._harness:
            with contextlib.suppress(psutil.Error):
                harness += _cpu_seconds(process)
        self.seconds["harness"] = max(
            harness - self._base["harness"], self.seconds.get("harness", 0.0)
        )

    def add_harness(self, pid: int) -> None:
        """Count a process the harness started (from its birth) as the harness's."""
        with contextlib.suppress(psutil.Error):
            self._harness.append(psutil.Process(pid))


async def sample_memory(
    platform: Platform, ledger: CpuLedger, seen: Observation, stop: asyncio.Event
) -> None:
    """Record each service's resident memory once a second, and the CPU ledger."""
    processes = {name: psutil.Process(pid) for name, pid in platform.pids().items()}
    while not stop.is_set():
        for name, process in processes.items():
            with contextlib.suppress(psutil.Error):
                seen.rss_mb[name].append(process.memory_info().rss / 2**20)
        ledger.sample()
        seen.cpu_s, seen.cpu_breakdown_s = dict(ledger.seconds), dict(ledger.breakdown)
        await asyncio.sleep(1)
    ledger.sample(final=True)
    seen.cpu_s, seen.cpu_breakdown_s = dict(ledger.seconds), dict(ledger.breakdown)


async def lag(bootstrap: str, prefix: str) -> int:
    """Return the total lag of the three consumer groups on the topics they consume."""
    consumed = {
        "clientela-profile": [topics.TOUCHPOINTS],
        "clientela-scoring": [topics.PROFILES, topics.PROFILE_ERASURES],
        "clientela-campaign": [
            topics.TIER_CHANGES,
            topics.PROFILES,
            topics.SCORES,
            topics.TOUCHPOINTS,
            topics.PROFILE_ERASURES,
            topics.PROFILE_MERGES,
        ],
    }
    total = 0
    for group, specs in consumed.items():
        parts = [
            TopicPartition(prefix + spec.name, p) for spec in specs for p in range(spec.partitions)
        ]
        # A consumer that never subscribes only reads the group's committed offsets.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            ends = await partition_ends(consumer, parts)
            for tp in parts:
                committed = await consumer.committed(tp) or 0
                total += max(0, ends[tp] - committed)
        finally:
            await consumer.stop()
    return total


async def records_on_topics(bootstrap: str, prefix: str) -> Counter[str]:
    """Return how many records each topic of a run holds (by name without the prefix)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    parts = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await partition_ends(consumer, parts)
    finally:
        await consumer.stop()
    held: Counter[str] = Counter()
    for tp, end in ends.items():
        held[tp.topic.removeprefix(prefix)] += end
    return held


async def pg_row_writes(postgres_url: str, schema_prefix: str) -> Counter[str]:
    """Return the rows inserted, updated and deleted so far, by `<service>_<table>`."""
    conn = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        found = await conn.fetch(
            "SELECT schemaname, relname, n_tup_ins + n_tup_upd + n_tup_del "
            "FROM pg_stat_user_tables WHERE starts_with(schemaname, $1)",
            schema_prefix,
        )
    finally:
        await conn.close()
    return Counter({f"{r[0].removeprefix(schema_prefix)}_{r[1]}": int(r[2]) for r in found})


async def run_platform(
    config: BenchConfig, bootstrap: str, workdir: Path, broker_pid: int | None = None
) -> tuple[dict[str, Any], Observation]:
    """Run the four services and stream the population through them; return the figures."""
    run = uuid.uuid4().hex[:6]
    settings = PlatformSettings(
        bootstrap_servers=bootstrap,
        data_dir=workdir / "data",
        topic_prefix=f"bench.{run}.",
        ports={service: free_port() for service in SERVICES},
        log_level="WARNING",
        extra_env={"CLIENTELA_CACHE_KEY_PREFIX": f"bench:{run}:"},
    )
    if config.backend == "production":
        settings.database_url = config.postgres_url
        settings.schema_prefix = f"bench_{run}_"
        settings.cache_url = config.redis_url
    population = Population(PopulationSpec(people=config.people, seed=config.seed))
    events = list(population.touchpoints(config.events))
    bodies = [
        json.dumps(events[i : i + config.batch]).encode()
        for i in range(0, len(events), config.batch)
    ]
    sizes = [len(events[i : i + config.batch]) for i in range(0, len(events), config.batch)]
    customer_ids = sorted(
        {e["identifiers"]["customer_id"] for e in events if "customer_id" in e["identifiers"]}
    )
    seen = Observation()
    platform = Platform(settings, log_dir=workdir / "logs")
    await asyncio.to_thread(platform.start, 180)
    rows: Counter[str] = Counter()
    try:
        if settings.database_url:
            rows_at_start = await pg_row_writes(settings.database_url, settings.schema_prefix)
        records_at_start = await records_on_topics(bootstrap, settings.topic_prefix)
        pids = platform.pids()
        if broker_pid is not None:
            pids["broker"] = broker_pid
        ledger = CpuLedger(pids)
        stop = asyncio.Event()
        started = time.perf_counter()
        background = [
            asyncio.create_task(observe(settings, seen, stop, started)),
            asyncio.create_task(
                look_up(settings, customer_ids, config.lookup_rate, seen, stop, ledger)
            ),
            asyncio.create_task(sample_memory(platform, ledger, seen, stop)),
        ]
        progress = tqdm(
            total=config.events, unit="ev", desc="accepted", disable=not config.progress
        )
        await send(settings, bodies, sizes, config, seen, started, progress)
        progress.close()
        sent_at = time.perf_counter()
        deadline = sent_at + config.drain_timeout_s
        while time.perf_counter() < deadline:
            await asyncio.sleep(1)
            quiet = time.perf_counter() - seen.last_output_at > 2
            if quiet and await lag(bootstrap, settings.topic_prefix) == 0:
                break
        stop.set()
        await asyncio.gather(*background)
        records = await records_on_topics(bootstrap, settings.topic_prefix)
        records.subtract(records_at_start)
        if settings.database_url:
            # Backends report their row counts at most once a second, and an idle one only
            # after PostgreSQL's idle interval (10 s): wait for the last reports.
            await asyncio.sleep(11)
            rows = await pg_row_writes(settings.database_url, settings.schema_prefix)
            rows.subtract(rows_at_start)
    finally:
        await asyncio.to_thread(platform.stop)
        if settings.database_url:
            for service in SERVICES:
                await drop_schema(settings.database_url, settings.schema_prefix + service)
    duration = seen.last_output_at - started
    result = summarise(config, seen, duration, sent_at - started)
    result["records_per_touchpoint"] = round(sum(records.values()) / config.events, 3)
    # Which topics the records are on: the fan-out a touchpoint causes, hop by hop.
    for topic, count in sorted(records.items()):
        if count:
            result[f"records_per_touchpoint_{topic.replace('-', '_').replace('.', '_')}"] = round(
                count / config.events, 3
            )
    if rows:
        result["pg_rows_per_touchpoint"] = round(sum(rows.values()) / config.events, 3)
        # Which tables the writes land in: where the database's work per touchpoint goes.
        for table, count in sorted(rows.items()):
            if count:
                result[f"pg_rows_per_touchpoint_{table}"] = round(count / config.events, 3)
    return result, seen


def summarise(
    config: BenchConfig, seen: Observation, duration: float, send_duration: float
) -> dict[str, Any]:
    """Flatten the observation into the result object."""
    result: dict[str, Any] = {
        "backend": config.backend,
        "events": config.events,
        "people": config.people,
        "target_rate_per_s": config.rate,
        "duration_s": round(duration, 2),
        "events_per_s": round(config.events / duration, 1) if duration > 0 else 0.0,
        "accept_events_per_s": round(config.events / send_duration, 1),
    }
    for stage, name in (
        ("profile", "profile"),
        ("tier", "tier_changed"),
        ("campaign", "campaign_message"),
    ):
        values = seen.latencies_ms.get(stage, [])
        result[f"{name}_events"] = len(values)
        for q in (50, 95, 99):
            result[f"accept_to_{name}_p{q}_ms"] = round(percentile(values, q), 1)
    result["lookups"] = len(seen.lookups_ms)
    result["lookup_misses"] = seen.lookup_misses
    result["lookup_p50_ms"] = round(percentile(seen.lookups_ms, 50), 2)
    result["lookup_p99_ms"] = round(percentile(seen.lookups_ms, 99), 2)
    for service, samples in seen.rss_mb.items():
        if samples:
            result[f"{service}_rss_start_mb"] = round(samples[0], 1)
            result[f"{service}_rss_max_mb"] = round(max(samples), 1)
            result[f"{service}_rss_end_mb"] = round(samples[-1], 1)
            # Warm-up growth (caches, pools) is expected; flat memory means no slope after it.
            result[f"{service}_rss_slope_second_half_mb_per_min"] = round(
                rss_slope_mb_per_min(samples[len(samples) // 2 :]), 2
            )
    # CPU per accepted touchpoint shows where the pipeline's cost sits; the harness's own
    # (load generator, observer, lookups) is reported apart and not in the total.
    platform_s = sum(s for name, s in seen.cpu_s.items() if name != "harness")
    result["cpu_us_per_touchpoint"] = round(platform_s / config.events * 1e6, 1)
    for name, seconds in sorted(seen.cpu_s.items()):
        result[f"cpu_us_per_touchpoint_{name}"] = round(seconds / config.events * 1e6, 1)
    for name, seconds in sorted(seen.cpu_breakdown_s.items()):
        result[f"cpu_us_per_touchpoint_{name}"] = round(seconds / config.events * 1e6, 1)
    return result


def rss_slope_mb_per_min(samples: list[float]) -> float:
    """Least-squares slope of once-a-second RSS samples, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    mean_x = (len(samples) - 1) / 2
    mean_y = sum(samples) / len(samples)
    spread = sum((x - mean_x) ** 2 for x in range(len(samples)))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(samples)) / spread
    return slope * 60


def chart(seen_result: dict[str, Any], seen: Observation, path: Path) -> None:
    """Draw throughput and TierChanged p99 latency over time into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for stage, counts in seen.per_second.items():
        if counts:
            xs = range(max(counts) + 1)
            top.plot(list(xs), [counts.get(x, 0) for x in xs], label=stage, marker=".")
    top.set_ylabel("records / s")
    top.legend()
    top.set_title(
        f"Clientela bench: {seen_result['events_per_s']} events/s end to end "
        f"({seen_result['backend']})"
    )
    seconds = sorted(seen.p99_per_second)
    bottom.plot(
        seconds,
        [percentile(seen.p99_per_second[s], 99) for s in seconds],
        label="accept -> TierChanged p99",
    )
    bottom.set_ylabel("ms")
    bottom.set_xlabel("seconds since start")
    bottom.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(result: dict[str, Any]) -> str:
    """Return the result as an aligned two-column table."""
    width = max(len(k) for k in result)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in result.items())


async def bench(config: BenchConfig) -> tuple[dict[str, Any], Observation]:
    """Run the baseline and the platform on a fresh broker; return the figures."""
    speed = await asyncio.to_thread(host_speed_ops_per_s)
    with (
        tempfile.TemporaryDirectory(prefix="clientela-bench-") as tmp,
        EmbeddedBroker(prefer_port=0, log_path=Path(tmp) / "broker.log") as broker,
    ):
        baseline = 0.0
        baseline_cpu: dict[str, float] = {}
        if config.baseline:
            population = Population(PopulationSpec(people=config.people, seed=config.seed))
            records = [
                (identity_key(e), json.dumps(e).encode())
                for e in population.touchpoints(config.events)
            ]
            baseline, baseline_cpu = await run_baseline(
                broker.bootstrap_servers, records, broker_pid=broker.pid
            )
        result, seen = await run_platform(
            config, broker.bootstrap_servers, Path(tmp), broker_pid=broker.pid
        )
    result["baseline_events_per_s"] = round(baseline, 1)
    result["ratio"] = round(result["events_per_s"] / baseline, 4) if baseline else None
    if baseline_cpu:
        # What the bare hops cost the broker and the relays, for the pipeline's own figures.
        relays = sum(v for k, v in baseline_cpu.items() if k.startswith("relay"))
        result["baseline_cpu_us_per_touchpoint_broker"] = round(
            baseline_cpu.get("broker", 0.0) / config.events * 1e6, 1
        )
        result["baseline_cpu_us_per_touchpoint_relays"] = round(relays / config.events * 1e6, 1)
    if speed is not None:
        result["host_speed_ops_per_s"] = speed
    return result, seen


def main() -> None:
    """Command line of `make bench`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=0.0, help="touchpoints/s; 0 = max")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--backend", choices=["production", "embedded"], default="production")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lookup-rate", type=float, default=50.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=Path(".bench/bench.json"))
    parser.add_argument(
        "--chart",
        type=lambda v: Path(v) if v else None,
        default=Path(".bench/bench.png"),
        help="PNG of throughput and latency over time; an empty value draws none",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    config = BenchConfig(
        events=args.events,
        rate=args.rate,
        people=args.people,
        backend=args.backend,
        concurrency=args.concurrency,
        lookup_rate=args.lookup_rate,
        seed=args.seed,
        baseline=not args.no_baseline,
        progress=not args.quiet,
        postgres_url=os.environ.get("CLIENTELA_BENCH_POSTGRES_URL", BenchConfig.postgres_url),
        redis_url=os.environ.get("CLIENTELA_BENCH_REDIS_URL", BenchConfig.redis_url),
    )
    result, seen = asyncio.run(bench(config))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    if args.chart:
        chart(result, seen, args.chart)
    print(table(result))
    print(f"\nwritten: {args.output}" + (f", {args.chart}" if args.chart else ""))


if __name__ == "__main__":
    main()
