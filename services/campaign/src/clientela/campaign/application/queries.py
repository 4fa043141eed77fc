"""Read-side use cases: campaigns, results, uplift and ROI, learning, a profile's messages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from clientela.campaign.application.catalog import LiveCatalog, UnknownCampaignError
from clientela.campaign.application.ports import CampaignReadModel, DecisionRecord, ResultCell
from clientela.campaign.domain.economics import ChannelEconomics, PosteriorKey
from clientela.campaign.domain.model import CampaignDefinition, Outcome
from clientela.campaign.domain.roi import GroupResult, Uplift, uplift
from clientela.shared.contracts import Channel, Tier

__all__ = ["UnknownCampaignError"]


@dataclass(frozen=True, slots=True)
class CampaignStats:
    """Decision counts of one campaign, by outcome and by channel of the messages sent."""

    campaign: CampaignDefinition
    total: int
    by_outcome: dict[Outcome, int]
    sent_by_channel: dict[Channel, int]


@dataclass(frozen=True, slots=True)
class RoiRow:
    """Uplift and ROI of one slice of a campaign (a channel, a tier, or both)."""

    campaign_id: str
    channel: Channel | None
    tier: Tier | None
    figures: Uplift


@dataclass(frozen=True, slots=True)
class CampaignRoi:
    """A campaign's results: overall, and per channel, tier and channel x tier."""

    campaign_id: str
    total: Uplift
    by_channel: list[RoiRow]
    by_tier: list[RoiRow]
    by_channel_tier: list[RoiRow]


@dataclass(frozen=True, slots=True)
class LearningCell:
    """What the service has learned of one (campaign, channel, tier, segment) cell."""

    channel: Channel
    tier: Tier
    segment: str
    sends: int
    responses: int
    prior_rate: float
    posterior_mean: float


def _campaign(campaign_id: str, live: LiveCatalog) -> CampaignDefinition:
    campaign = live.catalog.get(campaign_id)
    if campaign is None:
        raise UnknownCampaignError(campaign_id)
    return campaign


async def campaign_stats(
    campaign_id: str, live: LiveCatalog, read_model: CampaignReadModel
) -> CampaignStats:
    """Return a campaign's decision counts; raise UnknownCampaignError for an unknown id."""
    campaign = _campaign(campaign_id, live)
    rows = await read_model.outcome_counts(campaign_id)
    by_outcome: Counter[Outcome] = Counter(dict.fromkeys(Outcome, 0))
    by_channel: Counter[Channel] = Counter()
    for row in rows:
        by_outcome[row.outcome] += row.count
        if row.outcome is Outcome.SENT and row.channel is not None:
            by_channel[row.channel] += row.count
    return CampaignStats(
        campaign=campaign,
        total=sum(by_outcome.values()),
        by_outcome=dict(by_outcome),
        sent_by_channel=dict(by_channel),
    )


def _group(cells: Iterable[ResultCell]) -> GroupResult:
    size = converted = responded = 0
    revenue = cost = 0.0
    for c in cells:
        size += c.count
        converted += c.converted
        responded += c.responded
        revenue += c.revenue
        cost += c.cost
    return GroupResult(size, converted, responded, revenue, cost)


def _slices(
    campaign_id: str,
    cells: list[ResultCell],
    key: Callable[[ResultCell], Hashable],
    label: Callable[[ResultCell], tuple[Channel | None, Tier | None]],
) -> list[RoiRow]:
    groups: dict[Hashable, list[ResultCell]] = {}
    labels: dict[Hashable, tuple[Channel | None, Tier | None]] = {}
    for cell in cells:
        if cell.outcome is Outcome.SUPPRESSED:
            continue
        k = key(cell)
        groups.setdefault(k, []).append(cell)
        labels[k] = label(cell)
    rows = []
    for k in sorted(groups, key=str):
        members = groups[k]
        treated = _group(c for c in members if c.outcome is Outcome.SENT)
        control = _group(c for c in members if c.outcome is Outcome.CONTROL)
        channel, tier = labels[k]
        rows.append(RoiRow(campaign_id, channel, tier, uplift(treated, control)))
    return rows


def roi_of(campaign_id: str, cells: list[ResultCell]) -> CampaignRoi:
    """Compute a campaign's uplift and ROI from its result cells."""
    mine = [c for c in cells if c.campaign_id == campaign_id]
    treated = _group(c for c in mine if c.outcome is Outcome.SENT)
    control = _group(c for c in mine if c.outcome is Outcome.CONTROL)
    return CampaignRoi(
        campaign_id=campaign_id,
        total=uplift(treated, control),
        # A control decision records the channel it would have used, so each channel's
        # treated people are compared with the control people that channel would have had.
        by_channel=_slices(campaign_id, mine, lambda c: c.channel, lambda c: (c.channel, None)),
        by_tier=_slices(campaign_id, mine, lambda c: c.tier, lambda c: (None, c.tier)),
        by_channel_tier=_slices(
            campaign_id, mine, lambda c: (c.channel, c.tier), lambda c: (c.channel, c.tier)
        ),
    )


async def campaign_roi(
    campaign_id: str, live: LiveCatalog, read_model: CampaignReadModel
) -> CampaignRoi:
    """Return one campaign's uplift and ROI; raise UnknownCampaignError for an unknown id."""
    _campaign(campaign_id, live)
    return roi_of(campaign_id, await read_model.result_cells(campaign_id))


async def all_roi(live: LiveCatalog, read_model: CampaignReadModel) -> list[CampaignRoi]:
    """Return every campaign's uplift and ROI."""
    cells = await read_model.result_cells(None)
    return [roi_of(c.id, cells) for c in live.catalog]


async def campaign_learning(
    campaign_id: str,
    live: LiveCatalog,
    read_model: CampaignReadModel,
    economics: ChannelEconomics,
) -> list[LearningCell]:
    """Return the response rates learned for a campaign, per channel, tier and segment."""
    _campaign(campaign_id, live)
    evidence = await read_model.evidence(campaign_id)
    cells = []
    for key in sorted(evidence, key=_cell_order):
        _, channel, tier, segment = key
        counts = evidence[key]
        alpha, beta = economics.prior(channel)
        cells.append(
            LearningCell(
                channel=channel,
                tier=tier,
                segment=segment,
                sends=counts.sends,
                responses=counts.responses,
                prior_rate=alpha / (alpha + beta),
                posterior_mean=(alpha + counts.responses)
                / (alpha + beta + max(counts.sends, counts.responses)),
            )
        )
    return cells


def _cell_order(key: PosteriorKey) -> tuple[str, str, str]:
    return (key[1].value, key[2].value, key[3])


async def profile_messages(
    profile_id: str, limit: int, read_model: CampaignReadModel
) -> list[DecisionRecord]:
    """Return the decisions taken for a profile, newest first."""
    return await read_model.decisions_for_profile(profile_id, limit)
