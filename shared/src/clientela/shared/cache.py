"""A small cache interface with Redis (production) and in-process (embedded) backends."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

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
# A value and the values of the keys it names (each prefix + value), in one round trip. Those
# keys are computed here, so they are not declared in KEYS: fine on one Redis (and a replica
# set), not on a Redis Cluster, where all the keys would have to share a hash slot.
_VIA_SCRIPT = """
local first = redis.call('GET', KEYS[1])
local out = {first}
for i, prefix in ipairs(ARGV) do
  if first then out[i + 1] = redis.call('GET', prefix .. first) else out[i + 1] = false end
end
return out
"""
FENCE_S = 10
"""A fence (fence_many) holds for at least this long, and at most twice as long."""

# Versioned values ("<version>:<value>"; "<version>:" alone is a mark): the version is read
# with GETRANGE and the size with STRLEN, so a held value is never copied into the script.
# Fences are hashes of key -> version, one per FENCE_S period of the server's clock (the
# current and the previous one are checked), so one HSET fences a batch.
_LUA_PRELUDE = f"""
local FENCE_S = {FENCE_S}
local function held_at(key)
  local head = redis.call('GETRANGE', key, 0, 20)
  local at = tonumber(string.match(head, '^(%d+):'))
  if not at then return nil, 0 end
  return at, redis.call('STRLEN', key)
end
local function period()
  return math.floor(tonumber(redis.call('TIME')[1]) / FENCE_S)
end
"""
# Sets each key unless it holds a later version, or the same version at least as long, or
# a later version of it was fenced.
_PUT_NEWER_SCRIPT = (
    _LUA_PRELUDE
    + """
