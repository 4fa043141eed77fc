"""The fault rig shared by tests/reliability and tests/security (loaded as a pytest plugin).

One session-wide platform of real processes: a private embedded broker (so a test may pause
it), the four services on PostgreSQL and Redis, each store isolated by its own topic prefix,
schema prefix and cache key prefix. The services reach PostgreSQL through a TCP proxy process,
so a test can make the database unreachable without touching the PostgreSQL everyone shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from clientela.campaign.config import CampaignSettings
from clientela.ingest.config import IngestSettings
from clientela.platform.launcher import SERVICES, Platform, PlatformSettings
from clientela.platform.population import Population, PopulationSpec
from clientela.profile.config import ProfileSettings
from clientela.scoring.config import ScoringSettings
from clientela.shared.consumer import partition_ends
from clientela.shared.contracts import TopicSpec, topics
from clientela.shared.embedded_broker import EmbeddedBroker, free_port, port_is_free
from clientela.shared.settings import DEV_ADMIN_KEY, DEV_READ_KEY, DEV_WRITE_KEY
from clientela.shared.testing import drop_schema

FULL_SIZE_ENV = "CLIENTELA_FAULTS_FULL"
WRITE = {"Authorization": f"Bearer {DEV_WRITE_KEY}"}
READ = {"Authorization": f"Bearer {DEV_READ_KEY}"}
ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}

# Every customer in the tier range gets a welcome; no holdout, so a test can expect messages.
CAMPAIGNS = """
[[campaigns]]
id = "rel-welcome"
name = "Welcome to our best customers"
trigger = ["tier_entered", "tier_up"]
to_tiers = ["A", "B", "C"]
lifecycles = ["customer"]
purpose = "loyalty"
channels = ["phone", "branch", "email", "sms"]
holdout_share = 0.0
message_ttl_hours = 168
enabled = true
variants = { A = "welcome-a", B = "welcome-b", C = "welcome-c" }
"""

# What each service consumes, under which group, and where its bad records go.
GROUPS: dict[str, str] = {
    "ingest": str(IngestSettings.model_fields["group_id"].default),
    "profile": str(ProfileSettings.model_fields["group_id"].default),
    "scoring": str(ScoringSettings.model_fields["group_id"].default),
    "campaign": str(CampaignSettings.model_fields["group_id"].default),
}
CONSUMES: Mapping[str, tuple[TopicSpec, ...]] = topics.CONSUMED_BY
DEAD_LETTERS: dict[str, TopicSpec] = {
    "ingest": topics.TOUCHPOINTS_DLQ,
    "profile": topics.PROFILE_DLQ,
    "scoring": topics.SCORING_DLQ,
    "campaign": topics.CAMPAIGN_DLQ,
}
WITH_OUTBOX = ("profile", "scoring", "campaign")


def full_size() -> bool:
    """Return whether the full-size fault runs were asked for (make test-faults)."""
    return os.environ.get(FULL_SIZE_ENV) == "1"


class PgProxy:
    """The TCP proxy process between the services and PostgreSQL."""

    def __init__(self, target_host: str, target_port: int, log: Path) -> None:
        self.port = free_port()
        self._target = (target_host, target_port)
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or start again) the proxy on its port and wait until it listens."""
        script = Path(__file__).with_name("reliability_tcp_proxy.py")
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(script), str(self.port), *map(str, self._target)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while port_is_free("127.0.0.1", self.port):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("the PostgreSQL proxy did not start")
            time.sleep(0.05)

    def pause(self) -> None:
        """Stop forwarding: every connection hangs, as with a frozen database host."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Forward again after pause()."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def drop(self) -> None:
        """Kill the proxy: every connection is reset and new ones are refused."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)

    def stop(self) -> None:
        """Stop the proxy for good."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
        self.drop()


@dataclass
class Rig:
    """The running platform and the handles a fault test pulls."""

    broker: EmbeddedBroker
    platform: Platform
    proxy: PgProxy
    postgres_url: str
    redis_url: str
    schema_prefix: str
    cache_prefix: str
    log_dir: Path
    run_id: str
    # Every email, phone and name any test sent, for the log search.
    personal_data: set[str] = field(default_factory=set)

    @property
    def bootstrap(self) -> str:
        """Return the private broker's bootstrap servers."""
        return self.broker.bootstrap_servers

    @property
    def broker_pid(self) -> int:
        """Return the broker's process id."""
        return self.broker.pid

    def url(self, service: str) -> str:
        """Return a service's base URL."""
        return self.platform.settings.url(service)

    def topic(self, spec: TopicSpec) -> str:
        """Return the physical name of a topic in this rig."""
        return self.platform.settings.topic_prefix + spec.name

    def schema(self, service: str) -> str:
        """Return a service's PostgreSQL schema."""
        return self.schema_prefix + service

    # --- processes -------------------------------------------------------------------------

    def kill(self, service: str) -> None:
        """kill -9 one service and reap it."""
        pid = self.platform.pids().get(service)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while service in self.platform.pids() and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self, service: str, timeout_s: float = 90) -> None:
        """Start a killed service again and wait until every service is ready."""
        if service not in self.platform.pids():
            self.platform.start_service(service)
        self.platform.wait_ready(timeout_s)

    def ensure_up(self, timeout_s: float = 90) -> None:
        """Restart whatever is not running, then wait until everything is ready."""
        if not self.broker.running:
            raise RuntimeError("the rig's broker died")
        for service in SERVICES:
            if service not in self.platform.pids():
                self.platform.start_service(service)
        self.platform.wait_ready(timeout_s)

    def logs(self) -> str:
        """Return everything the services logged so far."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    # --- topics, lag and backlog -----------------------------------------------------------

    async def _consumer(self, group_id: str | None = None) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=group_id, enable_auto_commit=False
        )
        await consumer.start()
        await consumer.topics()
        return consumer

    @staticmethod
    def _partitions(consumer: AIOKafkaConsumer, names: Iterable[str]) -> list[TopicPartition]:
        return [
            TopicPartition(n, p)
            for n in names
            for p in sorted(consumer.partitions_for_topic(n) or ())
        ]

    async def read_topic(self, spec: TopicSpec | str) -> list[ConsumerRecord[bytes, bytes]]:
        """Return every record of a topic written so far, in order within each partition."""
        name = spec if isinstance(spec, str) else self.topic(spec)
        ends = await self.end_offsets([name])
        consumer = await self._consumer()
        try:
            tps = [tp for tp, end in ends.items() if end > 0]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[ConsumerRecord[bytes, bytes]] = []
            async with asyncio.timeout(90):
                while pending := [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                    batch = await consumer.getmany(*pending, timeout_ms=500)
                    for tp, records in batch.items():
                        out.extend(r for r in records if r.offset < ends[tp])
            return out
        finally:
            await consumer.stop()

    async def end_offsets(self, names: Iterable[str]) -> dict[TopicPartition, int]:
        """Return the end offset of every partition of the named topics."""
        consumer = await self._consumer()
        try:
            return await partition_ends(consumer, self._partitions(consumer, names))
        finally:
            await consumer.stop()

    async def consumer_lag(self) -> dict[str, int]:
        """Return, per service, the records its group has not committed yet."""
        lag: dict[str, int] = {}
        for service, specs in CONSUMES.items():
            ends = await self.end_offsets(self.topic(s) for s in specs)
            # A consumer that only reads committed offsets (assign, never subscribe) does not
            # join the group, so asking does not trigger a rebalance of the service.
            consumer = await self._consumer(GROUPS[service])
            try:
                total = 0
                for tp, end in ends.items():
                    committed = await consumer.committed(tp)
                    total += max(0, end - (committed or 0))
                lag[service] = total
            finally:
                await consumer.stop()
        return lag

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one statement directly on PostgreSQL (not through the proxy); return rows."""
        engine = create_async_engine(self.postgres_url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return list(result.fetchall()) if result.returns_rows else []
        finally:
            await engine.dispose()

    async def outbox_backlog(self) -> dict[str, int]:
        """Return, per service, the events committed but not yet published."""
        backlog: dict[str, int] = {}
        for service in WITH_OUTBOX:
            try:
                rows = await self.sql(f'SELECT count(*) FROM "{self.schema(service)}".outbox')
            except Exception:  # the table may not exist yet
                rows = [(0,)]
            backlog[service] = int(rows[0][0])
        return backlog

    async def wait_quiet(self, timeout_s: float = 120) -> dict[str, int]:
        """Wait until no group lags and no outbox holds anything, twice in a row."""
        deadline = time.monotonic() + timeout_s
        calm = 0
        state: dict[str, int] = {}
        while calm < 2:
            lag = await self.consumer_lag()
            backlog = await self.outbox_backlog()
            state = {
                **{f"lag:{k}": v for k, v in lag.items()},
                **{f"outbox:{k}": v for k, v in backlog.items()},
            }
            calm = calm + 1 if not any(state.values()) else 0
            if time.monotonic() > deadline:
                raise AssertionError(f"the platform did not settle: {state}")
            await asyncio.sleep(1.0)
        return state


# --- traffic -----------------------------------------------------------------------------


class Ingestion:
    """Posts touchpoints to ingest like a well-behaved upstream: retry until acknowledged."""

    def __init__(self, rig: Rig, client: httpx.AsyncClient) -> None:
        self._rig = rig
        self._client = client
        self.outcomes: dict[str, str] = {}
        self.retries = 0
        self.unavailable = 0

    async def post(self, events: Sequence[dict[str, Any]], give_up_s: float = 180) -> None:
        """Post a batch; on 503 or a connection error retry the same batch (same event ids)."""
        url = self._rig.url("ingest") + "/v1/touchpoints"
        deadline = time.monotonic() + give_up_s
        delay = 0.1
        while True:
            try:
                response = await self._client.post(url, json=list(events), headers=WRITE)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                for result in response.json()["results"]:
                    previous = self.outcomes.get(result["event_id"])
                    # A retry of an accepted event is answered "duplicate": it stays accepted.
                    if previous != "accepted":
                        self.outcomes[result["event_id"]] = result["status"]
                return
            if response is not None:
                assert response.status_code in (429, 502, 503, 504), (
                    f"ingest answered {response.status_code}: {response.text[:500]}"
                )
                self.unavailable += 1
            self.retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"ingest did not acknowledge a batch in {give_up_s}s")
            await asyncio.sleep(delay + random.random() * delay)
            delay = min(delay * 2, 1.0)


