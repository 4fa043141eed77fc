"""HTTP routes: read a profile's scores and the tier summary (read scope)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, cast

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from clientela.scoring.application.population import PopulationCache
from clientela.scoring.application.ports import ScoreReader
from clientela.scoring.application.queries import ScoreNotFoundError, get_scores, tier_summary
from clientela.scoring.domain.explain import explain, explain_tier
from clientela.shared.auth import KeyRing, require_scope
from clientela.shared.contracts import Lifecycle, Tier


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the routes need, set on app.state.api by the application's lifespan."""

    reader: ScoreReader
    population: PopulationCache
    model_version: str


def _context(request: Request) -> ApiContext:
    context = getattr(request.app.state, "api", None)
    if context is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service is starting")
    return cast(ApiContext, context)


ContextDep = Annotated[ApiContext, Depends(_context)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReasonOut(_Out):
    """One reason behind a score, with its plain-language meaning."""

    code: str
    value: float | str | None
    detail: str
    explanation: str = Field(description="What the reason means, in plain words.")


class ScoreOut(_Out):
    """A profile's current scores."""

    profile_id: str
    profile_version: int
    model_version: str
    lifecycle: Lifecycle
    tier: Tier
    tier_explanation: str
    predicted_value: float
    cost_to_serve: float
    updated_at: datetime
    reasons: list[ReasonOut]


class TierOut(_Out):
    """One tier: how many profiles, how much value, and what it means."""

    tier: Tier
    count: int
    value: float
    value_share: float = Field(description="Share of the total predicted value, 0..1.")
    meaning: str


class CutoffsOut(_Out):
    """The predicted values that open tiers A and B right now."""

    a_cutoff: float | None
    b_cutoff: float | None
    a_share: float
    b_share: float
    customer_count: int
    total_value: float


class TierSummaryOut(_Out):
    """How profiles and predicted value spread across tiers."""

    model_version: str
    profile_count: int
    total_value: float
    tiers: list[TierOut]
    cutoffs: CutoffsOut


def build_router(keyring: KeyRing) -> APIRouter:
    """Return the scoring routes, each requiring the read scope."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_scope(keyring, "read"))])

    @router.get(
        "/scores/{profile_id}",
        response_model=ScoreOut,
        tags=["scores"],
        summary="A profile's scores, with each reason explained",
        responses={404: {"description": "No scores for this profile"}},
    )
    async def read_scores(
        context: ContextDep, profile_id: Annotated[str, Path(min_length=1, max_length=64)]
    ) -> ScoreOut:
        try:
            stored = await get_scores(context.reader, profile_id)
        except ScoreNotFoundError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no scores for this profile") from None
        s = stored.scores
        return ScoreOut(
            profile_id=s.profile_id,
            profile_version=s.profile_version,
            model_version=s.model_version,
            lifecycle=s.lifecycle,
            tier=s.tier,
            tier_explanation=explain_tier(s.tier),
            predicted_value=s.predicted_value,
            cost_to_serve=s.cost_to_serve,
            updated_at=stored.updated_at,
            reasons=[
                ReasonOut(code=r.code, value=r.value, detail=r.detail, explanation=explain(r))
                for r in s.reasons
            ],
        )

    @router.get(
        "/tiers/summary",
        response_model=TierSummaryOut,
        tags=["tiers"],
        summary="Count and value share per tier, the current cut-offs and the model version",
    )
    async def read_tier_summary(context: ContextDep) -> TierSummaryOut:
        summary = await tier_summary(context.reader, context.population, context.model_version)
        c = summary.cutoffs
        return TierSummaryOut(
            model_version=summary.model_version,
            profile_count=summary.profile_count,
            total_value=summary.total_value,
            tiers=[
                TierOut(
                    tier=t.tier,
                    count=t.count,
                    value=t.value,
                    value_share=t.value_share,
                    meaning=explain_tier(t.tier),
                )
                for t in summary.tiers
            ],
            cutoffs=CutoffsOut(
                a_cutoff=c.a_cutoff,
                b_cutoff=c.b_cutoff,
                a_share=c.policy.a_share,
                b_share=c.policy.b_share,
                customer_count=c.customer_count,
                total_value=c.total_value,
            ),
        )

    return router
