"""HTTP API: campaigns (read, and create/update with the admin scope), results, messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel

from clientela.campaign.application.catalog import (
    CampaignConflictError,
    LiveCatalog,
    StoredCampaign,
    UnknownCampaignError,
    create_campaign,
    update_campaign,
)
from clientela.campaign.application.ports import CampaignReadModel, CampaignStore, DecisionRecord
from clientela.campaign.application.queries import (
    CampaignRoi,
    RoiRow,
    all_roi,
    campaign_learning,
    campaign_roi,
    campaign_stats,
    profile_messages,
)
from clientela.campaign.domain.catalog import CampaignDefinitionError
from clientela.campaign.domain.economics import ChannelEconomics
from clientela.campaign.domain.model import CampaignDefinition, CrossSell, Outcome
from clientela.campaign.domain.roi import Uplift
from clientela.shared.auth import KeyRing, require_scope
from clientela.shared.contracts import (
    Channel,
    Lifecycle,
    MessagePurpose,
    Reason,
    Segment,
    Tier,
)

CampaignIdPath = Annotated[str, Path(max_length=64)]


@dataclass(frozen=True, slots=True)
class ApiSide:
    """What the endpoints need; set on app.state.api_side once the service started."""

    catalog: LiveCatalog
    store: CampaignStore
    read_model: CampaignReadModel
    economics: ChannelEconomics


def _api_side(request: Request) -> ApiSide:
    side: ApiSide | None = getattr(request.app.state, "api_side", None)
    if side is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is starting")
    return side


ApiSideDep = Annotated[ApiSide, Depends(_api_side)]


class CampaignView(BaseModel):
    """A campaign definition and where it was defined (file or api)."""

    id: str
    name: str
    origin: str
    trigger: list[str]
    to_tiers: list[Tier]
    from_tiers: list[Tier] | None
    lifecycles: list[Lifecycle]
    segments: list[Segment] | None
    traits: dict[str, str | int | float | bool | None]
    purpose: MessagePurpose
    channels: list[Channel]
    variants: dict[Tier, str]
    offer_variants: dict[str, str]
    inactive_days: int | None
    min_potential: float
    cross_sell: CrossSell | None
    budget: Decimal | None
    starts_at: datetime | None
    ends_at: datetime | None
    min_expected_value: float
    holdout_share: float
    message_ttl_hours: float
    enabled: bool

    @classmethod
    def of(cls, stored: StoredCampaign) -> CampaignView:
        """Map a definition to its view, with sets in a stable order."""
        c = stored.campaign
        return cls(
            id=c.id,
            name=c.name,
            origin=stored.origin,
            trigger=sorted(t.value for t in c.trigger),
            to_tiers=sorted(c.to_tiers),
            from_tiers=sorted(c.from_tiers) if c.from_tiers is not None else None,
            lifecycles=sorted(c.lifecycles),
            segments=sorted(c.segments) if c.segments is not None else None,
            traits=dict(c.traits),
            purpose=c.purpose,
            channels=list(c.channels),
            variants=dict(c.variants),
            offer_variants=dict(c.offer_variants),
            inactive_days=c.inactive_days,
            min_potential=c.min_potential,
            cross_sell=c.cross_sell,
            budget=c.budget,
            starts_at=c.starts_at,
            ends_at=c.ends_at,
            min_expected_value=c.min_expected_value,
            holdout_share=c.holdout_share,
            message_ttl_hours=c.message_ttl_hours,
            enabled=c.enabled,
        )


class CampaignListView(BaseModel):
    """Every defined campaign: the file's in file order, then the API's."""

    campaigns: list[CampaignView]


class CampaignStatsView(BaseModel):
    """Decision counts of one campaign."""

    campaign_id: str
    enabled: bool
    total: int
    by_outcome: dict[Outcome, int]
    sent_by_channel: dict[Channel, int]


class GroupView(BaseModel):
    """One group (treated or control) of a slice."""

    size: int
    converted: int
    responded: int
    revenue: float


class UpliftView(BaseModel):
    """Treated against control: conversion, uplift with a 95% interval, revenue, cost, ROI."""

    channel: Channel | None = None
    tier: Tier | None = None
    treated: GroupView
    control: GroupView
    treated_conversion: float | None
    control_conversion: float | None
    uplift: float | None
    uplift_ci95_low: float | None
    uplift_ci95_high: float | None
    incremental_conversions: float | None
    incremental_revenue: float | None
    cost: float
    roi: float | None

    @classmethod
    def of(cls, u: Uplift, channel: Channel | None = None, tier: Tier | None = None) -> UpliftView:
        """Map uplift figures to the view."""
        return cls(
            channel=channel,
            tier=tier,
            treated=GroupView(
                size=u.treated.size,
                converted=u.treated.converted,
                responded=u.treated.responded,
                revenue=round(u.treated.revenue, 2),
            ),
            control=GroupView(
                size=u.control.size,
                converted=u.control.converted,
                responded=u.control.responded,
                revenue=round(u.control.revenue, 2),
            ),
            treated_conversion=u.treated_rate,
            control_conversion=u.control_rate,
            uplift=u.uplift,
            uplift_ci95_low=u.uplift_low,
            uplift_ci95_high=u.uplift_high,
            incremental_conversions=u.incremental_conversions,
            incremental_revenue=u.incremental_revenue,
            cost=round(u.cost, 6),
            roi=u.roi,
        )


class CampaignRoiView(BaseModel):
    """A campaign's results overall and by channel, tier, and channel x tier."""

    campaign_id: str
    total: UpliftView
    by_channel: list[UpliftView]
    by_tier: list[UpliftView]
    by_channel_tier: list[UpliftView]

    @classmethod
    def of(cls, roi: CampaignRoi) -> CampaignRoiView:
        """Map results to the view."""

        def rows(items: list[RoiRow]) -> list[UpliftView]:
            return [UpliftView.of(r.figures, r.channel, r.tier) for r in items]

        return cls(
            campaign_id=roi.campaign_id,
            total=UpliftView.of(roi.total),
            by_channel=rows(roi.by_channel),
            by_tier=rows(roi.by_tier),
            by_channel_tier=rows(roi.by_channel_tier),
        )