@dataclass
class Truth:
    """What the profiles must show, computed from the touchpoints sent."""

    touchpoints: dict[str, int] = field(default_factory=dict)
    purchases: dict[str, int] = field(default_factory=dict)
    spend: dict[str, Decimal] = field(default_factory=dict)

    def add(self, event: dict[str, Any]) -> None:
        """Count one sent touchpoint."""
        customer = event["identifiers"]["customer_id"]
        self.touchpoints[customer] = self.touchpoints.get(customer, 0) + 1
        if event["kind"] == "sale":
            self.purchases[customer] = self.purchases.get(customer, 0) + 1
            self.spend[customer] = self.spend.get(customer, Decimal(0)) + Decimal(
                event["sale"]["amount"]
            )


def customer_stream(
    rig: Rig, count: int, people: int, seed: int, tag: str
) -> Iterator[dict[str, Any]]:
    """Yield population touchpoints that all name their customer (identity is unambiguous).

    Every event carries the person's customer id (and their email when they have one), so
    each person is one profile from the first event and no merge can blur the ground truth.
    """
    population = Population(PopulationSpec(people=people, seed=seed))
    owner = {p.anonymous_id: p for p in population.people}
    owner.update({p.email: p for p in population.people if p.email})
    owner.update({f"C-{seed}-{p.index:07d}": p for p in population.people})
    # Two people may draw the same phone number; either owner will do, the phone is dropped.
    owner.update({p.phone: p for p in reversed(population.people) if p.phone})
    for event in population.touchpoints(count):
        ids = event["identifiers"]
        person = next(owner[v] for v in ids.values() if v in owner)
        identifiers = {"customer_id": f"{tag}-{rig.run_id}-{person.index:05d}"}
        if person.email:
            email = f"{tag}.{rig.run_id}.{person.email}"
            identifiers["email"] = email
            rig.personal_data.add(email)
        event["identifiers"] = identifiers
        event["event_id"] = f"{tag}-{rig.run_id}-{event['event_id']}"
        if "sale" in event:
            event["sale"]["order_id"] = f"{tag}-{rig.run_id}-{event['sale']['order_id']}"
        event.pop("consent", None)
        yield event


