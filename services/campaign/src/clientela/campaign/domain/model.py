"""The campaign model: definitions, what is known of a contact, and decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Lifecycle,
    MessagePurpose,
    ProfileChanged,
    Reason,
    Tier,
    TierMove,
)

CampaignId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Variant = Annotated[str, StringConstraints(min_length=1, max_length=128)]

CUSTOMER_LIFECYCLES = frozenset({Lifecycle.CUSTOMER, Lifecycle.LAPSED})


class TriggerKind(StrEnum):
    """Which tier move starts a campaign."""

    TIER_ENTERED = "tier_entered"
    TIER_UP = "tier_up"
    TIER_DOWN = "tier_down"

    @property
    def move(self) -> TierMove:
        """Return the tier move this trigger reacts to."""
        return _TRIGGER_MOVES[self]


_TRIGGER_MOVES = {
    TriggerKind.TIER_ENTERED: TierMove.ENTERED,
    TriggerKind.TIER_UP: TierMove.UP,
    TriggerKind.TIER_DOWN: TierMove.DOWN,
}


class Outcome(StrEnum):
    """What became of a matched campaign for one trigger."""

    SENT = "sent"
    CONTROL = "control"
    SUPPRESSED = "suppressed"


class CampaignDefinition(BaseModel):
    """A declarative campaign: who it is for, why, on which channels, and its holdout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: CampaignId
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    trigger: frozenset[TriggerKind] = Field(min_length=1)
    to_tiers: frozenset[Tier] = Field(min_length=1)
    from_tiers: frozenset[Tier] | None = None
    lifecycles: frozenset[Lifecycle] = Field(min_length=1)
    purpose: MessagePurpose
    channels: tuple[Channel, ...] = Field(min_length=1)
    variants: dict[Tier, Variant]
    holdout_share: float = Field(default=0.1, ge=0, le=1)
    message_ttl_hours: float = Field(default=72, gt=0, le=24 * 365)
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _single_trigger(cls, data: object) -> object:
        # A campaign file may say `trigger = "tier_up"` as well as a list of triggers.
        if isinstance(data, dict) and isinstance(data.get("trigger"), str):
            return {**data, "trigger": [data["trigger"]]}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        if self.purpose is MessagePurpose.ACQUISITION:
            if self.lifecycles != {Lifecycle.PROSPECT}:
                raise ValueError("acquisition campaigns are for prospects only")
            if self.to_tiers != {Tier.P}:
                raise ValueError("acquisition campaigns target tier P only")
        else:
            if Lifecycle.PROSPECT in self.lifecycles:
                raise ValueError(f"{self.purpose.value} campaigns are for customers only")
            if Tier.P in self.to_tiers:
                raise ValueError(f"{self.purpose.value} campaigns cannot target tier P")
        missing = sorted(t.value for t in self.to_tiers if t not in self.variants)
        if missing:
            raise ValueError(f"no variant for tier(s) {', '.join(missing)}")
        if self.from_tiers is not None and self.trigger == {TriggerKind.TIER_ENTERED}:
            raise ValueError("from_tiers cannot match tier_entered: there is no previous tier")
        return self


@dataclass(frozen=True, slots=True)
class Contact:
    """What campaigns may know of a person: lifecycle, contact points and consent."""

    profile_id: str
    version: int
    lifecycle: Lifecycle
    reachable_channels: frozenset[Channel]
    consent: Mapping[Channel, ConsentStatus] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: ProfileChanged) -> Contact:
        """Keep only what campaigns need of a profile change."""
        return cls(
            profile_id=profile.profile_id,
            version=profile.version,
            lifecycle=profile.lifecycle,
            reachable_channels=frozenset(profile.reachable_channels),
            consent={channel: state.status for channel, state in profile.consent.items()},
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one campaign for one tier move, with the reasons behind it."""

    decision_id: str
    campaign_id: str
    trigger_event_id: str
    profile_id: str
    outcome: Outcome
    channel: Channel | None
    variant: str
    purpose: MessagePurpose
    tier: Tier
    reasons: tuple[Reason, ...]
    decided_at: datetime
    expires_at: datetime
