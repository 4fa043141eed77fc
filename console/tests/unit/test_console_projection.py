"""Planning read-model changes from a batch of topic events."""

from __future__ import annotations

from datetime import UTC, datetime

from clientela.console.application.projection import plan
from clientela.shared.contracts import (
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    ProfileErased,
    ProfileErasedEvent,
    ProfilesMerged,
    ProfilesMergedEvent,
    ScoresUpdated,
    ScoresUpdatedEvent,
    TierChanged,
    TierChangedEvent,
)

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def scores(pid: str, version: int, tier: str) -> ScoresUpdatedEvent:
    """Return a ScoresUpdated event."""
    return ScoresUpdatedEvent(
        occurred_at=NOW,
        source="scoring",
        data=ScoresUpdated(
            profile_id=pid,
            profile_version=version,
            model_version="m",
            lifecycle="customer",
            tier=tier,
            predicted_value=1.0,
        ),
    )


def profile(pid: str, version: int) -> ProfileChangedEvent:
    """Return a ProfileChanged event."""
    return ProfileChangedEvent(
        occurred_at=NOW,
        source="profile",
        data=ProfileChanged(
            profile_id=pid,
            version=version,
            lifecycle="customer",
            created_at=NOW,
            aggregates=ProfileAggregates(currency="EUR", counts_by_channel={"web": version}),
        ),
    )


def move(pid: str) -> TierChangedEvent:
    """Return a TierChanged event."""
    return TierChangedEvent(
        occurred_at=NOW,
        source="scoring",
        data=TierChanged(
            profile_id=pid,
            profile_version=1,
            from_tier="C",
            to_tier="B",
            move="up",
            lifecycle="customer",
            predicted_value=5,
            model_version="m",
        ),
    )


def test_the_latest_state_of_each_profile_wins_within_a_batch() -> None:
    changes = plan([scores("p1", 2, "B"), scores("p1", 1, "C"), profile("p1", 3), profile("p1", 2)])
    assert changes.scores["p1"].tier == "B"
    assert changes.profiles["p1"].channel_counts == {"web": 3}


def test_merged_and_erased_profiles_are_retired() -> None:
    merged = ProfilesMergedEvent(
        occurred_at=NOW,
        source="profile",
        data=ProfilesMerged(survivor_id="p1", merged_id="p2", rule="r", identifier_types=["email"]),
    )
    erased = ProfileErasedEvent(
        occurred_at=NOW,
        source="profile",
        data=ProfileErased(profile_id="p3", request_id="r", erased_at=NOW),
    )
    changes = plan([scores("p2", 1, "C"), profile("p3", 1), move("p3"), move("p2"), merged, erased])
    assert changes.merged_away == {"p2"}
    assert changes.erased == {"p3"}
    assert changes.scores == {}
    assert changes.profiles == {}
    assert [m.profile_id for m in changes.tier_moves] == ["p2"]  # history of a merged id stays
    assert len(changes.merges) == 1


def test_an_empty_batch_changes_nothing() -> None:
    assert not plan([])
