"""Fixtures that run the four services as real processes on each backend set."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from clientela.platform.launcher import SERVICES, Platform, PlatformSettings
from clientela.shared.embedded_broker import free_port
from clientela.shared.settings import KafkaSettings
from clientela.shared.testing import drop_schema

# Holdouts are deterministic by profile id, and a test cannot choose the id it gets, so the
# end-to-end campaign has no holdout; holdout behaviour is covered by the campaign's own tests.
E2E_CAMPAIGNS = """
[[campaigns]]
id = "e2e-welcome"
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


@pytest.fixture(scope="session", params=["embedded", "production"])
def platform(
    request: pytest.FixtureRequest,
    kafka_settings: KafkaSettings,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    """Run ingest, profile, scoring and campaign as processes; yield the running platform."""
    backend: str = request.param
    state = tmp_path_factory.mktemp(f"platform-{backend}")
    campaigns = state / "campaigns.toml"
    campaigns.write_text(E2E_CAMPAIGNS)
    settings = PlatformSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers,
        data_dir=state / "data",
        topic_prefix=f"{kafka_settings.topic_prefix}{backend}.",
        ports={service: free_port() for service in SERVICES},
        extra_env={
            # Redis outlives the run: a private key space keeps earlier runs' dedup keys out.
            "CLIENTELA_CACHE_KEY_PREFIX": f"t{run_id}:{backend}:",
            "CAMPAIGN_CAMPAIGNS_FILE": str(campaigns),
            "CAMPAIGN_GLOBAL_HOLDOUT_SHARE": "0",
            "CLIENTELA_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "CLIENTELA_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        },
    )
    schema_prefix = f"t_{run_id}_e2e_"
    if backend == "production":
        settings.database_url = request.getfixturevalue("postgres_url")
        settings.schema_prefix = schema_prefix
        settings.cache_url = request.getfixturevalue("redis_url")
    running = Platform(settings, log_dir=state / "logs")
    try:
        running.start(timeout_s=120)
        yield running
    finally:
        running.stop()
        if settings.database_url:
            for service in SERVICES:
                asyncio.run(drop_schema(settings.database_url, schema_prefix + service))
