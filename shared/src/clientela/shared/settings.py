"""Settings of the shared components; each service composes them under its own env prefix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clientela.shared.contracts import TopicSpec

DEV_WRITE_KEY = "dev-write-key"
DEV_READ_KEY = "dev-read-key"
DEV_ADMIN_KEY = "dev-admin-key"


class KafkaSettings(BaseSettings):
    """Broker connection and client tuning (env prefix CLIENTELA_KAFKA_)."""

    model_config = SettingsConfigDict(env_prefix="CLIENTELA_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", description="Prepended to every topic name.")
    client_id: str = "clientela"
    # Apache Kafka supports idempotent producers; the embedded broker does not, hence off.
    enable_idempotence: bool = False
    producer: Literal["aiokafka", "confluent"] = Field(
        default="confluent",
        description="Client of every publisher: confluent (librdkafka, a fraction of aiokafka's "
        "CPU per record) or aiokafka.",
    )
    linger_ms: int = Field(default=5, ge=0)
    compression: Literal["none", "gzip", "lz4", "zstd"] = Field(
        default="lz4",
        description="Compression of every produced batch: lz4 halves the broker's CPU per "
        "record and costs the clients less than the bytes it saves them.",
    )
    max_batch_bytes: int = Field(default=262_144, ge=1024)
    request_timeout_ms: int = Field(default=15_000, ge=1000)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=2_000, ge=100)
    max_poll_records: int = Field(default=500, ge=1)
    poll_timeout_ms: int = Field(default=100, ge=1)
    create_topics: bool = Field(default=True, description="Create missing topics at start.")

    def topic(self, spec: TopicSpec) -> str:
        """Return the physical name of a registered topic."""
        return self.topic_prefix + spec.name


class DatabaseSettings(BaseSettings):
    """Database selection (env prefix CLIENTELA_DATABASE_); SQLite files by default."""

    model_config = SettingsConfigDict(env_prefix="CLIENTELA_DATABASE_", extra="ignore")

    url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; unset means a SQLite file per service in data_dir.",
    )
    schema_name: str | None = Field(
        default=None, description="PostgreSQL schema; unset means schema_prefix + service name."
    )
    schema_prefix: str = Field(default="", description="Prepended to the service name.")
    data_dir: Path = Path(".clientela/data")
    pool_size: int = Field(default=10, ge=1)
    pool_pre_ping: bool = Field(
        default=True, description="Check each pooled connection before use (one round trip)."
    )
    # A database that stops answering must turn into a prompt error (503, a retried batch),
    # never a request or a consumer that waits as long as the outage lasts.
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="PostgreSQL: give up opening a connection after this."
    )
    command_timeout_s: float | None = Field(
        default=10.0,
        gt=0,
        description="PostgreSQL: give up waiting for a statement after this; unset: never "
        "(for long schema migrations).",
    )
    pool_timeout_s: float = Field(
        default=5.0, gt=0, description="PostgreSQL: give up waiting for a free pooled connection."
    )
    echo: bool = False

    def resolved_url(self, service: str) -> str:
        """Return the URL the service connects to."""
        if self.url:
            return self.url
        return f"sqlite+aiosqlite:///{self.data_dir / f'{service}.db'}"

    def resolved_schema(self, service: str) -> str:
        """Return the PostgreSQL schema the service's tables live in."""
        return self.schema_name or f"{self.schema_prefix}{service}"


class CacheSettings(BaseSettings):
    """Cache selection (env prefix CLIENTELA_CACHE_): memory:// or redis://host:port/db."""

    model_config = SettingsConfigDict(env_prefix="CLIENTELA_CACHE_", extra="ignore")

    url: str = "memory://"
    key_prefix: str = "clientela:"


class ApiKeySpec(BaseModel):
    """A stored API key: its SHA-256 and its scopes; the key itself is never stored."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: frozenset[Literal["write", "read", "admin"]]


class AuthSettings(BaseSettings):
    """API keys (env prefix CLIENTELA_); development keys apply only in development."""

    model_config = SettingsConfigDict(env_prefix="CLIENTELA_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    dev_write_key: SecretStr = SecretStr(DEV_WRITE_KEY)
    dev_read_key: SecretStr = SecretStr(DEV_READ_KEY)
    dev_admin_key: SecretStr = SecretStr(DEV_ADMIN_KEY)
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list, description="JSON list of {name, sha256, scopes}."
    )
    metrics_scope: Literal["read", "admin"] | None = Field(
        default=None,
        description="Scope a key needs to read /metrics; unset: /metrics is open, like /healthz.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Self:
        if self.environment == "production" and not self.api_keys:
            raise ValueError("CLIENTELA_API_KEYS must list hashed keys in production")
        return self


class ServiceSettings(BaseSettings):
    """What every service has: an HTTP listener, the broker, a database, a cache and keys."""

    model_config = SettingsConfigDict(extra="ignore")
    service_name: ClassVar[str] = "service"

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = "INFO"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