class RoiListView(BaseModel):
    """Every campaign's results."""

    campaigns: list[CampaignRoiView]


class LearningCellView(BaseModel):
    """The response rate learned for one channel, tier and segment."""

    channel: Channel
    tier: Tier
    segment: str
    sends: int
    responses: int
    prior_rate: float
    posterior_mean: float


class LearningView(BaseModel):
    """What a campaign has learned."""

    campaign_id: str
    cells: list[LearningCellView]


class MessageView(BaseModel):
    """One decision for a profile: a message sent, a control, or a suppression with reasons."""

    message_id: str
    campaign_id: str
    trigger_event_id: str
    outcome: Outcome
    channel: Channel | None
    variant: str
    offer: str | None
    purpose: MessagePurpose
    tier: Tier
    reasons: list[Reason]
    decided_at: datetime
    responded_at: datetime | None
    converted_at: datetime | None

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
            offer=d.offer,
            purpose=d.purpose,
            tier=d.tier,
            reasons=d.reasons,
            decided_at=d.created_at,
            responded_at=d.responded_at,
            converted_at=d.converted_at,
        )


class ProfileMessagesView(BaseModel):
    """A profile's campaign decisions, newest first."""

    profile_id: str
    messages: list[MessageView]


_ERRORS = {401: {"description": "No or unknown API key"}, 403: {"description": "Scope"}}


def _not_found(exc: UnknownCampaignError) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")


