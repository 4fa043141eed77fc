"""Folding scores into a contact keeps every other fact (the fold names each field)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

from clientela.campaign.domain.model import Contact, ScoreFacts
from clientela.campaign.domain.triggers import contact_with_scores
from clientela.shared.contracts import Channel, ConsentStatus, Lifecycle, Segment, Tier

AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _everything_set() -> Contact:
    return Contact(
        profile_id="p-1",
        version=7,
        lifecycle=Lifecycle.CUSTOMER,
        reachable_channels=frozenset({Channel.EMAIL, Channel.SMS}),
        consent={Channel.EMAIL: ConsentStatus.OPTED_IN},
        opted_out_at=AT,
        traits={"timezone": "Europe/Madrid"},
        habits={Channel.WEB: 0.7},
        purchase_count=3,
        total_spend=Decimal("120.50"),
        last_seen_at=AT,
        last_purchase_at=AT,
        categories=frozenset({"shoes"}),
        scored_version=6,
        tier=Tier.C,
        segment=Segment.RELATIONAL,
        predicted_value=80.0,
        potential=0.1,
        at_risk=True,
        complained_at=AT,
    )


def test_scores_replace_the_score_facts_and_keep_every_other_field() -> None:
    before = _everything_set()
    # Every field differs from its default: a field the fold forgot would show.
    defaults = Contact(profile_id="x", version=0, lifecycle=Lifecycle.PROSPECT)
    assert all(
        getattr(before, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(Contact)
    )
    scores = ScoreFacts(
        profile_id="p-1",
        profile_version=7,
        lifecycle=Lifecycle.CUSTOMER,
        tier=Tier.B,
        predicted_value=900.0,
        segment=Segment.TRANSACTIONAL,
        potential=None,
        at_risk=False,
    )

    after = contact_with_scores(scores, before)

    assert after == dataclasses.replace(
        before,
        scored_version=7,
        tier=Tier.B,
        segment=Segment.TRANSACTIONAL,
        predicted_value=900.0,
        potential=None,
        at_risk=False,
    )


def test_a_person_only_scored_so_far_gets_a_minimal_contact() -> None:
    scores = ScoreFacts("p-2", 3, Lifecycle.PROSPECT, Tier.P, 0.0, potential=0.8)

    after = contact_with_scores(scores, None)

    assert after == Contact(
        profile_id="p-2",
        version=0,
        lifecycle=Lifecycle.PROSPECT,
        scored_version=3,
        tier=Tier.P,
        predicted_value=0.0,
        potential=0.8,
    )
