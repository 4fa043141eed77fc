"""What the services answer, as the console reads it (fields it does not use are ignored)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clientela.shared.contracts import ConsentState, ProfileAggregates, Reason, Rfm, Touchpoint


class Document(BaseModel):
    """An answer of a service; unknown fields are ignored so services may add fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class IdentifierDoc(Document):
    """One identifier a profile owns."""

    type: str
    value: str


class ProfileDoc(Document):
    """A golden record (profile service)."""

    profile_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    lifecycle: str
    identifiers: list[IdentifierDoc] = Field(default_factory=list)
    reachable_channels: list[str] = Field(default_factory=list)
    traits: dict[str, Any] = Field(default_factory=dict)
    consent: dict[str, ConsentState] = Field(default_factory=dict)
    aggregates: ProfileAggregates


class TimelineItemDoc(Document):
    """One touchpoint on a timeline."""

    event_id: str
    occurred_at: datetime
    kind: str
    channel: str
    direction: str
    agent_id: str | None = None
    source: str = ""
    touchpoint: Touchpoint


class TimelineDoc(Document):
    """A page of a timeline, newest first."""

    profile_id: str
    items: list[TimelineItemDoc]
    next_before: datetime | None = None
    next_before_event_id: str | None = None


class ExplainedReasonDoc(Document):
    """A reason behind a score with its plain-language explanation."""

    code: str
    value: float | str | None = None
    detail: str = ""
    explanation: str = ""


class ScoresDoc(Document):
    """A profile's current scores (scoring service)."""

    profile_id: str
    model_version: str
    lifecycle: str
    tier: str
    tier_explanation: str = ""
    predicted_value: float
    probability_alive: float | None = None
    expected_purchases: float | None = None
    expected_order_value: float | None = None
    horizon_weeks: float | None = None
    rfm: Rfm | None = None
    segment: str | None = None
    potential: float | None = None
    cost_to_serve: float = 0.0
    profitable: bool | None = None
    at_risk: bool = False
    updated_at: datetime | None = None
    reasons: list[ExplainedReasonDoc] = Field(default_factory=list)


class TierDoc(Document):
    """One tier of the summary."""

    tier: str
    count: int
    value: float
    value_share: float
    meaning: str = ""


class CutoffsDoc(Document):
    """The tier lines in force."""

    a_cutoff: float | None = None
    b_cutoff: float | None = None
    a_share: float
    b_share: float
    hysteresis: float
    customer_count: int
    total_value: float


class ParetoPointDoc(Document):
    """The top customer_share of customers bring value_share of the value."""

    customer_share: float
    value_share: float


class TierSummaryDoc(Document):
    """How profiles and value spread across tiers (scoring service)."""

    model_version: str
    profile_count: int
    total_value: float
    tiers: list[TierDoc]
    cutoffs: CutoffsDoc
    pareto: list[ParetoPointDoc]


class MessageDoc(Document):
    """A campaign decision for one person (campaign service)."""

    message_id: str
    campaign_id: str
    outcome: str
    channel: str | None = None
    variant: str = ""
    offer: str | None = None
    purpose: str = ""
    tier: str = ""
    reasons: list[Reason] = Field(default_factory=list)
    decided_at: datetime
    responded_at: datetime | None = None
    converted_at: datetime | None = None


class MessagesDoc(Document):
    """A person's decisions, newest first."""

    profile_id: str
    messages: list[MessageDoc]


class CampaignDoc(Document):
    """A campaign definition."""

    id: str
    name: str
    origin: str = "file"
    trigger: list[str] = Field(default_factory=list)
    to_tiers: list[str] = Field(default_factory=list)
    purpose: str = ""
    channels: list[str] = Field(default_factory=list)
    holdout_share: float = 0.0
    budget: Decimal | None = None
    enabled: bool = True


class GroupDoc(Document):
    """Treated or control people of one slice."""

    size: int
    converted: int
    responded: int
    revenue: float


class UpliftDoc(Document):
    """Treated against control for one slice (all, a channel, a tier, or both)."""

    channel: str | None = None
    tier: str | None = None
    treated: GroupDoc
    control: GroupDoc
    treated_conversion: float | None = None
    control_conversion: float | None = None
    uplift: float | None = None
    uplift_ci95_low: float | None = None
    uplift_ci95_high: float | None = None
    incremental_conversions: float | None = None
    incremental_revenue: float | None = None
    cost: float = 0.0
    roi: float | None = None


class CampaignRoiDoc(Document):
    """A campaign's results overall and by channel, tier, and channel x tier."""

    campaign_id: str
    total: UpliftDoc
    by_channel: list[UpliftDoc] = Field(default_factory=list)
    by_tier: list[UpliftDoc] = Field(default_factory=list)
    by_channel_tier: list[UpliftDoc] = Field(default_factory=list)


class LearningCellDoc(Document):
    """The response rate learned for one channel, tier and segment."""

    channel: str
    tier: str
    segment: str
    sends: int
    responses: int
    prior_rate: float
    posterior_mean: float


class CampaignStatsDoc(Document):
    """Decision counts of a campaign."""

    campaign_id: str
    total: int
    by_outcome: dict[str, int] = Field(default_factory=dict)
    sent_by_channel: dict[str, int] = Field(default_factory=dict)


class SplitDoc(Document):
    """Both sides of a split."""

    profile_id: str
    new_profile_id: str
    identifiers_moved: int
    touchpoints_moved: int