def api_router(keyring: KeyRing) -> APIRouter:
    """Build the API: reads need the read scope, campaign changes the admin scope."""
    root = APIRouter(prefix="/v1", tags=["campaigns"], responses=_ERRORS)  # type: ignore[arg-type]
    read = APIRouter(dependencies=[Depends(require_scope(keyring, "read"))])
    admin = APIRouter(dependencies=[Depends(require_scope(keyring, "admin"))])

    @read.get("/campaigns", summary="Campaigns in force, file ones first")
    async def list_campaigns(side: ApiSideDep) -> CampaignListView:
        return CampaignListView(campaigns=[CampaignView.of(s) for s in side.catalog.stored()])

    @read.get(
        "/campaigns/{campaign_id}",
        summary="One campaign",
        responses={404: {"description": "No such campaign"}},
    )
    async def get_campaign(campaign_id: CampaignIdPath, side: ApiSideDep) -> CampaignView:
        for stored in side.catalog.stored():
            if stored.campaign.id == campaign_id:
                return CampaignView.of(stored)
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")

    @admin.post(
        "/campaigns",
        status_code=status.HTTP_201_CREATED,
        summary="Create a campaign (admin)",
        responses={409: {"description": "The id is taken"}, 422: {"description": "Invalid"}},
    )
    async def post_campaign(campaign: CampaignDefinition, side: ApiSideDep) -> CampaignView:
        try:
            await create_campaign(campaign, side.store, side.catalog)
        except CampaignConflictError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except CampaignDefinitionError as exc:
            raise HTTPException(422, str(exc)) from exc
        return CampaignView.of(StoredCampaign(campaign, "api"))

    @admin.put(
        "/campaigns/{campaign_id}",
        summary="Replace a campaign created through the API (admin)",
        responses={
            404: {"description": "No such campaign"},
            409: {"description": "Declared in the campaign file"},
            422: {"description": "Invalid"},
        },
    )
    async def put_campaign(
        campaign_id: CampaignIdPath, campaign: CampaignDefinition, side: ApiSideDep
    ) -> CampaignView:
        if campaign.id != campaign_id:
            raise HTTPException(422, "the body's id differs from the path's")
        try:
            await update_campaign(campaign, side.store, side.catalog)
        except UnknownCampaignError as exc:
            raise _not_found(exc) from exc
        except CampaignConflictError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        return CampaignView.of(StoredCampaign(campaign, "api"))

    @read.get(
        "/campaigns/{campaign_id}/stats",
        summary="Decision counts of a campaign by outcome and channel",
        responses={404: {"description": "No such campaign"}},
    )
    async def get_campaign_stats(
        campaign_id: CampaignIdPath, side: ApiSideDep
    ) -> CampaignStatsView:
        try:
            stats = await campaign_stats(campaign_id, side.catalog, side.read_model)
        except UnknownCampaignError as exc:
            raise _not_found(exc) from exc
        return CampaignStatsView(
            campaign_id=stats.campaign.id,
            enabled=stats.campaign.enabled,
            total=stats.total,
            by_outcome=stats.by_outcome,
            sent_by_channel=stats.sent_by_channel,
        )

    @read.get(
        "/campaigns/{campaign_id}/roi",
        summary="Uplift and ROI of a campaign, by channel and tier",
        responses={404: {"description": "No such campaign"}},
    )
    async def get_campaign_roi(campaign_id: CampaignIdPath, side: ApiSideDep) -> CampaignRoiView:
        try:
            roi = await campaign_roi(campaign_id, side.catalog, side.read_model)
        except UnknownCampaignError as exc:
            raise _not_found(exc) from exc
        return CampaignRoiView.of(roi)

    @read.get("/roi", summary="Uplift and ROI of every campaign")
    async def get_all_roi(side: ApiSideDep) -> RoiListView:
        return RoiListView(
            campaigns=[CampaignRoiView.of(r) for r in await all_roi(side.catalog, side.read_model)]
        )

    @read.get(
        "/campaigns/{campaign_id}/learning",
        summary="Response rates learned per channel, tier and segment",
        responses={404: {"description": "No such campaign"}},
    )
    async def get_learning(campaign_id: CampaignIdPath, side: ApiSideDep) -> LearningView:
        try:
            cells = await campaign_learning(
                campaign_id, side.catalog, side.read_model, side.economics
            )
        except UnknownCampaignError as exc:
            raise _not_found(exc) from exc
        return LearningView(
            campaign_id=campaign_id,
            cells=[
                LearningCellView(
                    channel=c.channel,
                    tier=c.tier,
                    segment=c.segment,
                    sends=c.sends,
                    responses=c.responses,
                    prior_rate=c.prior_rate,
                    posterior_mean=c.posterior_mean,
                )
                for c in cells
            ],
        )

    @read.get("/profiles/{profile_id}/messages", summary="A profile's decisions, newest first")
    async def get_profile_messages(
        profile_id: Annotated[str, Path(min_length=1, max_length=64)],
        side: ApiSideDep,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ProfileMessagesView:
        records = await profile_messages(profile_id, limit, side.read_model)
        return ProfileMessagesView(
            profile_id=profile_id, messages=[MessageView.of(r) for r in records]
        )

    root.include_router(admin)
    root.include_router(read)
    return root
