"""Factories shared by the scoring tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from clientela.shared.contracts import (
    Lifecycle,
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    derived_event_id,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

MakeProfile = Callable[..., ProfileChangedEvent]


def make_profile_changed(
    profile_id: str = "p-1",
    version: int = 1,
    *,
    spend: str | Decimal = "0",
    purchases: int | None = None,
    days_ago: float = 0.0,
    correlation_id: str | None = None,
    now: datetime = NOW,
) -> ProfileChangedEvent:
    """Return a ProfileChanged event; a positive spend implies at least one purchase."""
    amount = Decimal(spend)
    count = purchases if purchases is not None else (1 if amount > 0 else 0)
    last = now - timedelta(days=days_ago) if count else None
    return ProfileChangedEvent(
        event_id=derived_event_id("test-profile-changed", profile_id, str(version)),
        source="profile",
        correlation_id=correlation_id,
        data=ProfileChanged(
            profile_id=profile_id,
            version=version,
            lifecycle=Lifecycle.CUSTOMER if count else Lifecycle.PROSPECT,
            created_at=now - timedelta(days=400),
            aggregates=ProfileAggregates(
                currency="EUR",
                purchase_count=count,
                total_spend=amount,
                last_purchase_at=last,
                first_purchase_at=last,
            ),
        ),
    )


@pytest.fixture
def profile_changed() -> MakeProfile:
    """Return the ProfileChanged factory."""
    return make_profile_changed


@pytest.fixture
def now() -> datetime:
    """Return the fixed processing time the factories use."""
    return NOW
