"""The packed Redis claim against a real Redis."""

from __future__ import annotations

import uuid

from clientela.ingest.adapters.outbound.redis_deduplicator import RedisDeduplicator


async def test_claims_are_batched_remembered_and_released(redis_url: str) -> None:
    dedup = RedisDeduplicator(redis_url, f"t{uuid.uuid4().hex[:8]}:", ttl_s=60)
    try:
        first = await dedup.claim(["a", "b", "with\nnewline"])
        second = await dedup.claim(["b", "c", "with\nnewline"])
        await dedup.release(["b", "with\nnewline"])
        third = await dedup.claim(["a", "b", "with\nnewline"])
    finally:
        await dedup.close()
    assert first == [True, True, True]
    assert second == [False, True, False]
    assert third == [False, True, True]
