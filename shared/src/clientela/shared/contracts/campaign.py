"""Events that carry next-best-channel messages to delivery systems."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from clientela.shared.contracts.base import (
    Channel,
    Contract,
    Envelope,
    EventId,
    ProfileId,
    Reason,
    ShortText,
    Tier,
)


class MessagePurpose(StrEnum):
    """Why a message is sent: acquisition for prospects, the rest for customers."""

    ACQUISITION = "acquisition"
    LOYALTY = "loyalty"
    RETENTION = "retention"
    CROSS_SELL = "cross_sell"
    UP_SELL = "up_sell"
    WIN_BACK = "win_back"


class CampaignMessage(Contract):
    """A message a delivery system should send to one person on one channel."""

    message_id: ShortText = Field(description="Stable id; delivery systems dedup on it.")
    profile_id: ProfileId
    campaign_id: ShortText
    channel: Channel
    variant: ShortText = Field(description="Which content variant to send.")
    purpose: MessagePurpose
    tier: Tier
    trigger_event_id: EventId = Field(description="The event that triggered this message.")
    expires_at: AwareDatetime = Field(description="Do not deliver after this time.")
    reasons: list[Reason] = Field(default_factory=list, description="Why this person and channel.")
    offer: ShortText | None = Field(
        default=None, description="Offer variant by what the person values (price, service)."
    )
    trigger_kind: ShortText | None = Field(
        default=None, description="What started the campaign: tier_up, at_risk, inactivity..."
    )


class CampaignMessageEvent(Envelope):
    """Envelope of CampaignMessage: the public topic delivery systems subscribe to."""

    EVENT_TYPE: ClassVar[str] = "campaign.message"
    type: Literal["campaign.message"] = "campaign.message"
    data: CampaignMessage
