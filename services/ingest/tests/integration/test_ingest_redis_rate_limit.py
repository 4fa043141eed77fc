"""Rate limits shared through a real Redis: two processes spend from one budget per key."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx
import pytest
import redis.asyncio as redis_asyncio

from clientela.ingest.adapters.outbound.redis_rate_limiter import RedisRateLimiter
from clientela.ingest.config import IngestSettings
from clientela.ingest.domain.rate_limit import RateLimiter
from clientela.ingest.wiring import create_app
from clientela.shared.embedded_broker import free_port
from clientela.shared.settings import CacheSettings, KafkaSettings


def _local() -> RateLimiter:
    # Slow rates, so the time between two calls on a loaded machine barely refills anything.
    return RateLimiter(10, 20, time.monotonic, overrides={"bulk": 100, "free": 0})


async def test_two_processes_share_one_bucket_per_key(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    # Two limiters with their own connections stand for two worker processes.
    first, second = (
        RedisRateLimiter(redis_url, prefix, _local()),
        RedisRateLimiter(redis_url, prefix, _local()),
    )
    try:
        assert await first.take("pos", 15) == 0
        wait = await second.take("pos", 10)  # only ~5 of the 20 are left
        assert 0.2 < wait <= 0.5
        assert await second.take("other", 20) == 0  # another key has its own bucket
        await asyncio.sleep(wait + 0.3)
        assert await second.take("pos", 10) == 0  # refilled at 10 events/s
        assert await first.take("bulk", 150) == 0  # an override: 100/s, burst 200
        assert await first.take("bulk", 100) > 0
        assert await first.take("free", 10**6) == 0  # rate 0: unlimited
    finally:
        await first.close()
        await second.close()


async def test_a_batch_larger_than_the_burst_drains_the_bucket(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url, f"t{uuid.uuid4().hex[:8]}:", _local())
    try:
        assert await limiter.take("pos", 5000) == 0
        assert 0.05 < await limiter.take("pos", 1) <= 0.1
    finally:
        await limiter.close()


async def test_without_redis_the_process_limits_alone(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", "t:", _local())
    try:
        assert await limiter.take("pos", 20) == 0
        assert await limiter.take("pos", 10) > 0  # the process's own bucket is empty
    finally:
        await limiter.close()
    assert sum("per-process limits apply" in r.getMessage() for r in caplog.records) == 1


async def test_two_ingest_processes_on_one_redis_share_the_rate_limit(
    kafka_settings: KafkaSettings, redis_url: str
) -> None:
    settings = IngestSettings(
        kafka=kafka_settings,
        cache=CacheSettings(url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}:"),
        consume_raw=False,
        rate_limit_events_per_s=1,
        rate_limit_burst=3,
    )
    key = settings.auth.dev_write_key.get_secret_value()
    visit = {
        "kind": "web_visit",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"anonymous_id": "rl-1"},
        "web_visit": {},
    }
    answers = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):  # two app instances stand for two worker processes
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest")
            )
            response = await http.post(
                "/v1/touchpoints",
                json=[{**visit, "event_id": f"rl-{uuid.uuid4()}"} for _ in range(2)],
                headers={"Authorization": f"Bearer {key}"},
            )
            answers.append(response.status_code)
    assert answers == [200, 429]  # 2 + 2 events over a shared burst of 3


async def test_a_request_refused_by_the_shared_limit_is_counted_and_accepts_nothing(
    kafka_settings: KafkaSettings, redis_url: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    settings = IngestSettings(
        kafka=kafka_settings,
        cache=CacheSettings(url=redis_url, key_prefix=prefix),
        consume_raw=False,
        rate_limit_events_per_s=1,
        rate_limit_burst=3,
    )
    write = {"Authorization": f"Bearer {settings.auth.dev_write_key.get_secret_value()}"}
    read = {"Authorization": f"Bearer {settings.auth.dev_read_key.get_secret_value()}"}
    visit = {
        "kind": "web_visit",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"anonymous_id": "rl-2"},
        "web_visit": {},
    }
    refused_ids = [f"rl-{uuid.uuid4()}" for _ in range(2)]
    app = create_app(settings)
    client = redis_asyncio.Redis.from_url(redis_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest") as http,
    ):
        first = await http.post(
            "/v1/touchpoints",
            json=[{**visit, "event_id": f"rl-{uuid.uuid4()}"} for _ in range(2)],
            headers=write,
        )
        refused = await http.post(
            "/v1/touchpoints", json=[{**visit, "event_id": i} for i in refused_ids], headers=write
        )
        metrics = (await http.get("/metrics", headers=read)).text
    try:
        stored = [await client.get(f"{prefix}ingest:dedup:{i}") for i in refused_ids]
    finally:
        await client.aclose()
    assert first.status_code == 200
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert 'clientela_ingest_rate_limited_total{key="dev-write"} 1.0' in metrics
    assert stored == [None, None]
