"""Events that announce the state of a customer profile."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from clientela.shared.contracts.base import (
    Channel,
    ConsentStatus,
    Contract,
    Envelope,
    Lifecycle,
    NonNegativeDecimal,
    ProfileId,
    ShortText,
    TraitValue,
)

CurrencyCode = Annotated[str, StringConstraints(min_length=3, max_length=3)]


class ConsentState(Contract):
    """The latest consent decision for one channel."""

    status: ConsentStatus
    updated_at: AwareDatetime
    source: ShortText


class ProfileAggregates(Contract):
    """Running figures over a person's touchpoints, independent of arrival order."""

    first_seen_at: AwareDatetime | None = None
    last_seen_at: AwareDatetime | None = None
    touchpoint_count: int = Field(default=0, ge=0)
    counts_by_kind: dict[str, int] = Field(default_factory=dict)
    counts_by_channel: dict[str, int] = Field(default_factory=dict)
    inbound_count: int = Field(default=0, ge=0)
    outbound_count: int = Field(default=0, ge=0)
    purchase_count: int = Field(default=0, ge=0, description="Sales recorded.")
    purchase_days: int = Field(default=0, ge=0, description="Distinct days with a sale.")
    first_purchase_at: AwareDatetime | None = None
    last_purchase_at: AwareDatetime | None = None
    currency: CurrencyCode = Field(description="Base currency of total_spend and cost_to_serve.")
    total_spend: NonNegativeDecimal = Decimal(0)
    first_purchase_amount: NonNegativeDecimal = Field(
        default=Decimal(0),
        description=(
            "Amount of the earliest sale by event time, in the base currency; 0 without a sale "
            "or when that sale's currency has no rate (it is then not in total_spend either), "
            "so total_spend - first_purchase_amount is the repeat spend."
        ),
    )
    average_order_value: NonNegativeDecimal = Decimal(0)
    spend_by_currency: dict[str, Decimal] = Field(
        default_factory=dict, description="Spend in currencies with no configured rate."
    )
    cost_to_serve: NonNegativeDecimal = Decimal(0)
    open_support_cases: int = Field(default=0, ge=0, description="Support cases still open.")
    closed_support_cases: int = Field(default=0, ge=0, description="Support cases closed.")
    purchase_categories: dict[str, int] = Field(
        default_factory=dict, description="Line items bought per product category."
    )
    inbound_channel_preference: dict[str, float] = Field(
        default_factory=dict,
        description="Share of recency-weighted inbound contacts per channel (sums to about 1).",
    )
    preferred_inbound_channel: Channel | None = Field(
        default=None, description="The channel with the largest inbound share."
    )


class ProfileChanged(Contract):
    """The current state of a profile: what scoring and campaigns need, with no personal data."""

    profile_id: ProfileId
    version: int = Field(ge=1, description="Increases with every change of this profile.")
    lifecycle: Lifecycle
    created_at: AwareDatetime
    identifier_types: list[ShortText] = Field(
        default_factory=list, description="Types of identifier known, never their values."
    )
    reachable_channels: list[Channel] = Field(
        default_factory=list, description="Channels the profile has a contact point for."
    )
    consent: dict[Channel, ConsentState] = Field(default_factory=dict)
    traits: dict[ShortText, TraitValue] = Field(default_factory=dict)
    aggregates: ProfileAggregates


class ProfilesMerged(Contract):
    """Two profiles turned out to be one person; the merged one now forwards to the survivor."""

    survivor_id: ProfileId
    merged_id: ProfileId
    rule: ShortText = Field(description="The identity rule that allowed the merge.")
    identifier_types: list[ShortText] = Field(description="Types of the linking identifiers.")
    identifier_fingerprints: list[ShortText] = Field(
        default_factory=list, description="SHA-256 of 'type:value' of the linking identifiers."
    )


class ProfileErased(Contract):
    """A person's data was erased on request; consumers must drop what they hold of them."""

    profile_id: ProfileId
    request_id: ShortText
    erased_at: datetime
    reason: ShortText = "data_subject_request"


class ProfileChangedEvent(Envelope):
    """Envelope of ProfileChanged on the compacted profiles topic."""

    EVENT_TYPE: ClassVar[str] = "profile.changed"
    type: Literal["profile.changed"] = "profile.changed"
    data: ProfileChanged


class ProfilesMergedEvent(Envelope):
    """Envelope of ProfilesMerged."""

    EVENT_TYPE: ClassVar[str] = "profiles.merged"
    type: Literal["profiles.merged"] = "profiles.merged"
    data: ProfilesMerged


class ProfileErasedEvent(Envelope):
    """Envelope of ProfileErased."""

    EVENT_TYPE: ClassVar[str] = "profile.erased"
    type: Literal["profile.erased"] = "profile.erased"
    data: ProfileErased
