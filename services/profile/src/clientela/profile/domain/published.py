"""The published form of a profile: msgspec Structs laid out as the ProfileChanged contract.

Built positionally and encoded by a precompiled encoder, they cost less than the dicts they
replace (no key hashing, one allocation each). The field order is the contract's JSON order;
a test decodes what they encode with the pydantic contract, which stays the source of truth.
`gc=False`: they hold no reference cycles and live for one batch, so the collector need not
track them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

from clientela.shared.contracts import Channel, ConsentStatus, Lifecycle
from clientela.shared.contracts.base import TraitValue


class PublishedConsent(msgspec.Struct, gc=False):
    """`ConsentState`: the latest decision for one channel."""

    status: ConsentStatus
    updated_at: datetime
    source: str


class PublishedAggregates(msgspec.Struct, gc=False):
    """`ProfileAggregates`: the figures as published."""

    first_seen_at: datetime | None
    last_seen_at: datetime | None
    touchpoint_count: int
    counts_by_kind: dict[str, int]
    counts_by_channel: dict[str, int]
    inbound_count: int
    outbound_count: int
    purchase_count: int
    purchase_days: int
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    currency: str
    total_spend: Decimal
    first_purchase_amount: Decimal
    average_order_value: Decimal
    spend_by_currency: dict[str, Decimal]
    cost_to_serve: Decimal
    open_support_cases: int
    closed_support_cases: int
    purchase_categories: dict[str, int]
    inbound_channel_preference: dict[str, float]
    preferred_inbound_channel: Channel | None


class PublishedProfile(msgspec.Struct, gc=False):
    """`ProfileChanged`: a profile's state with no identifier values."""

    profile_id: str
    version: int
    lifecycle: Lifecycle
    created_at: datetime
    identifier_types: list[str]
    reachable_channels: list[Channel]
    consent: dict[Channel, PublishedConsent]
    traits: dict[str, TraitValue]
    aggregates: PublishedAggregates


class PublishedProfileChanged(msgspec.Struct, gc=False):
    """`ProfileChangedEvent`: the envelope around a published profile."""

    event_id: str
    type: str
    schema_version: int
    occurred_at: datetime
    source: str
    correlation_id: str | None
    causation_id: str | None
    data: PublishedProfile
