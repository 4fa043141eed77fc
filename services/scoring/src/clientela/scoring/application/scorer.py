"""Turns model estimates and the population's ranking into published scores, with reasons.

Everything numeric is computed for a whole batch (or sweep) at once with numpy; the per
profile work left is assembling plain dicts in the contract's shape, which `wire` encodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from hashlib import blake2b
from typing import Any

import numpy as np
import numpy.typing as npt

from clientela.scoring.application.population import RankingContext
from clientela.scoring.application.publishing import ScoresData
from clientela.scoring.application.wire import encode, published_segment
from clientela.scoring.domain.facts import CustomerFacts, FactColumns, FloatArray
from clientela.scoring.domain.potential import ProspectFeatures, potential, prospect_buckets
from clientela.scoring.domain.profile_view import ProfileView
from clientela.scoring.domain.reasons import ReasonData, reason
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
    Segment,
    Tier,
)

log = logging.getLogger(__name__)

Index = npt.NDArray[np.intp]


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


@dataclass(frozen=True, slots=True)
class ScoredProfile:
    """Who a row of customer scores belongs to: id, profile version, lifecycle, segment."""

    profile_id: str
    profile_version: int
    lifecycle: Lifecycle
    segment: tuple[Segment, ReasonData] | None


def within_contract(estimates: Estimates) -> Estimates:
    """Return estimates inside the contract's bounds (finite, >= 0, probabilities in 0..1).

    The closed forms stay in bounds for sane inputs; this one vectorised pass is what lets the
    events be encoded without validating each field again, and it turns a pathological input
    into a logged zero instead of a batch that fails on every redelivery.
    """

    def bounded(column: FloatArray | None, high: float = np.inf) -> FloatArray | None:
        if column is None:
            return None
        if np.isfinite(column).all() and (column >= 0).all() and (column <= high).all():
            return column
        bad = int(np.count_nonzero(~np.isfinite(column)))
        if bad:
            log.warning("%d estimate(s) were not finite; scored as 0", bad)
        return np.clip(np.nan_to_num(column, nan=0.0, posinf=0.0, neginf=0.0), 0.0, high)

    value = bounded(estimates.predicted_value)
    assert value is not None
    return replace(
        estimates,
        predicted_value=value,
        expected_purchases=bounded(estimates.expected_purchases),
        probability_alive=bounded(estimates.probability_alive, 1.0),
        expected_spend=bounded(estimates.expected_spend),
    )


def score_customers(
    model: ValueModel,
    facts: FactColumns,
    as_of: datetime,
    previous_tiers: TierCodes,
    context: RankingContext,
    policy: ScoringPolicy,
) -> CustomerScores:
    """Return predicted value, tier (with hysteresis), risk, RFM and margin of every row."""
    estimates = within_contract(model.estimate(facts, as_of))
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


def _values(column: FloatArray | None, idx: Index | slice, n: int) -> list[Any]:
    return [None] * n if column is None else column[idx].tolist()


def _rounded(column: FloatArray | None, idx: Index | slice, n: int, digits: int) -> list[Any]:
    return [None] * n if column is None else np.round(column[idx], digits).tolist()


def customer_payloads(
    scores: CustomerScores,
    rows: Index | None,
    profiles: Sequence[ScoredProfile],
    *,
    model_version: str,
    facts: FactColumns,
    as_of: datetime,
    context: RankingContext,
    policy: ScoringPolicy,
) -> list[ScoresData]:
    """Return the ScoresUpdated payloads of the given rows (all when None), as plain data.

    Numbers go through numpy once per batch and reach Python with `tolist`. The payload's
    reasons carry the numbers behind the scores that are not fields of the event (spend,
    purchase days, recency, RFM, margin, segment rule, risk, the tier lines); the fields'
    own reasons are added back by `all_reasons` for a TierChanged and for the HTTP API.
    """
    idx: Index | slice = slice(None) if rows is None else rows
    n = len(profiles)
    est = scores.estimates
    value = est.predicted_value[idx].tolist()
    alive = _values(est.probability_alive, idx, n)
    purchases = _values(est.expected_purchases, idx, n)
    order_value = _values(est.expected_spend, idx, n)
    tiers = scores.tiers[idx].tolist()
    risky = scores.at_risk[idx].tolist()
    alive_r = _rounded(est.probability_alive, idx, n, 4)
    recency = scores.rfm.recency[idx].tolist()
    frequency = scores.rfm.frequency[idx].tolist()
    monetary = scores.rfm.monetary[idx].tolist()
    since = np.round(scores.rfm.recency_days[idx], 1).tolist()
    margin = scores.margin[idx].tolist()
    margin_r = np.round(scores.margin[idx], 2).tolist()
    spend_r = np.round(facts.total_spend[idx], 2).tolist()
    days = facts.purchase_days[idx].astype(np.int64).tolist()
    cost = facts.cost_to_serve[idx].tolist()
    horizon = policy.horizon_weeks if est.expected_purchases is not None else None
    as_of_text = as_of.isoformat().replace("+00:00", "Z")
    cutoff_reasons = context.cutoffs.reasons()
    rfm_detail = f"recency-frequency-monetary group, 1 to {context.rfm_edges.groups}"
    margin_detail = f"{policy.risk.gross_margin:.0%} margin on spend minus cost to serve"
    risk_detail = (
        f"tier A with a chance of still buying below {policy.risk.at_risk_probability_alive:.0%}"
    )
    tier_names = [t.value for t in TIER_OF_CODE]
    out: list[ScoresData] = []
    for i in range(n):
        who = profiles[i]
        tier = tier_names[tiers[i]]
        rfm = {"recency": recency[i], "frequency": frequency[i], "monetary": monetary[i]}
        reasons: list[ReasonData] = [
            {"code": "total_spend", "value": spend_r[i], "detail": ""},
            {"code": "purchase_days", "value": days[i], "detail": "days with a sale"},
            {"code": "days_since_last_purchase", "value": since[i], "detail": ""},
            {
                "code": "rfm",
                "value": f"{recency[i]}-{frequency[i]}-{monetary[i]}",
                "detail": rfm_detail,
            },
            {"code": "margin_after_cost", "value": margin_r[i], "detail": margin_detail},
        ]
        if margin[i] < 0 and tier == "C":
            reasons.append(
                reason(
                    "low_value_high_cost",
                    margin_r[i],
                    "costs more to serve than the margin they bring",
                )
            )
        if who.segment is not None:
            reasons.append(who.segment[1])
        if risky[i]:
            reasons.append(reason("at_risk", alive_r[i] or 0.0, risk_detail))
        reasons.extend(cutoff_reasons)
        out.append(
            {
                "profile_id": who.profile_id,
                "profile_version": who.profile_version,
                "model_version": model_version,
                "lifecycle": who.lifecycle.value,
                "tier": tier,
                "predicted_value": value[i],
                "probability_alive": alive[i],
                "rfm": rfm,
                "segment": who.segment[0].value if who.segment is not None else None,
                "potential": None,
                "cost_to_serve": cost[i],
                "at_risk": risky[i],
                "reasons": reasons,
                "as_of": as_of_text,
                "expected_purchases": purchases[i],
                "expected_order_value": order_value[i],
                "horizon_weeks": horizon,
                "profitable": margin[i] >= 0,
            }
        )
    return out


def field_reasons(
    *,
    predicted_value: float,
    expected_purchases: float | None,
    expected_order_value: float | None,
    probability_alive: float | None,
    cost_to_serve: float,
    horizon_weeks: float | None,
) -> list[ReasonData]:
    """Return the reasons of a customer's scored fields (value, purchases, spend, P(alive))."""
    if horizon_weeks is None:
        detail = "past spend, halved for every half-life without a purchase"
    else:
        detail = f"expected spend over the next {horizon_weeks:g} weeks"
    out = [reason("predicted_value", round(predicted_value, 2), detail)]
    if expected_purchases is not None:
        out.append(
            reason(
                "expected_purchases",
                round(expected_purchases, 3),
                f"purchase days expected over the next {horizon_weeks or 0:g} weeks",
            )
        )
    if expected_order_value is not None:
        out.append(reason("expected_order_value", round(expected_order_value, 2), "per purchase"))
    if probability_alive is not None:
        out.append(
            reason(
                "probability_alive",
                round(probability_alive, 4),
                "chance they are still buying from us",
            )
        )
    out.append(reason("cost_to_serve", round(cost_to_serve, 2)))
    return out