async def profile_by_customer(
    client: httpx.AsyncClient, rig: Rig, customer_id: str
) -> dict[str, Any] | None:
    """Return a customer's golden record, or None when unknown."""
    response = await client.get(
        f"{rig.url('profile')}/v1/profiles/by/customer_id/{customer_id}", headers=READ
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def mismatches(
    client: httpx.AsyncClient, rig: Rig, truth: Truth
) -> dict[str, dict[str, Any]]:
    """Return the customers whose aggregates differ from the truth, with both sides."""
    wrong: dict[str, dict[str, Any]] = {}
    semaphore = asyncio.Semaphore(8)

    async def check(customer: str) -> None:
        async with semaphore:
            profile = await profile_by_customer(client, rig, customer)
        expected = {
            "touchpoint_count": truth.touchpoints[customer],
            "purchase_count": truth.purchases.get(customer, 0),
            "total_spend": truth.spend.get(customer, Decimal(0)),
        }
        if profile is None:
            wrong[customer] = {"expected": expected, "found": None}
            return
        aggregates = profile["aggregates"]
        found = {
            "touchpoint_count": aggregates["touchpoint_count"],
            "purchase_count": aggregates["purchase_count"],
            "total_spend": Decimal(str(aggregates["total_spend"])),
        }
        if found != expected:
            wrong[customer] = {"expected": expected, "found": found}

    await asyncio.gather(*(check(c) for c in truth.touchpoints))
    return wrong


# --- the session fixture -----------------------------------------------------------------


def _migrate(settings: PlatformSettings) -> None:
    """Run `migrate` for the services that have it (PostgreSQL needs it before `serve`)."""

    def has_migrate(service: str) -> bool:
        # Asking each CLI for its commands costs an interpreter start per service.
        found = importlib.util.find_spec(f"clientela.{service}.__main__")
        origin = found.origin if found is not None else None
        return origin is not None and '"migrate"' in Path(origin).read_text()

    runs = {
        service: subprocess.Popen(
            [sys.executable, "-m", f"clientela.{service}", "migrate"],
            env=settings.env_for(service),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for service in SERVICES
        if has_migrate(service)
    }
    for service, process in runs.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0 and b"invalid choice" not in output:
            raise RuntimeError(f"{service} migrate failed:\n{output.decode(errors='replace')}")


@pytest.fixture(scope="session")
def rig(
    postgres_url: str, redis_url: str, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    """Run the four services as processes on a private broker, PostgreSQL (proxied) and Redis."""
    state = tmp_path_factory.mktemp("reliability")
    log_dir = state / "logs"
    log_dir.mkdir()
    campaigns = state / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    pg = make_url(postgres_url)
    proxy = PgProxy(pg.host or "127.0.0.1", pg.port or 5432, log_dir / "pg-proxy.out")
    proxy.start()
    proxied = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    broker = EmbeddedBroker(prefer_port=0, log_path=log_dir / "broker.out").start()
    schema_prefix = f"t_{run_id}_rel_"
    cache_prefix = f"t{run_id}:rel:"
    settings = PlatformSettings(
        bootstrap_servers=broker.bootstrap_servers,
        data_dir=state / "data",
        topic_prefix=f"rel{run_id}.",
        database_url=proxied,
        schema_prefix=schema_prefix,
        cache_url=redis_url,
        ports={service: free_port() for service in SERVICES},
        # DEBUG, so the search for personal data in the logs covers every level.
        log_level="DEBUG",
        extra_env={
            "CLIENTELA_CACHE_KEY_PREFIX": cache_prefix,
            "CAMPAIGN_CAMPAIGNS_FILE": str(campaigns),
            "CAMPAIGN_GLOBAL_HOLDOUT_SHARE": "0",
            "CLIENTELA_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "CLIENTELA_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        },
    )
    platform = Platform(settings, log_dir=log_dir)
    rig = Rig(
        broker=broker,
        platform=platform,
        proxy=proxy,
        postgres_url=postgres_url,
        redis_url=redis_url,
        schema_prefix=schema_prefix,
        cache_prefix=cache_prefix,
        log_dir=log_dir,
        run_id=run_id,
    )
    try:
        started = time.monotonic()
        _migrate(settings)
        platform.start(timeout_s=180)
        print(f"reliability rig up in {time.monotonic() - started:.1f}s")
        yield rig
    finally:
        platform.stop()
        broker.stop()
        proxy.stop()
        for service in SERVICES:
            asyncio.run(drop_schema(postgres_url, schema_prefix + service))
        asyncio.run(_forget_keys(redis_url, cache_prefix))


async def _forget_keys(redis_url: str, prefix: str) -> None:
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


@pytest.fixture
def up(rig: Rig) -> Rig:
    """The rig with every service running and ready (a previous test may have killed one)."""
    rig.ensure_up()
    return rig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the full-size runs unless they were asked for."""
    if full_size():
        return
    skip = pytest.mark.skip(reason=f"full-size fault run: set {FULL_SIZE_ENV}=1 (make test-faults)")
    for item in items:
        if item.get_closest_marker("faults") is not None:
            item.add_marker(skip)
