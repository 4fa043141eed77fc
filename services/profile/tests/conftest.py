"""Fixtures of the profile tests: a touchpoint factory and the domain policy."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from clientela.profile.domain.policy import ProfilePolicy
from clientela.shared.contracts import TouchpointRecorded

MakeTouchpoint = Callable[..., TouchpointRecorded]

_DETAILS: dict[str, tuple[str, dict[str, Any]]] = {
    "phone_call": ("call", {"duration_seconds": 120, "outcome": "answered"}),
    "email": ("email", {"opened": True}),
    "web_visit": ("web_visit", {"page_views": 3}),
    "branch_visit": ("branch_visit", {"branch_id": "b-1"}),
}


def make_touchpoint(
    *,
    kind: str = "web_visit",
    channel: str = "web",
    direction: str = "inbound",
    at: str | datetime = "2024-05-01T10:00:00+00:00",
    event_id: str | None = None,
    amount: str | None = None,
    currency: str = "EUR",
    cost: tuple[str, str] | None = None,
    traits: dict[str, Any] | None = None,
    consent: dict[str, str] | None = None,
    unsubscribed: bool = False,
    agent_id: str | None = None,
    correlation_id: str | None = None,
    source: str = "test-source",
    **identifiers: Any,
) -> TouchpointRecorded:
    """Return a valid TouchpointRecorded; identifiers go as keyword arguments (email=...)."""
    if not identifiers:
        identifiers = {"anonymous_id": f"anon-{uuid.uuid4().hex[:8]}"}
    data: dict[str, Any] = {
        "kind": kind,
        "channel": channel,
        "direction": direction,
        "identifiers": identifiers,
        "traits": traits or {},
        "consent": [{"channel": c, "status": s} for c, s in (consent or {}).items()],
    }
    if kind == "sale":
        data["sale"] = {
            "order_id": f"o-{uuid.uuid4().hex[:6]}",
            "amount": amount or "10",
            "currency": currency,
        }
    elif kind in _DETAILS:
        field, details = _DETAILS[kind]
        data[field] = (
            dict(details, unsubscribed=True) if kind == "email" and unsubscribed else details
        )
    if cost is not None:
        data["cost"] = {"amount": cost[0], "currency": cost[1]}
    if agent_id is not None:
        data["agent"] = {"agent_id": agent_id}
    return TouchpointRecorded.model_validate(
        {
            "event_id": event_id or str(uuid.uuid4()),
            "occurred_at": at,
            "source": source,
            "correlation_id": correlation_id,
            "data": data,
        }
    )


@pytest.fixture
def tp() -> MakeTouchpoint:
    """Return the touchpoint factory."""
    return make_touchpoint


@pytest.fixture
def policy() -> ProfilePolicy:
    """Return a policy with EUR base, a USD rate and the default channel costs."""
    return ProfilePolicy(base_currency="EUR", fx_rates={"USD": Decimal("0.9")})
