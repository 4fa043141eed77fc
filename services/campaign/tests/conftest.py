"""Builders of the events the campaign service consumes, shared by its test suites."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clientela.shared.contracts import (
    Channel,
    ConsentState,
    ConsentStatus,
    Lifecycle,
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    Tier,
    TierChanged,
    TierChangedEvent,
    TierMove,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class EventFactory:
    """Builds ProfileChanged and TierChanged events with sensible defaults."""

    def profile(
        self,
        profile_id: str,
        version: int = 1,
        *,
        lifecycle: Lifecycle = Lifecycle.CUSTOMER,
        reachable: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS, Channel.PHONE),
        consent: dict[Channel, ConsentStatus] | None = None,
    ) -> ProfileChangedEvent:
        """Return a profile change with the given contact facts."""
        return ProfileChangedEvent(
            source="profile",
            data=ProfileChanged(
                profile_id=profile_id,
                version=version,
                lifecycle=lifecycle,
                created_at=NOW,
                reachable_channels=list(reachable),
                consent={
                    ch: ConsentState(status=st, updated_at=NOW, source="test")
                    for ch, st in (consent or {}).items()
                },
                aggregates=ProfileAggregates(currency="EUR"),
            ),
        )

    def tier(
        self,
        profile_id: str,
        version: int = 1,
        *,
        move: TierMove = TierMove.UP,
        from_tier: Tier | None = Tier.B,
        to_tier: Tier = Tier.A,
        lifecycle: Lifecycle = Lifecycle.CUSTOMER,
        correlation_id: str | None = None,
    ) -> TierChangedEvent:
        """Return a tier change of the given profile version."""
        return TierChangedEvent(
            source="scoring",
            correlation_id=correlation_id,
            data=TierChanged(
                profile_id=profile_id,
                profile_version=version,
                from_tier=from_tier,
                to_tier=to_tier,
                move=move,
                lifecycle=lifecycle,
                predicted_value=1234.5,
                model_version="test",
            ),
        )


@pytest.fixture
def events() -> EventFactory:
    """Return the event builder."""
    return EventFactory()


@pytest.fixture
def treatment_profile_ids() -> list[str]:
    """Return profile ids outside every default control group (global 5%, campaigns 10%)."""
    from clientela.campaign.domain.holdout import campaign_bucket, global_bucket

    campaigns = ("welcome-to-a", "grow-to-b", "slipping-a", "prospect-acquisition")
    found = [
        pid
        for pid in (f"p-{n}" for n in range(200))
        if global_bucket(pid) >= 0.05 and all(campaign_bucket(c, pid) >= 0.1 for c in campaigns)
    ]
    return found[:20]
