"""Builders of the events the campaign service consumes, shared by its test suites."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from clientela.shared.contracts import (
    Channel,
    ConsentState,
    ConsentStatus,
    Direction,
    EmailDetails,
    Identifiers,
    Lifecycle,
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    SaleDetails,
    ScoresUpdated,
    ScoresUpdatedEvent,
    Segment,
    Tier,
    TierChanged,
    TierChangedEvent,
    TierMove,
    Touchpoint,
    TouchpointKind,
    TouchpointRecorded,
)
from clientela.shared.contracts.profile import (
    ProfileErased,
    ProfileErasedEvent,
    ProfilesMerged,
    ProfilesMergedEvent,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CAMPAIGN_IDS = ("welcome-to-a", "grow-to-b", "slipping-a", "prospect-acquisition")


class EventFactory:
    """Builds the consumed events with sensible defaults."""

    def profile(
        self,
        profile_id: str,
        version: int = 1,
        *,
        lifecycle: Lifecycle = Lifecycle.CUSTOMER,
        reachable: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS, Channel.PHONE),
        consent: dict[Channel, ConsentStatus] | None = None,
        consent_at: datetime = NOW,
        traits: dict[str, str | int | float | bool | None] | None = None,
        purchases: int = 0,
        spend: str = "0",
        last_purchase_at: datetime | None = None,
        last_seen_at: datetime | None = None,
        habits: dict[str, int] | None = None,
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
                    ch: ConsentState(status=st, updated_at=consent_at, source="test")
                    for ch, st in (consent or {}).items()
                },
                traits=traits or {},
                aggregates=ProfileAggregates(
                    currency="EUR",
                    purchase_count=purchases,
                    total_spend=Decimal(spend),
                    last_purchase_at=last_purchase_at,
                    last_seen_at=last_seen_at,
                    counts_by_channel=habits or {},
                ),
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
        predicted_value: float = 1234.5,
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
                predicted_value=predicted_value,
                model_version="test",
            ),
        )

    def scores(
        self,
        profile_id: str,
        version: int = 1,
        *,
        tier: Tier = Tier.A,
        lifecycle: Lifecycle = Lifecycle.CUSTOMER,
        predicted_value: float = 1234.5,
        segment: Segment | None = None,
        at_risk: bool = False,
        potential: float | None = None,
    ) -> ScoresUpdatedEvent:
        """Return scores of the given profile version."""
        return ScoresUpdatedEvent(
            source="scoring",
            data=ScoresUpdated(
                profile_id=profile_id,
                profile_version=version,
                model_version="test",
                lifecycle=lifecycle,
                tier=tier,
                predicted_value=predicted_value,
                segment=segment,
                at_risk=at_risk,
                potential=potential,
            ),
        )

    def touch(
        self,
        message_id: str,
        *,
        at: datetime = NOW,
        clicked: bool = False,
        unsubscribed: bool = False,
        kind: TouchpointKind = TouchpointKind.EMAIL,
        amount: str | None = None,
    ) -> TouchpointRecorded:
        """Return a touchpoint that refers to a campaign message."""
        if kind is TouchpointKind.SALE:
            return TouchpointRecorded(
                source="ingest",
                occurred_at=at,
                data=Touchpoint(
                    kind=kind,
                    channel=Channel.WEB,
                    direction=Direction.INBOUND,
                    identifiers=Identifiers(customer_id="c-1"),
                    sale=SaleDetails(
                        order_id="o-1", amount=Decimal(amount or "10"), currency="EUR"
                    ),
                    properties={"campaign_message_id": message_id},
                ),
            )
        return TouchpointRecorded(
            source="ingest",
            occurred_at=at,
            data=Touchpoint(
                kind=TouchpointKind.EMAIL,
                channel=Channel.EMAIL,
                direction=Direction.OUTBOUND,
                identifiers=Identifiers(email="someone@example.test"),
                email=EmailDetails(
                    clicked=clicked, unsubscribed=unsubscribed, campaign_message_id=message_id
                ),
            ),
        )

    def erased(self, profile_id: str) -> ProfileErasedEvent:
        """Return the erasure of a profile."""
        return ProfileErasedEvent(
            source="profile",
            data=ProfileErased(profile_id=profile_id, request_id="req-1", erased_at=NOW),
        )

    def merged(self, survivor_id: str, merged_id: str) -> ProfilesMergedEvent:
        """Return the merge of `merged_id` into `survivor_id`."""
        return ProfilesMergedEvent(
            source="profile",
            data=ProfilesMerged(
                survivor_id=survivor_id,
                merged_id=merged_id,
                rule="email",
                identifier_types=["email"],
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

    found = [
        pid
        for pid in (f"p-{n}" for n in range(400))
        if global_bucket(pid) >= 0.05 and all(campaign_bucket(c, pid) >= 0.1 for c in CAMPAIGN_IDS)
    ]
    return found[:40]
