"""Turns model estimates and the population's ranking into published scores, with reasons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from clientela.scoring.application.population import RankingContext
from clientela.scoring.domain.facts import FactColumns, FloatArray
from clientela.scoring.domain.potential import ProspectFeatures, potential
from clientela.scoring.domain.reasons import reason
from clientela.scoring.domain.relationship import (
    RiskPolicy,
    SegmentRules,
    at_risk,
    margin_after_cost,
    relationship_segment,
)
from clientela.scoring.domain.rfm import RfmScores, rfm_scores
from clientela.scoring.domain.tiers import CODE, NO_TIER, TIER_OF_CODE, TierCodes
from clientela.scoring.domain.value_model import Estimates, ValueModel
from clientela.shared.contracts import (
    Lifecycle,
    ProfileChanged,
    Reason,
    Rfm,
    ScoresUpdated,
    Segment,
    Tier,
)


@dataclass(frozen=True, slots=True)
class ScoringPolicy:
    """The business knobs of scoring: horizon, risk and profitability, segment rules."""

    horizon_weeks: float = 52.0
    risk: RiskPolicy = field(default_factory=RiskPolicy)
    segments: SegmentRules = field(default_factory=SegmentRules)


@dataclass(frozen=True, slots=True)
class CustomerScores:
    """Vectorised scores of many customers, one entry per row of the facts."""

    estimates: Estimates
    tiers: TierCodes
    at_risk: npt.NDArray[np.bool_]
    rfm: RfmScores
    margin: FloatArray


def score_customers(
    model: ValueModel,
    facts: FactColumns,
    as_of: datetime,
    previous_tiers: TierCodes,
    context: RankingContext,
    policy: ScoringPolicy,
) -> CustomerScores:
    """Return predicted value, tier (with hysteresis), risk, RFM and margin of every row."""
    estimates = model.estimate(facts, as_of)
    tiers = context.cutoffs.tiers_for(estimates.predicted_value, previous_tiers)
    return CustomerScores(
        estimates=estimates,
        tiers=tiers,
        at_risk=at_risk(
            tiers,
            estimates.probability_alive,
            policy.risk.at_risk_probability_alive,
            CODE[Tier.A],
        ),
        rfm=rfm_scores(facts, as_of.timestamp(), context.rfm_edges),
        margin=margin_after_cost(facts.total_spend, facts.cost_to_serve, policy.risk.gross_margin),
    )


def previous_codes(tiers: Sequence[Tier | None]) -> TierCodes:
    """Return tier codes of stored tiers (NO_TIER where nothing is stored)."""
    return np.fromiter((CODE[t] if t is not None else NO_TIER for t in tiers), np.int8, len(tiers))


def _opt(column: FloatArray | None, i: int) -> float | None:
    return None if column is None else float(column[i])


def customer_scores(
    i: int,
    scores: CustomerScores,
    *,
    profile_id: str,
    profile_version: int,
    lifecycle: Lifecycle,
    segment: tuple[Segment, Reason] | None,
    model_version: str,
    facts: FactColumns,
    as_of: datetime,
    context: RankingContext,
    policy: ScoringPolicy,
) -> ScoresUpdated:
    """Return the published scores of row i, with every number behind them as a reason."""
    est = scores.estimates
    value = float(est.predicted_value[i])
    tier = TIER_OF_CODE[int(scores.tiers[i])]
    alive = _opt(est.probability_alive, i)
    purchases = _opt(est.expected_purchases, i)
    order_value = _opt(est.expected_spend, i)
    margin = float(scores.margin[i])
    risky = bool(scores.at_risk[i])
    rfm = Rfm(
        recency=int(scores.rfm.recency[i]),
        frequency=int(scores.rfm.frequency[i]),
        monetary=int(scores.rfm.monetary[i]),
    )
    reasons = [reason(code="predicted_value", value=round(value, 2), detail=_horizon(est, policy))]
    if purchases is not None:
        reasons.append(
            reason(
                code="expected_purchases",
                value=round(purchases, 3),
                detail=f"purchase days expected over the next {policy.horizon_weeks:g} weeks",
            )
        )
    if order_value is not None:
        reasons.append(
            reason(code="expected_order_value", value=round(order_value, 2), detail="per purchase")
        )
    if alive is not None:
        reasons.append(
            reason(
                code="probability_alive",
                value=round(alive, 4),
                detail="chance they are still buying from us",
            )
        )
    reasons += [
        reason(code="total_spend", value=round(float(facts.total_spend[i]), 2)),
        reason(code="purchase_days", value=int(facts.purchase_days[i]), detail="days with a sale"),
        reason(
            code="days_since_last_purchase",
            value=round(float(scores.rfm.recency_days[i]), 1),
        ),
        reason(
            code="rfm",
            value=f"{rfm.recency}-{rfm.frequency}-{rfm.monetary}",
            detail=f"recency-frequency-monetary group, 1 to {context.rfm_edges.groups}",
        ),
        reason(code="cost_to_serve", value=round(float(facts.cost_to_serve[i]), 2)),
        reason(
            code="margin_after_cost",
            value=round(margin, 2),
            detail=f"{policy.risk.gross_margin:.0%} margin on spend minus cost to serve",
        ),
    ]
    if margin < 0 and tier is Tier.C:
        reasons.append(
            reason(
                code="low_value_high_cost",
                value=round(margin, 2),
                detail="costs more to serve than the margin they bring",
            )
        )
    if segment is not None:
        reasons.append(segment[1])
    if risky:
        reasons.append(
            reason(
                code="at_risk",
                value=round(alive or 0.0, 4),
                detail=f"tier A with a chance of still buying below "
                f"{policy.risk.at_risk_probability_alive:.0%}",
            )
        )
    reasons += context.cutoffs.reasons()
    return ScoresUpdated(
        profile_id=profile_id,
        profile_version=profile_version,
        model_version=model_version,
        lifecycle=lifecycle,
        tier=tier,
        predicted_value=value,
        probability_alive=alive,
        rfm=rfm,
        segment=segment[0] if segment is not None else None,
        cost_to_serve=float(facts.cost_to_serve[i]),
        at_risk=risky,
        reasons=reasons,
        as_of=as_of,
        expected_purchases=purchases,
        expected_order_value=order_value,
        horizon_weeks=policy.horizon_weeks if purchases is not None else None,
        profitable=margin >= 0,
    )


def _horizon(estimates: Estimates, policy: ScoringPolicy) -> str:
    if estimates.expected_purchases is None:
        return "past spend, halved for every half-life without a purchase"
    return f"expected spend over the next {policy.horizon_weeks:g} weeks"


def prospect_scores(
    profile: ProfileChanged,
    features: ProspectFeatures,
    reference: ProspectFeatures | None,
    model_version: str,
    as_of: datetime,
) -> ScoresUpdated:
    """Return the scores of a prospect: tier P, no value yet, and a potential."""
    score, reasons = potential(features, reference)
    return ScoresUpdated(
        profile_id=profile.profile_id,
        profile_version=profile.version,
        model_version=model_version,
        lifecycle=Lifecycle.PROSPECT,
        tier=Tier.P,
        predicted_value=0.0,
        potential=score,
        cost_to_serve=float(profile.aggregates.cost_to_serve),
        reasons=[
            reason(code="purchase_count", value=0, detail="no sale recorded yet"),
            *reasons,
        ],
        as_of=as_of,
    )


def segment_of(
    profile: ProfileChanged | None, previous: ScoresUpdated | None, policy: ScoringPolicy
) -> tuple[Segment, Reason] | None:
    """Return the segment from the profile, or keep the stored one when only time passed."""
    if profile is not None:
        return relationship_segment(profile, policy.segments)
    if previous is None or previous.segment is None:
        return None
    rule = next((r for r in previous.reasons if r.code == "segment_rule"), None)
    return previous.segment, rule or reason(code="segment_rule", detail="kept from last change")
