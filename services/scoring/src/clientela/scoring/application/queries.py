"""Read use cases: one profile's scores, the tier summary with its Pareto curve."""

from __future__ import annotations

from dataclasses import dataclass

from clientela.scoring.application.population import Population, RankingCache
from clientela.scoring.application.ports import ScoreReader, StoredScore
from clientela.scoring.domain.tiers import Cutoffs, ParetoPoint, pareto_curve
from clientela.shared.contracts import Tier, utc_now


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
    pareto: list[ParetoPoint]

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


def tier_summary(
    population: Population, ranking: RankingCache, model_version: str, points: int = 20
) -> TierSummary:
    """Return count and value share per tier, the cut-offs and the Pareto curve, from memory."""
    totals = population.tier_counts()
    grand_total = sum(value for _, value in totals.values())
    tiers = [
        TierShare(
            tier=tier,
            count=totals[tier][0],
            value=totals[tier][1],
            value_share=totals[tier][1] / grand_total if grand_total > 0 else 0.0,
        )
        for tier in (Tier.A, Tier.B, Tier.C, Tier.P)
    ]
    context = ranking.get(utc_now().timestamp())
    return TierSummary(
        model_version=model_version,
        tiers=tiers,
        cutoffs=context.cutoffs,
        pareto=pareto_curve(population.values(), points),
    )
