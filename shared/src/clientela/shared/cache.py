"""A small cache interface with Redis (production) and in-process (embedded) backends."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as redis_asyncio

from clientela.shared.settings import CacheSettings

# Claims a batch of keys in one round trip: SET NX EX for each, returns 1 where newly set.
_CLAIM_SCRIPT = """
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, '1', 'NX', 'EX', ttl) then out[i] = 1 else out[i] = 0 end
end
return out
"""
# A value and the value of the key it names (prefix + value), in one round trip. The second
# key is computed here, so it is not declared in KEYS: fine on one Redis (and a replica set),
# not on a Redis Cluster, where both keys would have to share a hash slot.
_VIA_SCRIPT = """
local first = redis.call('GET', KEYS[1])
if not first then return {false, false} end
return {first, redis.call('GET', ARGV[1] .. first)}
"""


class CacheUnavailableError(Exception):
    """The cache backend could not be reached."""


class Cache(Protocol):
    """What services need of a cache: batched claims for dedup, and plain get/set."""

    async def claim_many(self, keys: Sequence[str], ttl_s: int) -> list[bool]:
        """Set each key if absent; return True where this call set it."""
        ...

    async def release_many(self, keys: Sequence[str]) -> None:
        """Delete keys (undo claims whose work failed)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """Return the value of a key, or None."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        """Set a key, optionally expiring."""
        ...

    async def get_via(self, key: str, prefix: str) -> tuple[bytes | None, bytes | None]:
        """Return a key's value and the value of the key prefix + that value (one round trip)."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Set several expiring keys (one round trip)."""
        ...

    async def ping(self) -> bool:
        """Return whether the cache answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """In-process cache for the embedded default; expiry is checked on access."""

    def __init__(self, key_prefix: str = "", max_keys: int = 1_000_000) -> None:
        self._prefix = key_prefix
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._max = max_keys

    def _alive(self, key: str, now: float) -> bool:
        item = self._data.get(key)
        if item is None:
            return False
        expires = item[1]
        if expires is not None and expires <= now:
            del self._data[key]
            return False
        return True

    def _evict(self, now: float) -> None:
        if len(self._data) < self._max:
            return
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[key]
        while len(self._data) >= self._max:
            # Oldest insertions first: dicts keep insertion order.
            del self._data[next(iter(self._data))]

    async def claim_many(self, keys: Sequence[str], ttl_s: int) -> list[bool]:
        """Set each key if absent; return True where this call set it."""
        now = time.monotonic()
        self._evict(now)
        out = []
        for key in keys:
            full = self._prefix + key
            if self._alive(full, now):
                out.append(False)
            else:
                self._data[full] = (b"1", now + ttl_s)
                out.append(True)
        return out

    async def release_many(self, keys: Sequence[str]) -> None:
        """Delete keys."""
        for key in keys:
            self._data.pop(self._prefix + key, None)

    async def get(self, key: str) -> bytes | None:
        """Return the value of a key, or None."""
        full = self._prefix + key
        return self._data[full][0] if self._alive(full, time.monotonic()) else None

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        """Set a key, optionally expiring."""
        now = time.monotonic()
        self._evict(now)
        self._data[self._prefix + key] = (value, now + ttl_s if ttl_s else None)

    async def get_via(self, key: str, prefix: str) -> tuple[bytes | None, bytes | None]:
        """Return a key's value and the value of the key prefix + that value."""
        first = await self.get(key)
        return (first, None) if first is None else (first, await self.get(prefix + first.decode()))

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Set several expiring keys."""
        for key, value in items:
            await self.set(key, value, ttl_s)

    async def ping(self) -> bool:
        """Return True: the process is alive."""
        return True

    async def close(self) -> None:
        """Drop everything."""
        self._data.clear()


class RedisCache:
    """Redis-backed cache; claims go through one Lua call per batch."""

    def __init__(self, url: str, key_prefix: str = "") -> None:
        self._client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._prefix = key_prefix
        self._claim = self._client.register_script(_CLAIM_SCRIPT)
        self._via = self._client.register_script(_VIA_SCRIPT)

    async def claim_many(self, keys: Sequence[str], ttl_s: int) -> list[bool]:
        """Set each key if absent; return True where this call set it."""
        if not keys:
            return []
        try:
            result = await self._claim(keys=[self._prefix + k for k in keys], args=[ttl_s])
        except (redis_asyncio.RedisError, OSError) as exc:
            raise CacheUnavailableError(type(exc).__name__) from exc
        return [bool(x) for x in result]

    async def release_many(self, keys: Sequence[str]) -> None:
        """Delete keys."""
        if keys:
            try:
                await self._client.delete(*[self._prefix + k for k in keys])
            except (redis_asyncio.RedisError, OSError) as exc:
                raise CacheUnavailableError(type(exc).__name__) from exc

    async def get(self, key: str) -> bytes | None:
        """Return the value of a key, or None."""
        value = await self._client.get(self._prefix + key)
        return value if isinstance(value, bytes | None) else str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        """Set a key, optionally expiring."""
        await self._client.set(self._prefix + key, value, ex=ttl_s)

    async def get_via(self, key: str, prefix: str) -> tuple[bytes | None, bytes | None]:
        """Return a key's value and the value of the key prefix + that value (one Lua call)."""
        # A Lua false (no such key) arrives as None; an empty value stays an empty value.
        first, second = await self._via(keys=[self._prefix + key], args=[self._prefix + prefix])
        return first, second

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Set several expiring keys in one pipelined round trip (not atomic: a cache fill)."""
        if not items:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key, value in items:
                pipe.set(self._prefix + key, value, ex=ttl_s)
            await pipe.execute()

    async def ping(self) -> bool:
        """Return whether Redis answers."""
        try:
            return bool(await self._client.ping())
        except (redis_asyncio.RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def make_cache(settings: CacheSettings) -> Cache:
    """Build the cache the settings select."""
    if settings.url.startswith("memory://"):
        return MemoryCache(settings.key_prefix)
    if settings.url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(settings.url, settings.key_prefix)
    raise ValueError(f"unsupported cache url {settings.url!r}: use memory:// or redis://")
