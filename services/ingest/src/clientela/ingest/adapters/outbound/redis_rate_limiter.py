"""Rate limits shared by every ingest process: one token bucket per key name in Redis.

Each request spends its events with one script call (refill by elapsed time, then spend; the
deduplicator's claim runs the same script, so with Redis dedup it is the claim's call), so
the limit holds across worker processes and instances. The clock is Redis's own, so the
processes' clocks need not agree. If Redis cannot be reached, the process falls back to its
own buckets: the limit then holds per process, as without Redis, and ingest keeps answering.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis_asyncio

from clientela.ingest.domain.rate_limit import RateLimiter

log = logging.getLogger(__name__)

RATE_KEY_PREFIX = "ingest:rate:"

# The token bucket in KEYS[1]: rate (events/s), burst and cost in `rate`, `burst`, `cost`.
# Leaves the seconds to wait in `wait` (0 when the events were spent). Shared with the
# deduplicator's claim, which spends a request's events in the same call.
TAKE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens, updated = tonumber(state[1]), tonumber(state[2])
if tokens == nil or updated == nil then tokens, updated = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated',
  string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
"""

# KEYS[1]: the bucket; ARGV: rate (events/s), burst, cost. Returns the seconds to wait
# ("0" when the events were spent) as a string: a Lua number would be cut to an integer.
_TAKE = (
    """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
"""
    + TAKE_LUA
    + """
return string.format('%.17g', wait)
"""
)


class RedisRateLimiter:
    """Token buckets per key name in Redis; `take` returns 0 when allowed, else seconds."""

    def __init__(self, url: str, key_prefix: str, local: RateLimiter) -> None:
        self.url = url
        self._client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._prefix = key_prefix + RATE_KEY_PREFIX
        self._local = local
        self._take = self._client.register_script(_TAKE)
        self._warned_at = 0.0

    def bucket(self, key: str, events: int) -> tuple[str, list[float]] | None:
        """Return the key's bucket and its script arguments (rate, burst, cost), or None."""
        rate, burst = self._local.limits(key)
        if rate <= 0:
            return None
        # A request larger than the burst could never pass; it is allowed to drain the bucket.
        return self._prefix + key, [rate, burst, min(float(events), burst)]

    def fallback(self, key: str, events: int, exc: BaseException) -> float:
        """Spend from the process's own bucket while Redis cannot be reached."""
        now = time.monotonic()
        if now - self._warned_at > 60:  # one line a minute, not one per request
            self._warned_at = now
            log.warning(
                "shared rate limits unavailable (%s): per-process limits apply",
                type(exc).__name__,
            )
        return self._local.take(key, events)

    async def take(self, key: str, events: int) -> float:
        """Spend `events` tokens of the key's shared bucket, or return how long until they exist."""
        found = self.bucket(key, events)
        if found is None:
            return 0.0
        bucket, args = found
        try:
            answer = await self._take(keys=[bucket], args=args)
        except (redis_asyncio.RedisError, OSError) as exc:
            return self.fallback(key, events, exc)
        return float(answer.decode() if isinstance(answer, bytes) else answer)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
