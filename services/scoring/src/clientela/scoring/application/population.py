"""The ranked population behind the tier cut-offs, cached in memory and refreshed by age."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from clientela.scoring.application.ports import CustomerValues
from clientela.scoring.domain.tiers import Cutoffs, TieringPolicy, compute_cutoffs


class PopulationCache:
    """Predicted value of every customer, reloaded in one query when older than refresh_s.

    Between reloads the values this process itself applied are merged in, so a batch always
    ranks against what it just wrote; other replicas' writes show up at the next reload.
    """

    def __init__(
        self,
        policy: TieringPolicy,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._refresh_s = refresh_s
        self._clock = clock
        self._values: dict[str, float] = {}
        self._loaded_at: float | None = None

    async def values(self, source: CustomerValues) -> Mapping[str, float]:
        """Return predicted value by customer, reloading from the source when stale."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_s:
            self._values = await source.customer_values()
            self._loaded_at = now
        return self._values

    async def cutoffs(
        self, source: CustomerValues, overrides: Mapping[str, float | None] | None = None
    ) -> Cutoffs:
        """Return the cut-offs of the population with some values replaced (None removes)."""
        current = await self.values(source)
        overrides = overrides or {}
        merged: Iterable[float] = [
            *(v for pid, v in current.items() if pid not in overrides),
            *(v for v in overrides.values() if v is not None),
        ]
        return compute_cutoffs(merged, self.policy)

    def apply(self, updates: Mapping[str, float | None]) -> None:
        """Merge committed values into the cache (None: the profile is no longer a customer)."""
        for profile_id, value in updates.items():
            if value is None:
                self._values.pop(profile_id, None)
            else:
                self._values[profile_id] = value

    def invalidate(self) -> None:
        """Force a reload at the next use."""
        self._loaded_at = None