def all_reasons(data: Mapping[str, Any]) -> list[ReasonData]:
    """Return every reason of a ScoresUpdated payload: its fields' reasons, then its own.

    A prospect's payload already carries all of its reasons. Reasons the payload carries
    itself win over field reasons of the same code (scores stored before the payload was
    slimmed down carry both).
    """
    carried: list[ReasonData] = list(data.get("reasons") or ())
    if data.get("tier") in (Tier.P, Tier.P.value):
        return carried
    codes = {r["code"] for r in carried}
    derived = field_reasons(
        predicted_value=float(data["predicted_value"]),
        expected_purchases=data.get("expected_purchases"),
        expected_order_value=data.get("expected_order_value"),
        probability_alive=data.get("probability_alive"),
        cost_to_serve=float(data.get("cost_to_serve") or 0.0),
        horizon_weeks=data.get("horizon_weeks"),
    )
    return [r for r in derived if r["code"] not in codes] + carried


@dataclass(frozen=True, slots=True)
class ScoredProspect:
    """Who a prospect's scores belong to: id, profile version, cost to serve so far."""

    profile_id: str
    profile_version: int
    cost_to_serve: float


def prospect_payload(
    prospect: ScoredProspect,
    features: ProspectFeatures,
    reference: ProspectFeatures | None,
    model_version: str,
    as_of: datetime,
) -> ScoresData:
    """Return the scores of a prospect: tier P, no value yet, and a potential."""
    score, reasons = potential(features, reference)
    return {
        "profile_id": prospect.profile_id,
        "profile_version": prospect.profile_version,
        "model_version": model_version,
        "lifecycle": Lifecycle.PROSPECT.value,
        "tier": Tier.P.value,
        "predicted_value": 0.0,
        "probability_alive": None,
        "rfm": None,
        "segment": None,
        # Rounding can put a resemblance of exactly 1 a hair above it.
        "potential": None if score is None else min(1.0, max(0.0, score)),
        "cost_to_serve": prospect.cost_to_serve,
        "at_risk": False,
        "reasons": [reason("purchase_count", 0, "no sale recorded yet"), *reasons],
        "as_of": as_of.isoformat().replace("+00:00", "Z"),
        "expected_purchases": None,
        "expected_order_value": None,
        "horizon_weeks": None,
        "profitable": None,
    }


