"""The cache interface behaves the same on Redis and in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from clientela.shared.cache import Cache, make_cache, unversioned, versioned
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


async def test_get_via_follows_a_value_to_the_keys_it_names(cache: Cache) -> None:
    assert await cache.get_via("owner:x", ["id:", "ids:"]) == (None, [None, None])
    await cache.set_many(
        [("owner:x", b"p1"), ("owner:y", b"p2"), ("id:p1", b"state"), ("ids:p1", b"")], ttl_s=60
    )
    assert await cache.get_via("owner:x", ["id:", "ids:"]) == (b"p1", [b"state", b""])
    # The value names keys that are absent (expired, or deleted by a writer).
    assert await cache.get_via("owner:y", ["id:", "ids:"]) == (b"p2", [None, None])
    assert await cache.get_many(["id:p1", "id:p2", "owner:y"]) == [b"state", None, b"p2"]


async def test_a_versioned_value_gives_way_only_to_a_later_or_fuller_one(cache: Cache) -> None:
    await cache.put_newer_many([("a", 3, b"three"), ("b", 5, b"")], ttl_s=60)
    assert unversioned(await cache.get("a")) == (3, b"three")
    # An earlier version (a reader's fill that lost a race with a writer) is dropped; a later
    # one replaces; at the same version, a value replaces a bare mark, not the other way.
    await cache.put_newer_many([("a", 2, b"two"), ("b", 5, b"five")], ttl_s=60)
    assert [unversioned(v) for v in await cache.get_many(["a", "b"])] == [
        (3, b"three"),
        (5, b"five"),
    ]
    await cache.put_newer_many([("a", 4, b""), ("b", 5, b"")], ttl_s=60)
    assert [unversioned(v) for v in await cache.get_many(["a", "b"])] == [(4, b""), (5, b"five")]
    # A plain value held under the key is replaced; versions are compared as numbers.
    await cache.set("c", b"plain", ttl_s=60)
    await cache.put_newer_many([("c", 9, b"nine"), ("d", 10, b"ten"), ("d", 9, b"nine")], 60)
    assert await cache.get_many(["c", "d"]) == [versioned(9, b"nine"), versioned(10, b"ten")]
    assert unversioned(b"plain") is None


async def test_a_fence_keeps_earlier_versions_out(cache: Cache) -> None:
    await cache.put_newer_many([("held", 3, b"three")], ttl_s=60)
    assert await cache.fence_many([("held", 5), ("absent", 5), ("absent", 4)]) == [
        True,
        False,
        False,
    ]
    # A fill read before the fenced change does not land, held or not; the fenced version
    # itself, or a later one, does.
    await cache.put_newer_many([("held", 4, b"four"), ("absent", 4, b"four")], ttl_s=60)
    assert [unversioned(v) for v in await cache.get_many(["held", "absent"])] == [
        (3, b"three"),
        None,
    ]
    await cache.put_newer_many([("held", 5, b"five"), ("absent", 6, b"six")], ttl_s=60)
    assert [unversioned(v) for v in await cache.get_many(["held", "absent"])] == [
        (5, b"five"),
        (6, b"six"),
    ]
    # Releasing a key drops its fence too (nothing of it is left behind).
    await cache.fence_many([("gone", 9)])
    await cache.release_many(["gone"])
    await cache.put_newer_many([("gone", 1, b"one")], ttl_s=60)
    assert unversioned(await cache.get("gone")) == (1, b"one")


async def test_an_array_held_at_its_base_version_is_extended_others_are_marked(
    cache: Cache,
) -> None:
    await cache.put_newer_many(
        [
            ("empty", 1, b"[]"),
            ("one", 1, b'[["a","1"]]'),
            ("old", 1, b'["x"]'),
            ("same", 1, b"[1]"),
        ],
        ttl_s=60,
    )
    await cache.extend_many(
        [
            ("empty", 1, 2, b'["b","2"]'),
            ("one", 1, 2, b'["b","2"],["c","3"]'),
            ("old", 2, 3, b'["y"]'),
            ("absent", 1, 2, b'["z"]'),
            ("same", 1, 2, b""),
        ],
        ttl_s=60,
    )
    keys = ["empty", "one", "old", "absent", "same"]
    assert [unversioned(v) for v in await cache.get_many(keys)] == [
        (2, b'[["b","2"]]'),
        (2, b'[["a","1"],["b","2"],["c","3"]]'),
        (3, b""),
        None,
        (2, b"[1]"),
    ]
