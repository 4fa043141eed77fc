"""Read-side use cases: campaign definitions, campaign results and a profile's messages."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from clientela.campaign.application.ports import CampaignReadModel, DecisionRecord
from clientela.campaign.domain.catalog import CampaignCatalog
from clientela.campaign.domain.model import CampaignDefinition, Outcome
from clientela.shared.contracts import Channel


class UnknownCampaignError(LookupError):
    """No campaign with that id is defined."""


@dataclass(frozen=True, slots=True)
class CampaignStats:
    """Decision counts of one campaign, by outcome and by channel of the messages sent."""

    campaign: CampaignDefinition
    total: int
    by_outcome: dict[Outcome, int]
    sent_by_channel: dict[Channel, int]


async def campaign_stats(
    campaign_id: str, catalog: CampaignCatalog, read_model: CampaignReadModel
) -> CampaignStats:
    """Return a campaign's decision counts; raise UnknownCampaignError for an unknown id."""
    campaign = catalog.get(campaign_id)
    if campaign is None:
        raise UnknownCampaignError(campaign_id)
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


async def profile_messages(
    profile_id: str, limit: int, read_model: CampaignReadModel
) -> list[DecisionRecord]:
    """Return the decisions taken for a profile, newest first."""
    return await read_model.decisions_for_profile(profile_id, limit)
