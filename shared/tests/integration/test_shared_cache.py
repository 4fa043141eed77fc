"""The cache interface behaves the same on Redis and in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from clientela.shared.cache import Cache, make_cache
from clientela.shared.settings import CacheSettings


@pytest.fixture
async def cache(cache_settings: CacheSettings) -> AsyncIterator[Cache]:
    """Return a cache on a private key space of the selected backend."""
    built = make_cache(cache_settings)
    yield built
    await built.close()


async def test_claims_are_granted_once_per_key(cache: Cache) -> None:
    assert await cache.claim_many(["a", "b"], ttl_s=60) == [True, True]
    assert await cache.claim_many(["b", "c", "c"], ttl_s=60) == [False, True, False]


async def test_released_claims_can_be_claimed_again(cache: Cache) -> None:
    await cache.claim_many(["k"], ttl_s=60)
    await cache.release_many(["k"])
    assert await cache.claim_many(["k"], ttl_s=60) == [True]


async def test_claims_expire(cache: Cache) -> None:
    assert await cache.claim_many(["short"], ttl_s=1) == [True]
    await asyncio.sleep(1.2)
    assert await cache.claim_many(["short"], ttl_s=1) == [True]


async def test_get_set_and_ping(cache: Cache) -> None:
    assert await cache.get("missing") is None
    await cache.set("key", b"value", ttl_s=60)
    assert await cache.get("key") == b"value"
    assert await cache.ping()


async def test_get_via_follows_a_value_to_the_key_it_names(cache: Cache) -> None:
    assert await cache.get_via("owner:x", "id:") == (None, None)
    await cache.set_many([("owner:x", b"p1"), ("owner:y", b"p2"), ("id:p1", b"state")], ttl_s=60)
    assert await cache.get_via("owner:x", "id:") == (b"p1", b"state")
    # The value names a key that is absent (expired, or deleted by a writer).
    assert await cache.get_via("owner:y", "id:") == (b"p2", None)


async def test_set_many_expires(cache: Cache) -> None:
    await cache.set_many([("brief", b"1")], ttl_s=1)
    assert await cache.get("brief") == b"1"
    await asyncio.sleep(1.2)
    assert await cache.get("brief") is None


async def test_concurrent_claims_grant_each_key_to_one_caller(cache: Cache) -> None:
    keys = [f"race-{i}" for i in range(200)]
    results = await asyncio.gather(*(cache.claim_many(keys, ttl_s=60) for _ in range(5)))
    for i in range(len(keys)):
        assert sum(r[i] for r in results) == 1
