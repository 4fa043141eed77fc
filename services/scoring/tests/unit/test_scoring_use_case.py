"""Streaming use case on an in-memory unit of work: events, idempotency, ranking, hysteresis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from clientela.scoring.application.ports import ProfileChangeMessage
from clientela.scoring.application.service import ScoringApplication
from clientela.shared.codec import EncodedEvent
from clientela.shared.contracts import (
    ProfileChangedEvent,
    ScoresUpdatedEvent,
    Segment,
    Tier,
    TierChangedEvent,
    TierMove,
    derived_event_id,
)
from clientela.shared.contracts.topics import SCORES, TIER_CHANGES

MakeProfile = Callable[..., ProfileChangedEvent]


def msg(event: ProfileChangedEvent, accepted_at_ms: int | None = None) -> ProfileChangeMessage:
    return ProfileChangeMessage(event, accepted_at_ms)


async def test_first_purchase_scores_and_enters_tier_a(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    cause = profile_changed("p-1", 1, spend="100", correlation_id="corr-1")
    outcome = await application.score_profiles([msg(cause, 1234)], uow)

    assert (outcome.scored, outcome.tier_changes, outcome.staged) == (1, 1, True)
    assert [(o.topic, o.key, o.accepted_at_ms) for o in uow.outbox] == [
        (SCORES, "p-1", 1234),
        (TIER_CHANGES, "p-1", 1234),
    ]
    (updated,) = uow.events(ScoresUpdatedEvent)
    assert updated.event_id == derived_event_id("scores.updated", "p-1", "r1")
    assert (updated.causation_id, updated.correlation_id) == (cause.event_id, "corr-1")
    data = updated.data
    assert (data.tier, data.model_version) == (Tier.A, "decayed-spend-v0")
    assert data.predicted_value == pytest.approx(100)
    assert data.segment is Segment.TRANSACTIONAL
    assert data.rfm is not None
    assert data.profitable is True
    # The event's own fields are not repeated as reasons; the TierChanged carries them all.
    assert "predicted_value" not in {r.code for r in data.reasons}
    assert {r.code for r in data.reasons} >= {
        "total_spend",
        "days_since_last_purchase",
        "rfm",
        "segment_rule",
        "a_cutoff",
        "hysteresis",
    }
    (changed,) = uow.events(TierChangedEvent)
    assert changed.event_id == derived_event_id("tier.changed", "p-1", "t1")
    assert (changed.data.from_tier, changed.data.to_tier) == (None, Tier.A)
    assert changed.data.move is TierMove.ENTERED
    assert {r.code for r in changed.data.reasons} >= {
        "predicted_value",
        "cost_to_serve",
        "total_spend",
        "segment_rule",
        "a_cutoff",
    }
    assert changed.causation_id == cause.event_id
    assert [(h.profile_id, h.from_tier, h.to_tier) for h in uow.history] == [("p-1", None, Tier.A)]


async def test_correlation_defaults_to_the_cause(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    cause = profile_changed("p-1", 1, spend="5")
    await application.score_profiles([msg(cause)], uow)
    assert {o.event.correlation_id for o in uow.outbox} == {cause.event_id}
    assert {o.accepted_at_ms for o in uow.outbox} == {None}


async def test_prospect_enters_tier_p_without_potential_until_a_customers_exist(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles([msg(profile_changed("p-1", 1))], uow)
    (updated,) = uow.events(ScoresUpdatedEvent)
    assert (updated.data.tier, updated.data.predicted_value) == (Tier.P, 0)
    assert updated.data.potential is None
    (changed,) = uow.events(TierChangedEvent)
    assert (changed.data.from_tier, changed.data.to_tier) == (None, Tier.P)


async def test_prospects_get_a_potential_from_a_customers_seen_as_prospects(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    web = {"counts_by_channel": {"web": 8, "email": 2}, "touchpoint_count": 10, "inbound_count": 8}
    branch = {"counts_by_channel": {"branch": 1}, "touchpoint_count": 1, "outbound_count": 1}
    # "star" was a web-heavy prospect and became the top customer.
    await application.score_profiles([msg(profile_changed("star", 1, **web))], uow)
    await application.score_profiles([msg(profile_changed("star", 2, spend="500", **web))], uow)
    await application.score_profiles(
        [msg(profile_changed("alike", 1, **web)), msg(profile_changed("other", 1, **branch))], uow
    )
    latest = {e.data.profile_id: e.data for e in uow.events(ScoresUpdatedEvent)}
    assert latest["star"].tier is Tier.A
    assert latest["alike"].potential == pytest.approx(1.0)
    assert latest["other"].potential is not None
    assert latest["other"].potential < 0.3
    assert {r.code for r in latest["other"].reasons} >= {
        "potential_channel_mix",
        "potential_engagement",
        "potential_inbound",
    }


async def test_redelivery_is_a_no_op(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    event = profile_changed("p-1", 1, spend="100")
    await application.score_profiles([msg(event)], uow)
    staged = list(uow.outbox)

    outcome = await application.score_profiles([msg(event)], uow)

    assert (outcome.scored, outcome.staged, outcome.ignored) == (0, False, 1)
    assert uow.outbox == staged


async def test_older_version_is_skipped(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles([msg(profile_changed("p-1", 3, spend="100"))], uow)
    outcome = await application.score_profiles([msg(profile_changed("p-1", 2, spend="5000"))], uow)
    assert outcome.scored == 0
    assert uow.scores.rows["p-1"].profile_version == 3
    assert len(uow.events(ScoresUpdatedEvent)) == 1


async def test_only_the_newest_version_in_a_batch_is_scored(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    batch = [
        msg(profile_changed("p-1", 2, spend="20")),
        msg(profile_changed("p-1", 4, spend="40")),
        msg(profile_changed("p-1", 3, spend="30")),
    ]
    outcome = await application.score_profiles(batch, uow)
    assert (outcome.scored, outcome.ignored) == (1, 2)
    (updated,) = uow.events(ScoresUpdatedEvent)
    assert updated.data.profile_version == 4
    assert updated.data.predicted_value == pytest.approx(40)
    # No inbox row per change: the stored version 4 makes the whole batch a repeat.
    assert uow.inbox == set()
    again = await application.score_profiles(batch, uow)
    assert (again.scored, again.ignored) == (0, 3)
    assert len(uow.events(ScoresUpdatedEvent)) == 1


async def test_tier_change_is_emitted_once_and_scores_get_new_ids(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    for version, spend in ((1, "100"), (2, "150"), (3, "180")):
        await application.score_profiles([msg(profile_changed("p-1", version, spend=spend))], uow)

    scores = uow.events(ScoresUpdatedEvent)
    assert [e.data.profile_version for e in scores] == [1, 2, 3]
    assert len({e.event_id for e in scores}) == 3
    assert [e.data.to_tier for e in uow.events(TierChangedEvent)] == [Tier.A]


async def test_a_new_top_customer_ranks_against_the_population(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles([msg(profile_changed("small", 1, spend="10"))], uow)
    await application.score_profiles([msg(profile_changed("big", 1, spend="90"))], uow)
    # A change of nothing scoring reads is not scored again (the sweep re-ranks everyone).
    same = await application.score_profiles([msg(profile_changed("small", 2, spend="10"))], uow)
    assert (same.scored, same.ignored) == (0, 1)
    await application.score_profiles([msg(profile_changed("small", 3, spend="11"))], uow)

    moves = [
        (e.data.profile_id, e.data.from_tier, e.data.to_tier, e.data.move)
        for e in uow.events(TierChangedEvent)
    ]
    assert moves == [
        ("small", None, Tier.A, TierMove.ENTERED),
        ("big", None, Tier.A, TierMove.ENTERED),
        ("small", Tier.A, Tier.B, TierMove.DOWN),
    ]


async def test_batch_values_replace_stored_ones_when_ranking(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles(
        [msg(profile_changed("a", 1, spend="90")), msg(profile_changed("b", 1, spend="10"))], uow
    )
    await application.score_profiles(
        [msg(profile_changed("a", 2, spend="10")), msg(profile_changed("b", 2, spend="90"))], uow
    )
    latest = {pid: s.tier for pid, s in uow.scores.rows.items()}
    assert latest == {"a": Tier.B, "b": Tier.A}


async def test_nothing_is_kept_when_the_batch_fails(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    async def broken(events: Sequence[EncodedEvent]) -> None:
        raise RuntimeError("outbox unavailable")

    uow.stage_encoded = broken
    with pytest.raises(RuntimeError):
        await application.score_profiles([msg(profile_changed("p-1", 1, spend="100"))], uow)
    assert uow.outbox == []
    assert uow.commits == 0
    assert len(application.population) == 0


async def test_only_changes_of_what_scoring_reads_are_scored_again(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    first = profile_changed("p-1", 1, spend="100", counts_by_channel={"web": 2})
    await application.score_profiles([msg(first)], uow)
    # Another page view, or a second channel: the segment (one purchase) and facts stay.
    page_view = profile_changed("p-1", 2, spend="100", counts_by_channel={"web": 3, "app": 1})
    costlier = profile_changed(
        "p-1", 3, spend="100", counts_by_channel={"web": 3, "app": 1}, cost_to_serve="5"
    )
    purchase = profile_changed(
        "p-1", 4, spend="160", purchases=2, counts_by_channel={"web": 4, "app": 1}
    )
    prospect = profile_changed("q-1", 1, touchpoint_count=1)
    prospect_again = profile_changed("q-1", 2, touchpoint_count=1)

    skipped = await application.score_profiles([msg(page_view)], uow)
    await application.score_profiles([msg(prospect)], uow)
    skipped_prospect = await application.score_profiles([msg(prospect_again)], uow)
    cost_only = await application.score_profiles([msg(costlier)], uow)
    rescored = await application.score_profiles([msg(purchase)], uow)

    assert (skipped.scored, skipped_prospect.scored, cost_only.scored, rescored.scored) == (
        0,
        0,
        0,
        1,
    )
    versions = [(e.data.profile_id, e.data.profile_version) for e in uow.events(ScoresUpdatedEvent)]
    assert versions == [("p-1", 1), ("q-1", 1), ("p-1", 4)]


async def test_a_cost_only_change_is_stored_but_not_published(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles([msg(profile_changed("p-1", 1, spend="100"))], uow)
    await application.score_profiles([msg(profile_changed("q-1", 1, touchpoint_count=3))], uow)
    published = list(uow.outbox)

    web_visit = profile_changed("p-1", 2, spend="100", cost_to_serve="0.01")
    prospect_visit = profile_changed("q-1", 2, touchpoint_count=3, cost_to_serve="0.02")
    outcome = await application.score_profiles([msg(web_visit), msg(prospect_visit)], uow)

    assert (outcome.scored, outcome.staged) == (0, False)
    assert uow.outbox == published
    stored = uow.scores.rows
    assert (stored["p-1"].profile_version, stored["p-1"].cost_to_serve) == (2, 0.01)
    assert (stored["q-1"].profile_version, stored["q-1"].cost_to_serve) == (2, 0.02)
    facts = stored["p-1"].facts
    assert facts is not None
    assert facts.cost_to_serve == 0.01
    assert await uow.stale_ids() == ["p-1", "q-1"]


async def test_redelivered_skipped_and_cost_only_changes_stay_no_ops(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles([msg(profile_changed("p-1", 1, spend="100"))], uow)
    consent_only = profile_changed("p-1", 2, spend="100")
    cost_only = profile_changed("p-1", 3, spend="100", cost_to_serve="0.5")
    await application.score_profiles([msg(consent_only), msg(cost_only)], uow)
    published, stored = list(uow.outbox), uow.scores.rows["p-1"]

    again = await application.score_profiles([msg(consent_only), msg(cost_only)], uow)
    older = await application.score_profiles([msg(consent_only)], uow)

    assert (again.scored, again.staged, older.scored) == (0, False, 0)
    assert uow.outbox == published
    assert uow.scores.rows["p-1"] == stored


async def test_a_prospect_crossing_a_bucket_is_stored_for_the_sweep_while_its_potential_stays(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    # Touch counts go in octave buckets: 12 and 13 share 7-14, 15 starts the next. With no
    # tier A customer seen as a prospect there is no potential, so none of it is news.
    outcomes = [
        await application.score_profiles(
            [msg(profile_changed("q-1", version, touchpoint_count=touches))], uow
        )
        for version, touches in ((1, 12), (2, 13), (3, 15))
    ]

    assert [o.scored for o in outcomes] == [1, 0, 0]
    versions = [e.data.profile_version for e in uow.events(ScoresUpdatedEvent)]
    assert versions == [1]
    stored = uow.scores.rows["q-1"]
    assert stored.prospect_features is not None
    assert (stored.profile_version, stored.prospect_features.touchpoints) == (3, 15.0)
    assert await uow.stale_ids() == ["q-1"]
    # The new fingerprint is kept: the next change inside the same buckets is not scored.
    again = await application.score_profiles(
        [msg(profile_changed("q-1", 4, touchpoint_count=16))], uow
    )
    assert again.scored == 0


async def test_a_prospect_is_published_again_when_its_potential_moves_past_the_tolerance(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    web = {"counts_by_channel": {"web": 8, "email": 2}, "touchpoint_count": 10, "inbound_count": 8}
    branch = {"counts_by_channel": {"branch": 1}, "touchpoint_count": 1, "outbound_count": 1}
    await application.score_profiles([msg(profile_changed("star", 1, **web))], uow)
    await application.score_profiles([msg(profile_changed("star", 2, spend="500", **web))], uow)
    await application.score_profiles([msg(profile_changed("q-1", 1, **branch))], uow)
    outcome = await application.score_profiles([msg(profile_changed("q-1", 2, **web))], uow)

    assert outcome.scored == 1
    published = [e.data for e in uow.events(ScoresUpdatedEvent) if e.data.profile_id == "q-1"]
    assert [d.profile_version for d in published] == [1, 2]
    first, second = (d.potential for d in published)
    assert first is not None
    assert second == pytest.approx(1.0)
    assert uow.scores.rows["q-1"].potential == second


async def test_a_prospect_moving_inside_its_buckets_is_stored_for_the_sweep(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles([msg(profile_changed("q-1", 1, touchpoint_count=8))], uow)
    outcome = await application.score_profiles(
        [msg(profile_changed("q-1", 2, touchpoint_count=9))], uow
    )

    assert outcome.scored == 0
    stored = uow.scores.rows["q-1"]
    assert stored.prospect_features is not None
    assert (stored.profile_version, stored.prospect_features.touchpoints) == (2, 9.0)
    assert await uow.stale_ids() == ["q-1"]
