"""HTTP read API: campaign definitions, campaign results, and a profile's messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel

from clientela.campaign.application.ports import CampaignReadModel, DecisionRecord
from clientela.campaign.application.queries import (
    UnknownCampaignError,
    campaign_stats,
    profile_messages,
)
from clientela.campaign.domain.catalog import CampaignCatalog
from clientela.campaign.domain.model import CampaignDefinition, Outcome
from clientela.shared.auth import KeyRing, require_scope
from clientela.shared.contracts import Channel, Lifecycle, MessagePurpose, Reason, Tier


@dataclass(frozen=True, slots=True)
class ReadSide:
    """What the read endpoints need; set on app.state.read_side once the service started."""

    catalog: CampaignCatalog
    read_model: CampaignReadModel


def _read_side(request: Request) -> ReadSide:
    read_side: ReadSide | None = getattr(request.app.state, "read_side", None)
    if read_side is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is starting")
    return read_side


ReadSideDep = Annotated[ReadSide, Depends(_read_side)]


class CampaignView(BaseModel):
    """A campaign definition."""

    id: str
    name: str
    trigger: list[str]
    to_tiers: list[Tier]
    from_tiers: list[Tier] | None
    lifecycles: list[Lifecycle]
    purpose: MessagePurpose
    channels: list[Channel]
    variants: dict[Tier, str]
    holdout_share: float
    message_ttl_hours: float
    enabled: bool

    @classmethod
    def of(cls, c: CampaignDefinition) -> CampaignView:
        """Map a definition to its view, with sets in a stable order."""
        return cls(
            id=c.id,
            name=c.name,
            trigger=sorted(t.value for t in c.trigger),
            to_tiers=sorted(c.to_tiers),
            from_tiers=sorted(c.from_tiers) if c.from_tiers is not None else None,
            lifecycles=sorted(c.lifecycles),
            purpose=c.purpose,
            channels=list(c.channels),
            variants=dict(c.variants),
            holdout_share=c.holdout_share,
            message_ttl_hours=c.message_ttl_hours,
            enabled=c.enabled,
        )


class CampaignListView(BaseModel):
    """Every defined campaign, in file order."""

    campaigns: list[CampaignView]


class CampaignStatsView(BaseModel):
    """Decision counts of one campaign."""

    campaign_id: str
    enabled: bool
    total: int
    by_outcome: dict[Outcome, int]
    sent_by_channel: dict[Channel, int]


class MessageView(BaseModel):
    """One decision for a profile: a message sent, a control, or a suppression with reasons."""

    message_id: str
    campaign_id: str
    trigger_event_id: str
    outcome: Outcome
    channel: Channel | None
    variant: str
    purpose: MessagePurpose
    tier: Tier
    reasons: list[Reason]
    decided_at: datetime

    @classmethod
    def of(cls, d: DecisionRecord) -> MessageView:
        """Map a stored decision to its view."""
        return cls(
            message_id=d.decision_id,
            campaign_id=d.campaign_id,
            trigger_event_id=d.trigger_event_id,
            outcome=d.outcome,
            channel=d.channel,
            variant=d.variant,
            purpose=d.purpose,
            tier=d.tier,
            reasons=d.reasons,
            decided_at=d.created_at,
        )


class ProfileMessagesView(BaseModel):
    """A profile's campaign decisions, newest first."""

    profile_id: str
    messages: list[MessageView]


def api_router(keyring: KeyRing) -> APIRouter:
    """Build the read API; every route needs a key with the read scope."""
    router = APIRouter(
        prefix="/v1",
        tags=["campaigns"],
        dependencies=[Depends(require_scope(keyring, "read"))],
        responses={401: {"description": "No or unknown API key"}, 403: {"description": "Scope"}},
    )

    @router.get("/campaigns", summary="Campaign definitions in force")
    async def list_campaigns(read_side: ReadSideDep) -> CampaignListView:
        return CampaignListView(campaigns=[CampaignView.of(c) for c in read_side.catalog])

    @router.get(
        "/campaigns/{campaign_id}/stats",
        summary="Decision counts of a campaign by outcome and channel",
        responses={404: {"description": "No such campaign"}},
    )
    async def get_campaign_stats(
        campaign_id: Annotated[str, Path(max_length=64)], read_side: ReadSideDep
    ) -> CampaignStatsView:
        try:
            stats = await campaign_stats(campaign_id, read_side.catalog, read_side.read_model)
        except UnknownCampaignError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign") from exc
        return CampaignStatsView(
            campaign_id=stats.campaign.id,
            enabled=stats.campaign.enabled,
            total=stats.total,
            by_outcome=stats.by_outcome,
            sent_by_channel=stats.sent_by_channel,
        )

    @router.get("/profiles/{profile_id}/messages", summary="A profile's decisions, newest first")
    async def get_profile_messages(
        profile_id: Annotated[str, Path(min_length=1, max_length=64)],
        read_side: ReadSideDep,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ProfileMessagesView:
        records = await profile_messages(profile_id, limit, read_side.read_model)
        return ProfileMessagesView(
            profile_id=profile_id, messages=[MessageView.of(r) for r in records]
        )

    return router
