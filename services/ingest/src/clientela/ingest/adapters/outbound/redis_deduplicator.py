"""Deduplicator on Redis with a packed two-phase claim: one argument in, one string out.

The shared cache's claim passes every key as its own Redis argument and reads back a list of
integers; for 100 ids per request the client-side packing and parsing of those 200 values
cost more than the round trip. Here the ids travel as one newline-joined argument and the
answer is one string of "0"/"1", which keeps the claim at a few microseconds per request.

A claim only reads (one MGET): an id that is not confirmed is claimable, whether or not
another request claimed it, so a pending mark would change no answer and cost Redis a write
per event. The same call spends the request's shared rate limit first, so a request costs
two calls: claim (with the rate limit) and confirm.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as redis_asyncio

from clientela.ingest.adapters.outbound.cache_deduplicator import DEDUP_KEY_PREFIX
from clientela.ingest.adapters.outbound.redis_rate_limiter import TAKE_LUA, RedisRateLimiter
from clientela.ingest.application.ports import (
    DeduplicationUnavailableError,
    RateCharge,
    RateLimitedError,
)
from clientela.ingest.domain.rate_limit import RateLimiter

# The ids from ARGV[at]: ("joined", ids joined by "\n") or ("listed", id, id, ...) for the
# rare batch whose ids contain a newline themselves.
_IDS = """
local function ids_from(at)
  local ids = {}
  if ARGV[at] == 'joined' then
    for id in string.gmatch(ARGV[at + 1], '[^\\n]+') do ids[#ids + 1] = id end
  else
    for i = at + 1, #ARGV do ids[#ids + 1] = ARGV[i] end
  end
  return ids
end
"""
# KEYS: the rate bucket, or none. ARGV: key prefix, rate, burst, cost (ignored without a
# bucket), then the ids. Returns "!<seconds to wait>" when the rate limit refuses the events
# (nothing is read), else one "0"/"1" per id: "0" where the id was accepted (confirmed) before.
_CLAIM = (
    _IDS
    + """
if #KEYS == 1 then
  local rate, burst, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
"""
    + TAKE_LUA
    + """
  if wait > 0 then return '!' .. string.format('%.17g', wait) end
end
local prefix, ids, out = ARGV[1], ids_from(5), {}
-- MGET in slices: unpack() is bounded by the Lua stack.
for first = 1, #ids, 1000 do
  local keys = {}
  for i = first, math.min(first + 999, #ids) do keys[#keys + 1] = prefix .. ids[i] end
  for _, value in ipairs(redis.call('MGET', unpack(keys))) do
    out[#out + 1] = value == 'a' and '0' or '1'
  end
end
return table.concat(out)
"""
)
# ARGV: key prefix, TTL in seconds, then the ids.
_CONFIRM = (
    _IDS
    + """
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
for _, id in ipairs(ids_from(3)) do redis.call('SET', prefix .. id, 'a', 'EX', ttl) end
return 1
"""
)
_RELEASE = (
    _IDS
    + """
for _, id in ipairs(ids_from(3)) do redis.call('DEL', ARGV[1] .. id) end
return 1
"""
)
_UNCHARGED = ("", "", "")


def _packed(event_ids: Sequence[str]) -> list[str]:
    joined = "\n".join(event_ids)
    if joined.count("\n") != len(event_ids) - 1:
        return ["listed", *event_ids]
    return ["joined", joined]


class RedisDeduplicator:
    """Reads claims in one call (spending the rate limit too), confirms them in another."""

    def __init__(self, url: str, key_prefix: str, ttl_s: int) -> None:
        self.url = url
        self._client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._prefix = key_prefix + DEDUP_KEY_PREFIX
        self._ttl = str(ttl_s)
        self._claim = self._client.register_script(_CLAIM)
        self._confirm = self._client.register_script(_CONFIRM)
        self._release = self._client.register_script(_RELEASE)

    async def claim(self, event_ids: Sequence[str], charge: RateCharge | None = None) -> list[bool]:
        """Claim each id; return False only where it was confirmed before.

        A charge on a rate limit in this same Redis is spent in the same call; any other is
        spent by its own limiter first.
        """
        limiter = charge.limiter if charge is not None else None
        keys: list[str] = []
        rate: Sequence[float | str] = _UNCHARGED
        if charge is not None:
            if isinstance(limiter, RedisRateLimiter) and limiter.url == self.url:
                bucket = limiter.bucket(charge.key, charge.events)
                if bucket is not None:
                    keys, rate = [bucket[0]], bucket[1]
            else:
                await charge.spend()
        if not event_ids and not keys:
            return []
        try:
            answer = await self._claim(keys=keys, args=[self._prefix, *rate, *_packed(event_ids)])
        except (redis_asyncio.RedisError, OSError) as exc:
            if keys and charge is not None and isinstance(limiter, RedisRateLimiter):
                # As the limiter itself does: the process's own bucket while Redis is away.
                wait = limiter.fallback(charge.key, charge.events, exc)
                if wait > 0:
                    raise RateLimitedError(RateLimiter.retry_after(wait)) from exc
            raise DeduplicationUnavailableError(f"dedup store unreachable: {exc!r}") from exc
        flags = answer.decode() if isinstance(answer, bytes) else str(answer)
        if flags.startswith("!"):
            raise RateLimitedError(RateLimiter.retry_after(float(flags[1:])))
        return [flag == "1" for flag in flags]

    async def confirm(self, event_ids: Sequence[str]) -> None:
        """Mark the ids accepted for the dedup window."""
        if not event_ids:
            return
        try:
            await self._confirm(args=[self._prefix, self._ttl, *_packed(event_ids)])
        except (redis_asyncio.RedisError, OSError) as exc:
            raise DeduplicationUnavailableError(f"dedup store unreachable: {exc!r}") from exc

    async def release(self, event_ids: Sequence[str]) -> None:
        """Forget the ids."""
        if not event_ids:
            return
        try:
            await self._release(args=[self._prefix, "0", *_packed(event_ids)])
        except (redis_asyncio.RedisError, OSError) as exc:
            raise DeduplicationUnavailableError(f"dedup store unreachable: {exc!r}") from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
