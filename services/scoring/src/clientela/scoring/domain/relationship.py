"""Explainable rules over a profile's aggregates: relationship segment, profitability, at risk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clientela.scoring.domain.profile_view import ProfileView
from clientela.scoring.domain.reasons import ReasonData, reason
from clientela.shared.contracts import Segment

_SERVICE_KINDS = ("phone_call", "branch_visit", "support_case", "chat")
_STRATEGIC_TRAIT = "account_type"
_STRATEGIC_VALUES = frozenset({"strategic", "key", "key_account"})


@dataclass(frozen=True, slots=True)
class SegmentRules:
    """Thresholds of the relationship segment rules, checked in this order."""

    collaborative_purchase_days: int = 12
    collaborative_outbound: int = 6
    collaborative_channels: int = 3
    solutions_service_per_purchase: float = 1.0
    solutions_purchase_days: int = 2
    relational_purchase_days: int = 4
    relational_channels: int = 2


def relationship_segment(
    profile: ProfileView, rules: SegmentRules = SegmentRules()
) -> tuple[Segment, ReasonData] | None:
    """Return the segment of a customer and the rule that placed them (None for a prospect)."""
    agg = profile.aggregates
    if agg.purchase_count == 0:
        return None
    days = max(agg.purchase_days, 1)
    channels = sum(1 for n in agg.counts_by_channel.values() if n > 0)
    service = sum(agg.counts_by_kind.get(kind, 0) for kind in _SERVICE_KINDS)
    trait = profile.traits.get(_STRATEGIC_TRAIT)
    if isinstance(trait, str) and trait.lower() in _STRATEGIC_VALUES:
        return Segment.COLLABORATIVE, reason(
            code="segment_rule", value=trait, detail="strategic account (account_type trait)"
        )
    if (
        days >= rules.collaborative_purchase_days
        and agg.outbound_count >= rules.collaborative_outbound
        and channels >= rules.collaborative_channels
    ):
        return Segment.COLLABORATIVE, reason(
            code="segment_rule",
            value=days,
            detail=f"buys often ({days} days), {agg.outbound_count} contacts from us, "
            f"{channels} channels: close joint work",
        )
    per_purchase = service / days
    if (
        days >= rules.solutions_purchase_days
        and per_purchase >= rules.solutions_service_per_purchase
    ):
        return Segment.SOLUTIONS, reason(
            code="segment_rule",
            value=round(per_purchase, 2),
            detail="service contacts (calls, visits, cases, chats) per purchase day: "
            "buys systems and needs support",
        )
    if days >= rules.relational_purchase_days and channels >= rules.relational_channels:
        return Segment.RELATIONAL, reason(
            code="segment_rule",
            value=days,
            detail=f"loyal and frequent: buys on {days} days across {channels} channels",
        )
    return Segment.TRANSACTIONAL, reason(
        code="segment_rule",
        value=days,
        detail="few purchases or a single channel: buys on price, case by case",
    )


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """When a valuable customer counts as at risk, and when a customer costs more than it brings."""

    at_risk_probability_alive: float = 0.5
    gross_margin: float = 0.3


def margin_after_cost(
    total_spend: npt.NDArray[np.float64], cost_to_serve: npt.NDArray[np.float64], margin: float
) -> npt.NDArray[np.float64]:
    """Return what a customer brought so far: gross margin on their spend minus cost to serve."""
    return np.asarray(total_spend * margin - cost_to_serve, dtype=np.float64)


def at_risk(
    tier_codes: npt.NDArray[np.int8],
    probability_alive: npt.NDArray[np.float64] | None,
    threshold: float,
    a_code: int,
) -> npt.NDArray[np.bool_]:
    """Return True for tier A customers whose probability of still buying fell below threshold."""
    if probability_alive is None:
        return np.zeros(tier_codes.shape, dtype=np.bool_)
    return np.asarray((tier_codes == a_code) & (probability_alive < threshold), dtype=np.bool_)
