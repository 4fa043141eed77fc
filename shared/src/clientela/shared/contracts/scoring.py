"""Events that announce a customer's scores and value-tier moves."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field

from clientela.shared.contracts.base import (
    Contract,
    Envelope,
    Lifecycle,
    ProfileId,
    Reason,
    ShortText,
    Tier,
)

Quintile = Annotated[int, Field(ge=1, le=5)]


class Segment(StrEnum):
    """Relationship segment: how a customer prefers to buy."""

    TRANSACTIONAL = "transactional"
    SOLUTIONS = "solutions_and_systems"
    RELATIONAL = "relational"
    COLLABORATIVE = "collaborative"


class TierMove(StrEnum):
    """Direction of a tier change."""

    UP = "up"
    DOWN = "down"
    ENTERED = "entered"


class Rfm(Contract):
    """Recency, frequency and monetary quintiles (5 is best)."""

    recency: Quintile
    frequency: Quintile
    monetary: Quintile


class ScoresUpdated(Contract):
    """The current scores of a profile."""

    profile_id: ProfileId
    profile_version: int = Field(ge=1, description="The profile version the scores reflect.")
    model_version: ShortText
    lifecycle: Lifecycle
    tier: Tier
    predicted_value: float = Field(ge=0, description="Predicted value in the base currency.")
    probability_alive: float | None = Field(default=None, ge=0, le=1)
    rfm: Rfm | None = None
    segment: Segment | None = None
    potential: float | None = Field(default=None, ge=0, le=1, description="Prospects only.")
    cost_to_serve: float = Field(default=0, ge=0)
    at_risk: bool = False
    reasons: list[Reason] = Field(default_factory=list)
    as_of: AwareDatetime | None = Field(
        default=None, description="The moment the predictions refer to (None: not recorded)."
    )
    expected_purchases: float | None = Field(
        default=None, ge=0, description="Expected purchase days over the horizon."
    )
    expected_order_value: float | None = Field(
        default=None, ge=0, description="Expected spend per future purchase, base currency."
    )
    horizon_weeks: float | None = Field(
        default=None, gt=0, description="Horizon of predicted_value and expected_purchases."
    )
    profitable: bool | None = Field(
        default=None, description="False when cost to serve exceeds the margin brought so far."
    )


class TierChanged(Contract):
    """A profile moved from one value tier to another (or entered its first tier)."""

    profile_id: ProfileId
    profile_version: int = Field(ge=1, description="The profile version that caused the move.")
    from_tier: Tier | None = Field(description="None when the profile had no tier before.")
    to_tier: Tier
    move: TierMove
    lifecycle: Lifecycle
    predicted_value: float = Field(ge=0)
    model_version: ShortText
    reasons: list[Reason] = Field(default_factory=list, description="Why, with the numbers.")


class ScoresUpdatedEvent(Envelope):
    """Envelope of ScoresUpdated on the compacted scores topic."""

    EVENT_TYPE: ClassVar[str] = "scores.updated"
    type: Literal["scores.updated"] = "scores.updated"
    data: ScoresUpdated


class TierChangedEvent(Envelope):
    """Envelope of TierChanged: the public topic downstream tools subscribe to."""

    EVENT_TYPE: ClassVar[str] = "tier.changed"
    type: Literal["tier.changed"] = "tier.changed"
    data: TierChanged
