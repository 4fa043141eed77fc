"""Rate limits shared by every ingest process: one token bucket per key name in Redis.

Each request spends its events with one script call (refill by elapsed time, then spend), so
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

# KEYS[1]: the bucket; ARGV: rate (events/s), burst, cost. Returns the seconds to wait
# ("0" when the events were spent) as a string: a Lua number would be cut to an integer.
_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
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
return string.format('%.17g', wait)
"""


class RedisRateLimiter:
    """Token buckets per key name in Redis; `take` returns 0 when allowed, else seconds."""

    def __init__(self, url: str, key_prefix: str, local: RateLimiter) -> None:
        self._client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._prefix = key_prefix + RATE_KEY_PREFIX
        self._local = local
        self._take = self._client.register_script(_TAKE)
        self._warned_at = 0.0

    async def take(self, key: str, events: int) -> float:
        """Spend `events` tokens of the key's shared bucket, or return how long until they exist."""
        rate, burst = self._local.limits(key)
        if rate <= 0:
            return 0.0
        # A request larger than the burst could never pass; it is allowed to drain the bucket.
        cost = min(float(events), burst)
        try:
            answer = await self._take(keys=[self._prefix + key], args=[rate, burst, cost])
        except (redis_asyncio.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > 60:  # one line a minute, not one per request
                self._warned_at = now
                log.warning(
                    "shared rate limits unavailable (%s): per-process limits apply",
                    type(exc).__name__,
                )
            return self._local.take(key, events)
        return float(answer.decode() if isinstance(answer, bytes) else answer)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
