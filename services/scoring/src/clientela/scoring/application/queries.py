"""Read use cases: one profile's scores, and the tier summary."""

from __future__ import annotations

from dataclasses import dataclass

from clientela.scoring.application.population import PopulationCache
from clientela.scoring.application.ports import ScoreReader, StoredScore
from clientela.scoring.domain.tiers import Cutoffs
from clientela.shared.contracts import Tier


class ScoreNotFoundError(LookupError):
    """No scores are stored for the profile."""


@dataclass(frozen=True, slots=True)
class TierShare:
    """One tier's size and share of the total predicted value."""

    tier: Tier
    count: int
    value: float
    value_share: float


@dataclass(frozen=True, slots=True)
class TierSummary:
    """How profiles and predicted value spread across tiers, and the cut-offs in force."""

    model_version: str
    tiers: list[TierShare]
    cutoffs: Cutoffs

    @property
    def profile_count(self) -> int:
        """Return how many profiles are scored, prospects included."""
        return sum(t.count for t in self.tiers)

    @property
    def total_value(self) -> float:
        """Return the summed predicted value of every scored profile."""
        return sum(t.value for t in self.tiers)


async def get_scores(reader: ScoreReader, profile_id: str) -> StoredScore:
    """Return a profile's stored scores, or raise ScoreNotFoundError."""
    stored = await reader.get(profile_id)
    if stored is None:
        raise ScoreNotFoundError(profile_id)
    return stored


async def tier_summary(
    reader: ScoreReader, population: PopulationCache, model_version: str
) -> TierSummary:
    """Return count and value share per tier (every tier listed) with the current cut-offs."""
    totals = {t.tier: t for t in await reader.tier_totals()}
    grand_total = sum(t.value for t in totals.values())
    tiers = [
        TierShare(
            tier=tier,
            count=totals[tier].count if tier in totals else 0,
            value=totals[tier].value if tier in totals else 0.0,
            value_share=(totals[tier].value / grand_total)
            if tier in totals and grand_total > 0
            else 0.0,
        )
        for tier in (Tier.A, Tier.B, Tier.C, Tier.P)
    ]
    cutoffs = await population.cutoffs(reader)
    return TierSummary(model_version=model_version, tiers=tiers, cutoffs=cutoffs)
