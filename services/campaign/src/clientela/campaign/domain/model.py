"""The campaign model: definitions, what is known of a contact, triggers and decisions."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

import msgspec
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Lifecycle,
    MessagePurpose,
    Segment,
    Tier,
    TierMove,
)
from clientela.shared.contracts import Reason as ContractReason

CampaignId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Variant = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Category = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TraitValue = str | int | float | bool | None

CUSTOMER_LIFECYCLES = frozenset({Lifecycle.CUSTOMER, Lifecycle.LAPSED})


class TriggerKind(StrEnum):
    """What starts a campaign for a person."""

    TIER_ENTERED = "tier_entered"
    TIER_UP = "tier_up"
    TIER_DOWN = "tier_down"
    AT_RISK = "at_risk"
    FIRST_PURCHASE = "first_purchase"
    INACTIVITY = "inactivity"
    HIGH_POTENTIAL = "high_potential"
    CROSS_SELL = "cross_sell"

    @property
    def is_tier_move(self) -> bool:
        """Return whether this trigger is a move between value tiers."""
        return self in _TIER_MOVES

    @classmethod
    def of_move(cls, move: TierMove) -> TriggerKind:
        """Return the trigger kind of a tier move."""
        return {v: k for k, v in _TIER_MOVES.items()}[move]


_TIER_MOVES = {
    TriggerKind.TIER_ENTERED: TierMove.ENTERED,
    TriggerKind.TIER_UP: TierMove.UP,
    TriggerKind.TIER_DOWN: TierMove.DOWN,
}
# Triggers that only make sense for people who have bought, or who have not.
_CUSTOMER_ONLY = frozenset(
    {TriggerKind.FIRST_PURCHASE, TriggerKind.AT_RISK, TriggerKind.CROSS_SELL}
)
_PROSPECT_ONLY = frozenset({TriggerKind.HIGH_POTENTIAL})


class Outcome(StrEnum):
    """What became of a matched campaign for one trigger."""

    SENT = "sent"
    CONTROL = "control"
    SUPPRESSED = "suppressed"


class CrossSell(BaseModel):
    """A cross-sell rule: people who bought any of `bought` and never `offer`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bought: frozenset[Category] = Field(min_length=1)
    offer: Category

    @model_validator(mode="after")
    def _offer_is_new(self) -> Self:
        if self.offer in self.bought:
            raise ValueError("the offered category must not be one already required")
        return self


class CampaignDefinition(BaseModel):
    """A campaign: audience, trigger, variants, channels, budget, schedule and holdout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: CampaignId
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    trigger: frozenset[TriggerKind] = Field(min_length=1)
    to_tiers: frozenset[Tier] = Field(min_length=1)
    from_tiers: frozenset[Tier] | None = None
    lifecycles: frozenset[Lifecycle] = Field(min_length=1)
    segments: frozenset[Segment] | None = None
    traits: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], TraitValue] = (
        Field(default_factory=dict)
    )
    purpose: MessagePurpose
    channels: tuple[Channel, ...] = Field(min_length=1)
    variants: dict[Tier, Variant]
    offer_variants: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)], Variant
    ] = Field(default_factory=dict)
    inactive_days: int | None = Field(default=None, ge=1, le=3650)
    min_potential: float = Field(default=0.0, ge=0, le=1)
    cross_sell: CrossSell | None = None
    budget: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=4)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    min_expected_value: float = Field(default=0.0, ge=0)
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
            if self.trigger & _CUSTOMER_ONLY:
                raise ValueError("acquisition campaigns cannot use customer-only triggers")
        else:
            if Lifecycle.PROSPECT in self.lifecycles:
                raise ValueError(f"{self.purpose.value} campaigns are for customers only")
            if Tier.P in self.to_tiers:
                raise ValueError(f"{self.purpose.value} campaigns cannot target tier P")
            if self.trigger & _PROSPECT_ONLY:
                raise ValueError("high_potential is a prospect trigger: use purpose acquisition")
        missing = sorted(t.value for t in self.to_tiers if t not in self.variants)
        if missing:
            raise ValueError(f"no variant for tier(s) {', '.join(missing)}")
        moves = {k for k in self.trigger if k.is_tier_move}
        if self.from_tiers is not None and moves <= {TriggerKind.TIER_ENTERED}:
            raise ValueError("from_tiers needs a tier_up or tier_down trigger")
        if (TriggerKind.INACTIVITY in self.trigger) != (self.inactive_days is not None):
            raise ValueError("inactive_days is required by, and only by, the inactivity trigger")
        if (TriggerKind.CROSS_SELL in self.trigger) != (self.cross_sell is not None):
            raise ValueError("cross_sell is required by, and only by, the cross_sell trigger")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def active_at(self, now: datetime) -> bool:
        """Return whether the campaign is enabled and inside its schedule."""
        if not self.enabled:
            return False
        if self.starts_at is not None and now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at


@dataclass(frozen=True, slots=True)
class Contact:
    """What campaigns know of a person: profile facts, scores, habits and complaints.

    `version` is the profile version (0 when only scores are known) and `scored_version` the
    profile version the scores reflect (0 when no scores arrived yet).
    """

    profile_id: str
    version: int
    lifecycle: Lifecycle
    reachable_channels: frozenset[Channel] = frozenset()
    consent: Mapping[Channel, ConsentStatus] = field(default_factory=dict)
    opted_out_at: datetime | None = None
    traits: Mapping[str, TraitValue] = field(default_factory=dict)
    habits: Mapping[Channel, float] = field(default_factory=dict)
    purchase_count: int = 0
    total_spend: Decimal = Decimal(0)
    last_seen_at: datetime | None = None
    last_purchase_at: datetime | None = None
    categories: frozenset[str] = frozenset()
    scored_version: int = 0
    tier: Tier | None = None
    segment: Segment | None = None
    predicted_value: float | None = None
    potential: float | None = None
    at_risk: bool = False
    complained_at: datetime | None = None

    def trait(self, name: str) -> TraitValue:
        """Return a trait, or None."""
        return self.traits.get(name)


@dataclass(frozen=True, slots=True)
class ScoreFacts:
    """What campaigns read of a profile's scores."""

    profile_id: str
    profile_version: int
    lifecycle: Lifecycle
    tier: Tier
    predicted_value: float
    segment: Segment | None = None
    potential: float | None = None
    at_risk: bool = False


