"""RFM groups, relationship segments, potential and at-risk rules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clientela.scoring.domain.facts import FactColumns
from clientela.scoring.domain.potential import ProspectFeatures, potential
from clientela.scoring.domain.relationship import at_risk, relationship_segment
from clientela.scoring.domain.rfm import fit_rfm_edges, rfm_scores
from clientela.shared.contracts import ProfileChangedEvent, Segment

MakeProfile = Callable[..., ProfileChangedEvent]
DAY = 86_400.0


def columns(days: list[int], spend: list[float], last_days_ago: list[float]) -> FactColumns:
    n = len(days)
    return FactColumns(
        purchase_days=np.array(days, dtype=np.float64),
        purchase_count=np.array(days, dtype=np.float64),
        first_purchase_s=np.full(n, -1000 * DAY),
        last_purchase_s=-np.array(last_days_ago) * DAY,
        total_spend=np.array(spend),
        cost_to_serve=np.zeros(n),
    )


def test_rfm_quintiles_rank_recent_frequent_big_spenders_high() -> None:
    facts = columns(
        days=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        spend=[10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
        last_days_ago=[100, 90, 80, 70, 60, 50, 40, 30, 20, 10],
    )
    edges = fit_rfm_edges(facts, 0.0, groups=5)
    scores = rfm_scores(facts, 0.0, edges)
    assert scores.recency.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores.frequency.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores.monetary.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_rfm_groups_are_configurable() -> None:
    facts = columns(days=[1, 5, 9], spend=[1, 5, 9], last_days_ago=[9, 5, 1])
    scores = rfm_scores(facts, 0.0, fit_rfm_edges(facts, 0.0, groups=3))
    assert scores.monetary.tolist() == [1, 2, 3]


def test_segments_follow_explainable_rules(profile_changed: MakeProfile) -> None:
    def segment(**kwargs: object) -> Segment | None:
        found = relationship_segment(profile_changed("p", 1, **kwargs).data)
        return found[0] if found else None

    assert segment() is None
    assert segment(spend="10") is Segment.TRANSACTIONAL
    assert (
        segment(spend="10", purchases=5, counts_by_channel={"web": 3, "email": 2})
        is Segment.RELATIONAL
    )
    assert (
        segment(spend="10", purchases=3, counts_by_kind={"support_case": 2, "phone_call": 2})
        is Segment.SOLUTIONS
    )
    assert (
        segment(
            spend="10",
            purchases=15,
            outbound_count=8,
            counts_by_channel={"web": 3, "email": 2, "branch": 4},
        )
        is Segment.COLLABORATIVE
    )


def test_potential_parts_are_each_between_zero_and_one() -> None:
    reference = ProspectFeatures({"web": 0.5, "email": 0.5}, touchpoints=10, inbound_share=0.8)
    score, reasons = potential(ProspectFeatures({"web": 1.0}, 5, 0.8), reference)
    assert score == (0.5 + 0.5 + 1.0) / 3
    assert [r["code"] for r in reasons] == [
        "potential",
        "potential_channel_mix",
        "potential_engagement",
        "potential_inbound",
    ]


def test_only_tier_a_customers_become_at_risk() -> None:
    flags = at_risk(
        np.array([3, 3, 2], dtype=np.int8), np.array([0.2, 0.9, 0.1]), threshold=0.5, a_code=3
    )
    assert flags.tolist() == [True, False, False]
