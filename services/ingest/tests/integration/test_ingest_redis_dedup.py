"""The packed two-phase Redis claim, and the rate limit it spends, against a real Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio as redis_asyncio

from clientela.ingest.adapters.outbound.redis_deduplicator import RedisDeduplicator
from clientela.ingest.adapters.outbound.redis_rate_limiter import RedisRateLimiter
from clientela.ingest.application.ports import (
    DeduplicationUnavailableError,
    RateCharge,
    RateLimitedError,
)
from clientela.ingest.domain.rate_limit import RateLimiter
from clientela.shared.embedded_broker import free_port


async def test_claims_are_batched_confirmed_and_released(redis_url: str) -> None:
    dedup = RedisDeduplicator(redis_url, f"t{uuid.uuid4().hex[:8]}:", ttl_s=60)
    try:
        first = await dedup.claim(["a", "b", "with\nnewline"])
        await dedup.confirm(["a", "b", "with\nnewline"])
        second = await dedup.claim(["b", "c", "with\nnewline"])
        await dedup.release(["b", "with\nnewline"])
        third = await dedup.claim(["a", "b", "with\nnewline"])
    finally:
        await dedup.close()
    assert first == [True, True, True]
    assert second == [False, True, False]
    assert third == [False, True, True]


async def test_a_claim_that_was_never_confirmed_is_not_a_duplicate(redis_url: str) -> None:
    """A process killed between claim and publish must not turn the client's retry away."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    crashed = RedisDeduplicator(redis_url, prefix, ttl_s=60)
    retry = RedisDeduplicator(redis_url, prefix, ttl_s=60)
    try:
        assert await crashed.claim(["lost-in-flight", "done"]) == [True, True]
        await crashed.confirm(["done"])  # only this one reached the event log
        assert await retry.claim(["lost-in-flight", "done"]) == [True, False]
        await retry.confirm(["lost-in-flight"])
        assert await retry.claim(["lost-in-flight"]) == [False]
    finally:
        await crashed.close()
        await retry.close()


async def test_a_claim_writes_nothing_and_a_repeat_inside_the_window_is_a_duplicate(
    redis_url: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    dedup = RedisDeduplicator(redis_url, prefix, ttl_s=60)
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        assert await dedup.claim(["x", "y"]) == [True, True]
        assert await client.exists(f"{prefix}ingest:dedup:x") == 0
        assert await dedup.claim(["x"]) == [True]  # still claimable: nothing was confirmed
        await dedup.confirm(["x"])
        assert await client.get(f"{prefix}ingest:dedup:x") == b"a"
        assert 0 < await client.ttl(f"{prefix}ingest:dedup:x") <= 60
        assert await dedup.claim(["x", "y"]) == [False, True]
    finally:
        await client.aclose()
        await dedup.close()


async def test_a_claim_spends_the_shared_rate_limit_in_the_same_call(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    local = RateLimiter(10, 20, time.monotonic, overrides={"free": 0})
    limiter = RedisRateLimiter(redis_url, prefix, local)
    dedup = RedisDeduplicator(redis_url, prefix, ttl_s=60)
    try:
        assert await dedup.claim(["a", "b"], RateCharge(limiter, "pos", 15)) == [True, True]
        # The bucket is the limiter's own: ~5 of the 20 are left, for either of them.
        assert 0.2 < await limiter.take("pos", 10) <= 0.5
        with pytest.raises(RateLimitedError) as refused:
            await dedup.claim(["c"], RateCharge(limiter, "pos", 10))
        assert refused.value.retry_after_s == 1
        assert await dedup.claim([], RateCharge(limiter, "other", 20)) == []
        with pytest.raises(RateLimitedError):
            await dedup.claim([], RateCharge(limiter, "other", 1))
        assert await dedup.claim(["d"], RateCharge(limiter, "free", 10**6)) == [True]
    finally:
        await limiter.close()
        await dedup.close()


async def test_without_redis_a_charged_claim_limits_per_process_then_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    limiter = RedisRateLimiter(url, "t:", RateLimiter(10, 20, time.monotonic))
    dedup = RedisDeduplicator(url, "t:", ttl_s=60)
    try:
        with pytest.raises(DeduplicationUnavailableError):
            await dedup.claim(["a"], RateCharge(limiter, "pos", 20))
        with pytest.raises(RateLimitedError):  # the process's own bucket is empty now
            await dedup.claim(["a"], RateCharge(limiter, "pos", 10))
    finally:
        await limiter.close()
        await dedup.close()
    assert sum("per-process limits apply" in r.getMessage() for r in caplog.records) == 1