local ttl = tonumber(ARGV[1])
local now = period()
local fences = {ARGV[2] .. now, ARGV[2] .. (now - 1)}
for i, key in ipairs(KEYS) do
  local new = ARGV[i + 2]
  local version = tonumber(string.match(new, '^(%d+):'))
  local fenced = 0
  for _, fence in ipairs(fences) do
    fenced = math.max(fenced, tonumber(redis.call('HGET', fence, key) or 0))
  end
  local at, size = held_at(key)
  if fenced <= version
     and (not at or at < version or (at == version and #new > size)) then
    redis.call('SET', key, new, 'EX', ttl)
  end
end
return 0
"""
)
# Where a key holds exactly the base version of a JSON array, appends the items (ARGV: base,
# version, items as array elements, maybe none) and restamps it; where it holds another
# earlier version, leaves a mark of the new one.
_EXTEND_SCRIPT = (
    _LUA_PRELUDE
    + """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local base, version = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local items = ARGV[3 * i + 1]
  local held = redis.call('GET', key)
  local at, value = nil, nil
  if held then at, value = string.match(held, '^(%d+):(.*)$') end
  at = tonumber(at)
  if at == base and (items == '' or value == '[]') then
    redis.call('SET', key, version .. ':' .. (items == '' and value or '[' .. items .. ']'),
      'EX', ttl)
  elseif at == base and string.sub(value, -1) == ']' then
    redis.call('SET', key, version .. ':' .. string.sub(value, 1, -2) .. ',' .. items .. ']',
      'EX', ttl)
  elseif at and at < version then
    redis.call('SET', key, version .. ':', 'EX', ttl)
  end
end
return 0
"""
)
# Deletes keys and their fences (an erased person's profile id leaves no field behind).
_RELEASE_SCRIPT = (
    _LUA_PRELUDE
    + """
local now = period()
for first = 1, #KEYS, 1000 do
  local last = math.min(first + 999, #KEYS)
  redis.call('DEL', unpack(KEYS, first, last))
  redis.call('HDEL', ARGV[1] .. now, unpack(KEYS, first, last))
  redis.call('HDEL', ARGV[1] .. (now - 1), unpack(KEYS, first, last))
end
return 0
"""
)
# Fences each key at a version (ARGV: fence prefix, then "key NUL version NUL" repeated: one
# argument, which the client packs far faster than one per key); returns, per key, "1" where
# it is held, "0" where not.
_FENCE_SCRIPT = (
    _LUA_PRELUDE
    + """
local now = period()
local fence = ARGV[1] .. now
local args, held = {}, {}
for key, version in string.gmatch(ARGV[2], '([^%z]+)%z(%d+)%z') do
  args[#args + 1] = key
  args[#args + 1] = version
  held[#held + 1] = redis.call('EXISTS', key)
end
for first = 1, #args, 2000 do
  redis.call('HSET', fence, unpack(args, first, math.min(first + 1999, #args)))
end
-- Read through the next period, then gone: only the current and the previous one exist.
redis.call('EXPIREAT', fence, (now + 2) * FENCE_S)
return table.concat(held)
"""
)


_FENCES = "fence:"


def versioned(version: int, value: bytes) -> bytes:
    """Return a value stamped with its version, as put_newer_many stores it."""
    return b"%d:%b" % (version, value)


def unversioned(stored: bytes | None) -> tuple[int, bytes] | None:
    """Return the version and value of a versioned value (None: absent or not versioned)."""
    if stored is None:
        return None
    head, sep, value = stored.partition(b":")
    if not sep or not head.isdigit():
        return None
    return int(head), value


def _keeps(held: bytes | None, new: bytes) -> bool:
    """Return whether a held versioned value wins over a new one (see put_newer_many)."""
    held_at, new_at = unversioned(held), unversioned(new)
    if held_at is None or new_at is None:
        return False
    return held_at[0] > new_at[0] or (held_at[0] == new_at[0] and len(new) <= len(held or b""))


class CacheUnavailableError(Exception):
    """The cache backend could not be reached."""


class Cache(Protocol):
    """What services need of a cache: batched claims for dedup, and plain get/set."""

    async def claim_many(self, keys: Sequence[str], ttl_s: int) -> list[bool]:
        """Set each key if absent; return True where this call set it."""
        ...

    async def release_many(self, keys: Sequence[str]) -> None:
        """Delete keys, and their fences (undo claims whose work failed, forget entries)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """Return the value of a key, or None."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        """Set a key, optionally expiring."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of several keys (one round trip)."""
        ...

    async def get_via(
        self, key: str, prefixes: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return a key's value and the values of the keys each prefix + that value names
        (one round trip; all None when the first key is absent)."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Set several expiring keys (one round trip)."""
        ...

    async def put_newer_many(self, items: Sequence[tuple[str, int, bytes]], ttl_s: int) -> None:
        """Store versioned values (one round trip): each key unless it holds a later version,
        or the same version with a longer value (an empty value marks a version whose value
        is not known, and gives way to that value), or a later version of it was fenced.
        Read them back with `unversioned`."""
        ...

    async def fence_many(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        """Fence each key (no NUL in it) at a version for FENCE_S (one round trip): meanwhile
        no put_newer_many of an earlier version of it lands; return whether each key is held.
        A later fence of a key replaces an earlier one, even at a lower version (writers that
        fence in the order of their commits never do that)."""
        ...

    async def extend_many(self, items: Sequence[tuple[str, int, int, bytes]], ttl_s: int) -> None:
        """Append to versioned JSON arrays (one round trip): each item is (key, base version,
        new version, elements as JSON array items, possibly none); a key holding exactly the
        base version gets them and the new version, one holding an earlier version than the
        new one becomes a mark of it (its value is not known), an absent one stays absent."""
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
        # Fenced keys: (version, until when).
        self._fences: dict[str, tuple[int, float]] = {}

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
        """Delete keys and their fences."""
        for key in keys:
            self._data.pop(self._prefix + key, None)
            self._fences.pop(self._prefix + key, None)

    async def get(self, key: str) -> bytes | None:
        """Return the value of a key, or None."""
        full = self._prefix + key
        return self._data[full][0] if self._alive(full, time.monotonic()) else None

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        """Set a key, optionally expiring."""
        now = time.monotonic()
        self._evict(now)
        self._data[self._prefix + key] = (value, now + ttl_s if ttl_s else None)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of several keys."""
        return [await self.get(key) for key in keys]

    async def get_via(
        self, key: str, prefixes: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return a key's value and the values of the keys each prefix + that value names."""
        first = await self.get(key)
        if first is None:
            return None, [None] * len(prefixes)
        return first, await self.get_many([prefix + first.decode() for prefix in prefixes])

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Set several expiring keys."""
        for key, value in items:
            await self.set(key, value, ttl_s)

    async def put_newer_many(self, items: Sequence[tuple[str, int, bytes]], ttl_s: int) -> None:
        """Store versioned values unless a later (or fuller) one is held or was fenced."""
        now = time.monotonic()
        for key, version, value in items:
            fence = self._fences.get(self._prefix + key)
            if fence is not None and fence[1] > now and fence[0] > version:
                continue
            new = versioned(version, value)
            if not _keeps(await self.get(key), new):
                await self.set(key, new, ttl_s)

    async def extend_many(self, items: Sequence[tuple[str, int, int, bytes]], ttl_s: int) -> None:
        """Append to versioned JSON arrays held at their base version; mark the others."""
        for key, base, version, elements in items:
            held = unversioned(await self.get(key))
            if held is None:
                continue
            at, value = held
            if at == base and (not elements or value == b"[]"):
                await self.set(
                    key,
                    versioned(version, value if not elements else b"[" + elements + b"]"),
                    ttl_s,
                )
            elif at == base and value.endswith(b"]"):
                await self.set(key, versioned(version, value[:-1] + b"," + elements + b"]"), ttl_s)
            elif at < version:
                await self.set(key, versioned(version, b""), ttl_s)

    async def fence_many(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        """Fence each key at a version for FENCE_S; return whether each key is held."""
        now = time.monotonic()
        if len(self._fences) >= self._max:
            self._fences = {k: f for k, f in self._fences.items() if f[1] > now}
        for key, version in items:
            full = self._prefix + key
            held = self._fences.get(full)
            if held is None or held[1] <= now or held[0] < version:
                self._fences[full] = (version, now + FENCE_S)
        return [self._alive(self._prefix + key, now) for key, _ in items]

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
        self._put_newer = self._client.register_script(_PUT_NEWER_SCRIPT)
        self._fence = self._client.register_script(_FENCE_SCRIPT)
        self._release = self._client.register_script(_RELEASE_SCRIPT)
        self._extend = self._client.register_script(_EXTEND_SCRIPT)

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
        """Delete keys and their fences (one Lua call)."""
        if keys:
            try:
                await self._release(
                    keys=[self._prefix + k for k in keys], args=[self._prefix + _FENCES]
                )
            except (redis_asyncio.RedisError, OSError) as exc:
                raise CacheUnavailableError(type(exc).__name__) from exc

    async def get(self, key: str) -> bytes | None:
        """Return the value of a key, or None."""
        value = await self._client.get(self._prefix + key)
        return value if isinstance(value, bytes | None) else str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        """Set a key, optionally expiring."""
        await self._client.set(self._prefix + key, value, ex=ttl_s)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of several keys (one MGET)."""
        if not keys:
            return []
        values = await self._client.mget([self._prefix + k for k in keys])
        return [v if isinstance(v, bytes | None) else str(v).encode() for v in values]

    async def get_via(
        self, key: str, prefixes: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        """Return a key's value and the values of the keys each prefix + that value names
        (one Lua call)."""
        # A Lua false (no such key) arrives as None; an empty value stays an empty value.
        first, *rest = await self._via(
            keys=[self._prefix + key], args=[self._prefix + p for p in prefixes]
        )
        return first, list(rest)

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Set several expiring keys in one pipelined round trip (not atomic: a cache fill)."""
        if not items:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key, value in items:
                pipe.set(self._prefix + key, value, ex=ttl_s)
            await pipe.execute()

    async def put_newer_many(self, items: Sequence[tuple[str, int, bytes]], ttl_s: int) -> None:
        """Store versioned values unless a later (or fuller) one is held (one Lua call)."""
        if items:
            await self._put_newer(
                keys=[self._prefix + key for key, _, _ in items],
                args=[
                    ttl_s,
                    self._prefix + _FENCES,
                    *(versioned(version, value) for _, version, value in items),
                ],
            )

    async def extend_many(self, items: Sequence[tuple[str, int, int, bytes]], ttl_s: int) -> None:
        """Append to versioned JSON arrays held at their base version (one Lua call)."""
        if items:
            args: list[Any] = [ttl_s]
            for _, base, version, elements in items:
                args += [base, version, elements]
            await self._extend(keys=[self._prefix + key for key, _, _, _ in items], args=args)

    async def fence_many(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        """Fence each key at a version for FENCE_S (one Lua call); return which are held."""
        if not items:
            return []
        latest: dict[str, int] = {}
        for key, version in items:
            latest[key] = max(version, latest.get(key, version))
        prefix = self._prefix.encode()
        packed = b"".join(b"%b%b\0%d\0" % (prefix, key.encode(), v) for key, v in latest.items())
        held = await self._fence(args=[self._prefix + _FENCES, packed])
        found = dict(zip(latest, bytes(held), strict=True))
        return [found[key] == ord("1") for key, _ in items]

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
