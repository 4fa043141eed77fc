"""Per-key token buckets: each key may submit so many events per second, with a burst."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class RateLimiter:
    """Token buckets per key name; `take` returns 0 when allowed, else seconds to wait."""

    events_per_s: float
    burst: float
    clock: Callable[[], float]
    overrides: Mapping[str, float] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _rate(self, key: str) -> float:
        return self.overrides.get(key, self.events_per_s)

    def limits(self, key: str) -> tuple[float, float]:
        """Return the key's rate (events per second, 0 for none) and burst."""
        rate = self._rate(key)
        # An overridden key keeps the same burst in seconds as the default rate has.
        burst = self.burst
        if key in self.overrides and self.events_per_s > 0:
            burst = max(1.0, rate * self.burst / self.events_per_s)
        return rate, burst

    def take(self, key: str, events: int) -> float:
        """Spend `events` tokens of the key's bucket, or return how long until they exist."""
        rate, burst = self.limits(key)
        if rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        # A request larger than the burst could never pass; it is allowed to drain the bucket.
        cost = min(float(events), burst)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / rate

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """Return the whole seconds a client should wait (at least 1)."""
        return max(1, math.ceil(wait_s))
