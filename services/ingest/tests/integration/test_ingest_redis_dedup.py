"""The packed two-phase Redis claim against a real Redis."""

from __future__ import annotations

import uuid

from clientela.ingest.adapters.outbound.redis_deduplicator import RedisDeduplicator


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
