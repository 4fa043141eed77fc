"""Deduplicator backed by the shared cache (Redis in production): one claim call per batch."""

from __future__ import annotations

from collections.abc import Sequence

from clientela.ingest.application.ports import DeduplicationUnavailableError, RateCharge
from clientela.shared.cache import Cache, CacheUnavailableError

DEDUP_KEY_PREFIX = "ingest:dedup:"


def dedup_key(event_id: str) -> str:
    """Return the cache key that marks an event id as accepted."""
    return DEDUP_KEY_PREFIX + event_id


class CacheDeduplicator:
    """Claims event ids as cache keys that expire after the dedup window."""

    def __init__(self, cache: Cache, ttl_s: int) -> None:
        self._cache = cache
        self._ttl_s = ttl_s

    async def claim(self, event_ids: Sequence[str], charge: RateCharge | None = None) -> list[bool]:
        """Claim each id in one round trip; return True where it was not seen before."""
        if charge is not None:
            await charge.spend()
        try:
            return await self._cache.claim_many([dedup_key(i) for i in event_ids], self._ttl_s)
        except CacheUnavailableError as exc:
            raise DeduplicationUnavailableError(f"dedup store unreachable: {exc}") from exc

    async def confirm(self, event_ids: Sequence[str]) -> None:
        """Nothing to do: the claim already marked the ids.

        One phase is safe only where the claims die with the process (the in-process cache,
        the embedded default); with Redis the two-phase RedisDeduplicator is wired instead.
        """

    async def release(self, event_ids: Sequence[str]) -> None:
        """Forget the ids."""
        try:
            await self._cache.release_many([dedup_key(i) for i in event_ids])
        except CacheUnavailableError as exc:
            raise DeduplicationUnavailableError(f"dedup store unreachable: {exc}") from exc