def inputs_digest(
    lifecycle: Lifecycle,
    facts: CustomerFacts | None,
    segment: tuple[Segment, ReasonData] | None,
    features: ProspectFeatures | None,
) -> int:
    """Return a stable 63-bit fingerprint of what a profile's value, tier and segment read.

    Cost to serve is left out (every touchpoint adds to it; the sweep publishes its drift) and
    a prospect's features count only by their coarse buckets, so a page view changes nothing.
    """
    key = (
        lifecycle.value,
        None
        if facts is None
        else (
            facts.purchase_days,
            facts.purchase_count,
            facts.first_purchase_s,
            facts.last_purchase_s,
            facts.total_spend,
        ),
        None if segment is None else (segment[0].value, segment[1]["value"], segment[1]["detail"]),
        None if features is None else prospect_buckets(features),
    )
    # Stable across processes (unlike hash()), and small enough for a BIGINT column.
    digest = blake2b(encode(key), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def segment_of(profile: ProfileView, policy: ScoringPolicy) -> tuple[Segment, ReasonData] | None:
    """Return the segment of a profile and the rule that placed it (None for a prospect)."""
    return relationship_segment(profile, policy.segments)


def kept_segment(state: bytes) -> tuple[Segment, ReasonData] | None:
    """Return the segment stored scores published, kept while only time passes (sweeps)."""
    segment, rule = published_segment(state)
    if segment is None:
        return None
    if rule is None:
        return Segment(segment), reason("segment_rule", detail="kept from last change")
    return Segment(segment), reason(rule["code"], rule["value"], rule["detail"])
