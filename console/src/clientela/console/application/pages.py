"""Use cases: each page is assembled from the services and the read model, in parallel.

A service that does not answer costs its part of the page (a notice says which), not the
page; a key the services no longer know ends the session (KeyRejectedError propagates).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from clientela.console.application.documents import (
    CampaignDoc,
    CampaignRoiDoc,
    CampaignStatsDoc,
    LearningCellDoc,
    MessagesDoc,
    ProfileDoc,
    ScoresDoc,
    SplitDoc,
    TierSummaryDoc,
    TimelineDoc,
)
from clientela.console.application.ports import (
    KeyRejectedError,
    MergeRow,
    RankedProfile,
    ReadModel,
    ReadModelStatus,
    ServiceError,
    Services,
    TierMoveRow,
    TimelineFilter,
)
from clientela.console.domain.base import Migrations, bucket_width, migrations
from clientela.console.domain.merges import linking

T = TypeVar("T")

IDENTIFIER_TYPES: tuple[str, ...] = (
    "customer_id",
    "email",
    "phone",
    "device_id",
    "anonymous_id",
    "profile_id",
)


@dataclass(frozen=True, slots=True)
class Session:
    """Who is signed in: what their key may do."""

    admin: bool


async def sign_in(services: Services, key: str) -> Session:
    """Check a key against the services; raise unless it may read."""
    await services.probe_read(key)
    return Session(admin=await services.probe_admin(key))


async def _part(call: Awaitable[T], notices: list[str], what: str) -> T | None:
    try:
        return await call
    except KeyRejectedError:
        raise
    except ServiceError as exc:
        notices.append(f"{what} is not available: {exc.message}")
        return None


async def find_profile(services: Services, key: str, id_type: str, value: str) -> str | None:
    """Return the profile id an identifier (or a profile id) leads to."""
    value = value.strip()
    if not value:
        return None
    if id_type == "profile_id":
        profile = await services.profile(key, value)
    else:
        profile = await services.profile_by(key, id_type, value)
    return profile.profile_id if profile is not None else None


@dataclass(frozen=True, slots=True)
class LinkedIdentifier:
    """An identifier of the profile, and the merges it linked (by merged id)."""

    type: str
    value: str
    linked_merges: list[str]


@dataclass(frozen=True, slots=True)
class Customer360:
    """Everything the console shows about one person."""

    profile: ProfileDoc
    identifiers: list[LinkedIdentifier]
    timeline: TimelineDoc | None
    scores: ScoresDoc | None
    messages: MessagesDoc | None
    tier_history: list[TierMoveRow]
    merges: list[MergeRow]
    notices: list[str] = field(default_factory=list)


async def customer_360(
    services: Services,
    read_model: ReadModel | None,
    key: str,
    profile_id: str,
    page: TimelineFilter,
) -> Customer360 | None:
    """Return a person's 360 view; None when the profile is unknown."""
    profile = await services.profile(key, profile_id)
    if profile is None:
        return None
    pid = profile.profile_id
    notices: list[str] = []
    timeline, scores, messages = await asyncio.gather(
        _part(services.timeline(key, pid, page), notices, "The timeline"),
        _part(services.scores(key, pid), notices, "Scoring"),
        _part(services.messages(key, pid), notices, "Campaign messages"),
    )
    history: list[TierMoveRow] = []
    merge_rows: list[MergeRow] = []
    if read_model is not None:
        history, merge_rows = await asyncio.gather(
            read_model.tier_history(pid), read_model.merges(pid)
        )
    else:
        notices.append("Tier and merge history need the console's read model (switched off).")
    owned = [(i.type, i.value) for i in profile.identifiers]
    linked: dict[tuple[str, str], list[str]] = {ident: [] for ident in owned}
    for merge in merge_rows:
        for ident in linking(owned, merge.identifier_fingerprints):
            linked[ident].append(merge.merged_id if merge.survivor_id == pid else merge.survivor_id)
    return Customer360(
        profile=profile,
        identifiers=[LinkedIdentifier(t, v, linked[(t, v)]) for t, v in owned],
        timeline=timeline,
        scores=scores,
        messages=messages,
        tier_history=history,
        merges=merge_rows,
        notices=notices,
    )


async def split_profile(
    services: Services,
    key: str,
    profile_id: str,
    identifiers: Sequence[tuple[str, str]],
    reason: str,
) -> SplitDoc:
    """Split identifiers off a wrongly merged profile (the key must hold the admin scope)."""
    if not identifiers:
        raise ValueError("choose at least one identifier to split off")
    return await services.split(key, profile_id, identifiers, reason)


@dataclass(frozen=True, slots=True)
class CustomerBase:
    """The customer base: tiers, Pareto curve, moves over time, channel mix."""

    summary: TierSummaryDoc | None
    migrations: Migrations | None
    channel_mix: dict[str, dict[str, float]]
    preferred_channels: dict[str, dict[str, float]]
    top_profiles: list[RankedProfile]
    status: ReadModelStatus | None
    notices: list[str] = field(default_factory=list)


async def customer_base(
    services: Services, read_model: ReadModel | None, key: str, now: datetime
) -> CustomerBase:
    """Return the customer base overview."""
    notices: list[str] = []
    summary = await _part(services.tier_summary(key), notices, "The tier summary")
    if read_model is None:
        notices.append("Tier moves and channel mix need the console's read model (switched off).")
        return CustomerBase(summary, None, {}, {}, [], None, notices)
    span = await read_model.move_span()
    moves: Migrations | None = None
    if span is not None:
        width = bucket_width(span[0], max(span[1], now))
        since = max(span[0], now - timedelta(seconds=width * 24))
        counts = await read_model.move_counts(width, since)
        moves = migrations(counts, width, (since, max(span[1], now)))
    mix, preferred, top, status = await asyncio.gather(
        read_model.channel_mix(),
        read_model.preferred_channels(),
        read_model.top_profiles(10),
        read_model.status(),
    )
    return CustomerBase(summary, moves, mix, preferred, top, status, notices)


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """A campaign with its overall results."""

    campaign: CampaignDoc
    roi: CampaignRoiDoc | None


async def campaigns_overview(services: Services, key: str) -> tuple[list[CampaignRow], list[str]]:
    """Return every campaign with its results."""
    notices: list[str] = []
    campaigns, results = await asyncio.gather(
        _part(services.campaigns(key), notices, "The campaign list"),
        _part(services.all_roi(key), notices, "Campaign results"),
    )
    by_id = {r.campaign_id: r for r in results or []}
    return [CampaignRow(c, by_id.get(c.id)) for c in campaigns or []], notices


@dataclass(frozen=True, slots=True)
class CampaignDetail:
    """One campaign: results by channel and tier, and what its channel learner believes."""

    campaign: CampaignDoc
    roi: CampaignRoiDoc | None
    learning: list[LearningCellDoc]
    stats: CampaignStatsDoc | None
    notices: list[str]


async def campaign_detail(services: Services, key: str, campaign_id: str) -> CampaignDetail | None:
    """Return a campaign's results and learning; None when unknown."""
    notices: list[str] = []
    campaigns = await services.campaigns(key)
    campaign = next((c for c in campaigns if c.id == campaign_id), None)
    if campaign is None:
        return None
    roi, learning, stats = await asyncio.gather(
        _part(services.campaign_roi(key, campaign_id), notices, "Results"),
        _part(services.campaign_learning(key, campaign_id), notices, "Learning"),
        _part(services.campaign_stats(key, campaign_id), notices, "Decision counts"),
    )
    return CampaignDetail(campaign, roi, learning or [], stats, notices)
