"""Contact caps counted atomically: one Redis Lua call per batch, or in process.

A request names a message (its decision id) and, per ranked channel, the counters the
contact would count against. The first channel whose counters are all below their limits is
granted and every counter of it incremented, in one atomic step. A grant is remembered by
decision id, so a batch redelivered after a failed commit is answered the same way and
counts nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import redis.asyncio as redis_asyncio

from clientela.campaign.application.ports import ContactGrant, ContactRequest
from clientela.campaign.domain.contact_policy import cap_keys
from clientela.campaign.domain.model import Merge
from clientela.shared.cache import CacheUnavailableError

GRANT_TTL_S = 8 * 86_400

# KEYS: per request: grant key, then the counter keys of every alternative in order.
# ARGV: grant ttl, number of requests, then per request: number of alternatives, then per
# alternative: number of counters, then per counter: limit, ttl.
# Returns per request: {granted alternative (1-based) or 0, index of the blocking counter
# (1-based) of each alternative tried before the granted one (or of all)}.
_RESERVE_SCRIPT = """
local grant_ttl = tonumber(ARGV[1])
local n_requests = tonumber(ARGV[2])
local a, k = 3, 1
local out = {}
for r = 1, n_requests do
  local grant_key = KEYS[k]
  k = k + 1
  local n_alts = tonumber(ARGV[a])
  a = a + 1
  local alts = {}
  for i = 1, n_alts do
    local n_counters = tonumber(ARGV[a])
    a = a + 1
    local counters = {}
    for j = 1, n_counters do
      counters[j] = {KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1])}
      k = k + 1
      a = a + 2
    end
    alts[i] = counters
  end
  local previous = redis.call('GET', grant_key)
  if previous then
    out[r] = {tonumber(previous)}
  else
    local result = {0}
    for i = 1, n_alts do
      local blocked = 0
      for j, c in ipairs(alts[i]) do
        local used = tonumber(redis.call('GET', c[1]) or '0')
        if used >= c[2] then blocked = j break end
      end
      if blocked == 0 then
        for _, c in ipairs(alts[i]) do
          if redis.call('INCR', c[1]) == 1 then redis.call('EXPIRE', c[1], c[3]) end
        end
        result[1] = i
        break
      end
      result[#result + 1] = blocked
    end
    redis.call('SET', grant_key, tostring(result[1]), 'EX', grant_ttl)
    out[r] = result
  end
end
return out
"""


# KEYS: pairs of (absorbed counter, survivor counter). Adds each absorbed count to the
# survivor's (keeping the longer of the two lifetimes) and deletes it, so a repeat is a no-op.
_MOVE_SCRIPT = """
for i = 1, #KEYS, 2 do
  local used = redis.call('GET', KEYS[i])
  if used then
    local ttl = redis.call('TTL', KEYS[i])
    redis.call('INCRBY', KEYS[i + 1], tonumber(used))
    if ttl > redis.call('TTL', KEYS[i + 1]) then redis.call('EXPIRE', KEYS[i + 1], ttl) end
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""


def _grant(answer: Sequence[int], request: ContactRequest) -> ContactGrant:
    chosen = int(answer[0])
    blocked = tuple(
        request.alternatives[i][int(j) - 1].label
        for i, j in enumerate(answer[1:])
        if int(j) >= 1 and i < len(request.alternatives)
    )
    return ContactGrant(chosen - 1 if chosen > 0 else None, blocked)


class RedisContactLedger:
    """Caps shared by every instance, enforced by one Lua script per batch."""

    def __init__(self, url: str, key_prefix: str = "") -> None:
        self._client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._prefix = key_prefix
        self._script = self._client.register_script(_RESERVE_SCRIPT)
        self._move = self._client.register_script(_MOVE_SCRIPT)

    async def reserve(self, requests: Sequence[ContactRequest]) -> list[ContactGrant]:
        """Grant each request its first alternative under every cap, or nothing; idempotent."""
        if not requests:
            return []
        keys: list[str] = []
        args: list[int] = [GRANT_TTL_S, len(requests)]
        for request in requests:
            keys.append(f"{self._prefix}campaign:grant:{request.decision_id}")
            args.append(len(request.alternatives))
            for counters in request.alternatives:
                args.append(len(counters))
                for c in counters:
                    keys.append(self._prefix + c.key)
                    args += [c.limit, c.ttl_s]
        try:
            answers = await self._script(keys=keys, args=args)
        except (redis_asyncio.RedisError, OSError) as exc:
            raise CacheUnavailableError(type(exc).__name__) from exc
        return [_grant(a, r) for a, r in zip(answers, requests, strict=True)]

    async def forget(self, profile_ids: Sequence[str], now: datetime) -> None:
        """Delete every counter of these people."""
        keys = [self._prefix + k for pid in profile_ids for k in cap_keys(pid, now)]
        if not keys:
            return
        try:
            await self._client.delete(*keys)
        except (redis_asyncio.RedisError, OSError) as exc:
            raise CacheUnavailableError(type(exc).__name__) from exc

    async def move(self, merges: Sequence[Merge], now: datetime) -> None:
        """Add each absorbed person's counters to the survivor's, merge by merge; idempotent."""
        keys: list[str] = []
        # One script for every merge: its pairs are moved in order, merge after merge.
        for merged_id, survivor_id in merges:
            survivor_keys = cap_keys(survivor_id, now)
            for absorbed, kept in zip(cap_keys(merged_id, now), survivor_keys, strict=True):
                keys += [self._prefix + absorbed, self._prefix + kept]
        if not keys:
            return
        try:
            await self._move(keys=keys, args=[])
        except (redis_asyncio.RedisError, OSError) as exc:
            raise CacheUnavailableError(type(exc).__name__) from exc

    async def ping(self) -> bool:
        """Return whether Redis answers."""
        try:
            return bool(await self._client.ping())
        except (redis_asyncio.RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class MemoryContactLedger:
    """The same ledger in process, for the embedded default (one instance)."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._grants: dict[str, tuple[int, float]] = {}

    def _get(self, store: dict[str, tuple[int, float]], key: str, now: float) -> int | None:
        item = store.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del store[key]
            return None
        return item[0]

    async def reserve(self, requests: Sequence[ContactRequest]) -> list[ContactGrant]:
        """Grant each request its first alternative under every cap, or nothing; idempotent."""
        # No await between the checks and the increments: atomic within the event loop.
        now = time.monotonic()
        out: list[ContactGrant] = []
        for request in requests:
            previous = self._get(self._grants, request.decision_id, now)
            if previous is not None:
                out.append(ContactGrant(previous - 1 if previous > 0 else None))
                continue
            chosen, blocked = 0, []
            for index, counters in enumerate(request.alternatives, start=1):
                hit = next(
                    (c for c in counters if (self._get(self._counts, c.key, now) or 0) >= c.limit),
                    None,
                )
                if hit is None:
                    for c in counters:
                        used = self._get(self._counts, c.key, now)
                        expires = self._counts[c.key][1] if used is not None else now + c.ttl_s
                        self._counts[c.key] = ((used or 0) + 1, expires)
                    chosen = index
                    break
                blocked.append(hit.label)
            self._grants[request.decision_id] = (chosen, now + GRANT_TTL_S)
            out.append(ContactGrant(chosen - 1 if chosen else None, tuple(blocked)))
        if len(self._grants) > 1_000_000:
            self._prune(now)
        return out

    def _prune(self, now: float) -> None:
        for store in (self._grants, self._counts):
            for key in [k for k, (_, exp) in store.items() if exp <= now]:
                del store[key]

    async def forget(self, profile_ids: Sequence[str], now: datetime) -> None:
        """Delete every counter of these people."""
        for pid in profile_ids:
            for key in cap_keys(pid, now):
                self._counts.pop(key, None)

    async def move(self, merges: Sequence[Merge], now: datetime) -> None:
        """Add each absorbed person's counters to the survivor's, merge by merge; idempotent."""
        for merged_id, survivor_id in merges:
            for absorbed, kept in zip(
                cap_keys(merged_id, now), cap_keys(survivor_id, now), strict=True
            ):
                item = self._counts.pop(absorbed, None)
                if item is None:
                    continue
                used, expires = self._counts.get(kept, (0, item[1]))
                self._counts[kept] = (used + item[0], max(expires, item[1]))

    async def ping(self) -> bool:
        """Return True: the process is alive."""
        return True

    async def close(self) -> None:
        """Drop everything."""
        self._counts.clear()
        self._grants.clear()
