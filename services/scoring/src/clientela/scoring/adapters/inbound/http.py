"""HTTP routes: scores with explanations, tier summary (read); refit and sweep (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from clientela.scoring.application.ports import ScoreReader
from clientela.scoring.application.queries import ScoreNotFoundError, get_scores, tier_summary
from clientela.scoring.application.refit import NotEnoughDataError
from clientela.scoring.application.scorer import all_reasons
from clientela.scoring.application.service import ScoringApplication
from clientela.scoring.domain.explain import explain, explain_tier
from clientela.scoring.domain.value_model import FittedParameters
from clientela.shared.auth import KeyRing, require_scope
from clientela.shared.contracts import Lifecycle, Reason, Rfm, Segment, Tier


def _application(request: Request) -> ScoringApplication:
    application = getattr(request.app.state, "api", None)
    if application is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service is starting")
    return cast(ScoringApplication, application)


def _reader(request: Request) -> ScoreReader:
    reader = getattr(request.app.state, "reader", None)
    if reader is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service is starting")
    return cast(ScoreReader, reader)


ApplicationDep = Annotated[ScoringApplication, Depends(_application)]
ReaderDep = Annotated[ScoreReader, Depends(_reader)]


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
    probability_alive: float | None
    expected_purchases: float | None
    expected_order_value: float | None
    horizon_weeks: float | None
    rfm: Rfm | None
    segment: Segment | None
    potential: float | None
    cost_to_serve: float
    profitable: bool | None
    at_risk: bool
    as_of: datetime | None
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
    hysteresis: float
    customer_count: int
    total_value: float


class ParetoPointOut(_Out):
    """The top customer_share of customers bring value_share of the predicted value."""

    customer_share: float
    value_share: float


class TierSummaryOut(_Out):
    """How profiles and predicted value spread across tiers."""

    model_version: str
    profile_count: int
    total_value: float
    tiers: list[TierOut]
    cutoffs: CutoffsOut
    pareto: list[ParetoPointOut]


class ModelOut(_Out):
    """A fitted parameter set."""

    model_version: str
    version: int
    fitted_at: datetime
    as_of: datetime
    customer_count: int
    repeat_customer_count: int
    bgnbd: dict[str, float] = Field(description="r, alpha (rate), a, b (dropout).")
    gamma_gamma: dict[str, float] = Field(description="p, q, gamma (spend).")
    bgnbd_log_likelihood: float
    gamma_gamma_log_likelihood: float


class ModelStateOut(_Out):
    """The model in force and the newest fitted parameter set (if any)."""

    model_version: str
    parameters: ModelOut | None


class SweepOut(_Out):
    """What a sweep did."""

    sweep_id: str
    customers: int
    changed: int
    tier_changes: int
    compute_s: float
    write_s: float


def _model_out(p: FittedParameters) -> ModelOut:
    return ModelOut(
        model_version=f"bgnbd-gg-v{p.version}",
        version=p.version,
        fitted_at=p.fitted_at,
        as_of=p.as_of,
        customer_count=p.customer_count,
        repeat_customer_count=p.repeat_customer_count,
        bgnbd=dict(zip(("r", "alpha", "a", "b"), p.bgnbd.as_tuple(), strict=True)),
        gamma_gamma=dict(zip(("p", "q", "gamma"), p.gamma_gamma.as_tuple(), strict=True)),
        bgnbd_log_likelihood=p.bgnbd_log_likelihood,
        gamma_gamma_log_likelihood=p.gamma_gamma_log_likelihood,
    )


def build_router(keyring: KeyRing) -> APIRouter:
    """Return the scoring routes: reads need the read scope, refit and sweep the admin scope."""
    router = APIRouter(prefix="/v1")
    read = [Depends(require_scope(keyring, "read"))]
    admin = [Depends(require_scope(keyring, "admin"))]

    @router.get(
        "/scores/{profile_id}",
        response_model=ScoreOut,
        tags=["scores"],
        dependencies=read,
        summary="A profile's scores, with each reason explained",
        responses={404: {"description": "No scores for this profile"}},
    )
    async def read_scores(
        reader: ReaderDep, profile_id: Annotated[str, Path(min_length=1, max_length=64)]
    ) -> ScoreOut:
        try:
            stored = await get_scores(reader, profile_id)
        except ScoreNotFoundError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no scores for this profile") from None
        s = stored.scores
        return ScoreOut(
            **s.model_dump(
                include={
                    "profile_id",
                    "profile_version",
                    "model_version",
                    "lifecycle",
                    "tier",
                    "predicted_value",
                    "probability_alive",
                    "expected_purchases",
                    "expected_order_value",
                    "horizon_weeks",
                    "segment",
                    "potential",
                    "cost_to_serve",
                    "profitable",
                    "at_risk",
                    "as_of",
                }
            ),
            rfm=s.rfm,
            tier_explanation=explain_tier(s.tier),
            updated_at=stored.updated_at,
            reasons=[
                ReasonOut(code=r.code, value=r.value, detail=r.detail, explanation=explain(r))
                for r in (Reason.model_validate(d) for d in all_reasons(s.model_dump()))
            ],
        )

    @router.get(
        "/tiers/summary",
        response_model=TierSummaryOut,
        tags=["tiers"],
        dependencies=read,
        summary="Count and value share per tier, the cut-offs, the Pareto curve",
    )
    async def read_tier_summary(application: ApplicationDep) -> TierSummaryOut:
        async with application.lock:
            summary = tier_summary(
                application.population,
                application.ranking,
                application.models.model.model_version,
            )
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
                hysteresis=c.policy.hysteresis,
                customer_count=c.customer_count,
                total_value=c.total_value,
            ),
            pareto=[
                ParetoPointOut(customer_share=p.customer_share, value_share=p.value_share)
                for p in summary.pareto
            ],
        )

    @router.get(
        "/model",
        response_model=ModelStateOut,
        tags=["model"],
        dependencies=read,
        summary="The value model in force and its fitted parameters",
    )
    async def read_model(application: ApplicationDep) -> ModelStateOut:
        parameters = application.models.parameters
        return ModelStateOut(
            model_version=application.models.model.model_version,
            parameters=_model_out(parameters) if parameters is not None else None,
        )

    @router.post(
        "/model/refit",
        response_model=ModelOut,
        tags=["model"],
        dependencies=admin,
        summary="Fit BG/NBD and Gamma-Gamma on the population now, then sweep",
        responses={409: {"description": "Not enough customers to fit on"}},
    )
    async def refit(application: ApplicationDep) -> ModelOut:
        try:
            fitted = await application.refit()
        except NotEnoughDataError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        await application.sweep()
        return _model_out(fitted)

    @router.post(
        "/sweep",
        response_model=SweepOut,
        tags=["model"],
        dependencies=admin,
        summary="Re-score the whole population now and publish the tier changes",
    )
    async def sweep(application: ApplicationDep) -> SweepOut:
        outcome = await application.sweep()
        return SweepOut(
            sweep_id=outcome.sweep_id,
            customers=outcome.customers,
            changed=outcome.changed,
            tier_changes=outcome.tier_changes,
            compute_s=outcome.compute_s,
            write_s=outcome.write_s,
        )

    return router
