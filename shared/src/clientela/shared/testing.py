"""Pytest plugin: session fixtures for the broker, PostgreSQL and Redis, isolated per run.

Each resource comes from settings when given (CLIENTELA_TEST_KAFKA_BOOTSTRAP,
CLIENTELA_TEST_POSTGRES_URL, CLIENTELA_TEST_REDIS_URL), else from the local default port when
something answers there, else from testcontainers when a Docker engine runs, else (broker only)
from the embedded broker; a test is skipped with the reason only when none can be had.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from clientela.shared.embedded_broker import EmbeddedBroker
from clientela.shared.settings import CacheSettings, DatabaseSettings, KafkaSettings

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=0.5
        ):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    """Return whether a Docker engine answers (not merely whether the client is installed)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def run_id() -> str:
    """Return an id unique to this test run, used to isolate topics, schemas and keys."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return bootstrap servers of a real Kafka-protocol broker for the whole session."""
    configured = os.environ.get("CLIENTELA_TEST_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    try:
        broker = EmbeddedBroker(prefer_port=0, log_path=tmp_path_factory.mktemp("broker") / "log")
        broker.start()
    except Exception as exc:  # the binary may be missing on an exotic platform
        pytest.skip(f"no Kafka broker: not configured, no Docker engine, embedded failed: {exc}")
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str, run_id: str) -> KafkaSettings:
    """Return Kafka settings whose topics are private to this run."""
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"t{run_id}.",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Return the URL of a real PostgreSQL server."""
    url = os.environ.get("CLIENTELA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    if _answers(url, 5432):
        yield url
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="asyncpg") as container:
            yield container.get_connection_url()
        return
    pytest.skip(f"no PostgreSQL: nothing answers at {url} and no Docker engine runs")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Return the URL of a real Redis server."""
    url = os.environ.get("CLIENTELA_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if _answers(url, 6379):
        yield url
        return
    if docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    pytest.skip(f"no Redis: nothing answers at {url} and no Docker engine runs")


async def drop_schema(url: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_settings(
    request: pytest.FixtureRequest, tmp_path: Path, run_id: str
) -> AsyncIterator[DatabaseSettings]:
    """Return database settings for a fresh, private store: SQLite file or PostgreSQL schema."""
    if request.param == "sqlite":
        yield DatabaseSettings(
            url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", data_dir=tmp_path
        )
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = f"t_{run_id}_{uuid.uuid4().hex[:8]}"
    yield DatabaseSettings(url=url, schema_name=schema, pool_size=5)
    await drop_schema(url, schema)


@pytest.fixture(params=["memory", "redis"])
def cache_settings(request: pytest.FixtureRequest, run_id: str) -> CacheSettings:
    """Return cache settings for a private key space: in-process or Redis."""
    prefix = f"t{run_id}:{uuid.uuid4().hex[:8]}:"
    if request.param == "memory":
        return CacheSettings(url="memory://", key_prefix=prefix)
    url: str = request.getfixturevalue("redis_url")
    return CacheSettings(url=url, key_prefix=prefix)


class SettableClock:
    """A clock a test sets and moves: call it for the time, assign `now` to move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