# Trace propagation fields (traceparent, tracestate) as received; opaque to the domain.
TraceFields = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Trigger:
    """Something that happened to a person and may start campaigns, with its facts then."""

    event_id: str
    kind: TriggerKind
    profile_id: str
    profile_version: int
    occurred_at: datetime
    lifecycle: Lifecycle | None = None
    to_tier: Tier | None = None
    from_tier: Tier | None = None
    predicted_value: float | None = None
    needs_scores: bool = False
    inactive_days: int | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    accepted_at_ms: int | None = None
    episode_at: datetime | None = None
    # The cause's trace context, kept so a message decided later still continues its trace.
    trace: TraceFields = ()


@dataclass(frozen=True, slots=True)
class ChannelEstimate:
    """The numbers behind one channel's score in a decision."""

    channel: Channel
    prior_rate: float
    sends: int
    responses: int
    posterior_mean: float
    sampled_rate: float
    habit_lift: float
    response_value: float
    cost: float
    expected_value: float
    sampled_value: float


_CODE_MAX = 256  # the contract's ShortText
_DETAIL_MAX = 4096  # the contract's LongText


class Reason(msgspec.Struct, frozen=True):
    """One explainable reason behind a decision, with the number that drove it.

    A plain value (a struct: a third of a pydantic model's cost to build): every candidate
    decision gathers several, and few become messages. The contract's limits are checked
    here (a stored reason is read back as the contract), and the contract validates again
    when a message is sent (`as_contract`). A number is kept as a float, as the contract
    keeps it.
    """

    code: str
    detail: str = ""
    value: float | str | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.code) <= _CODE_MAX or len(self.detail) > _DETAIL_MAX:
            raise ValueError(f"reason {self.code[:40]!r}: code or detail out of bounds")
        if isinstance(self.value, int):  # bool included, as the contract does
            msgspec.structs.force_setattr(self, "value", float(self.value))

    def as_json(self) -> dict[str, float | str | None]:
        """Return the reason as stored and as the contract serialises it."""
        return {"code": self.code, "detail": self.detail, "value": self.value}

    def as_contract(self) -> ContractReason:
        """Return the reason as published, validated by the contract."""
        return ContractReason(code=self.code, detail=self.detail, value=self.value)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one campaign for one trigger, with the reasons and numbers behind it."""

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
    segment: Segment | None = None
    offer: str | None = None
    cost: float = 0.0
    expected_value: float | None = None


# Decisions of an erased person keep their outcome, channel, tier and money (the campaign's
# results need them) under this id instead of theirs.
ERASED_PROFILE = "erased"


def erasure_marker(key: bytes, profile_id: str) -> str:
    """Return the keyed, non-reversible marker that remembers an erased profile id."""
    return hmac.new(key, profile_id.encode(), hashlib.sha256).hexdigest()


# (absorbed profile id, survivor id), in the order the merges were announced.
Merge = tuple[str, str]


def merge_targets(merges: Sequence[Merge]) -> dict[str, str]:
    """Return who holds each absorbed person's data once these merges are applied in order.

    The same as moving the data one merge at a time: a later merge moves what its absorbed
    profile holds by then (its own data, unless moved away already, and what it received).
    """
    holder: dict[str, str] = {}
    for merged_id, survivor_id in merges:
        for origin, held_by in holder.items():
            if held_by == merged_id:
                holder[origin] = survivor_id
        holder.setdefault(merged_id, survivor_id)
    return holder
