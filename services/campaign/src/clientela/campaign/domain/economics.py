"""What a contact is worth: response rates learned per channel, value of a response, cost.

Expected value of contacting a person on a channel =
P(response | campaign, channel, tier, segment) x habit lift x value of a response - cost.
P(response) is a Beta posterior over sends and responses; the choice between channels uses a
Thompson sample of it, the "is it worth it at all" gate uses its mean.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from clientela.campaign.domain.model import ChannelEstimate, Contact, Trigger
from clientela.shared.contracts import Channel, Lifecycle, MessagePurpose, Segment, Tier

NO_SEGMENT = "unknown"

DEFAULT_CHANNEL_COSTS: Mapping[Channel, float] = {
    Channel.EMAIL: 0.05,
    Channel.SMS: 0.10,
    Channel.PHONE: 6.00,
    Channel.BRANCH: 25.00,
    Channel.MAIL: 1.20,
    Channel.WEB: 0.01,
    Channel.APP: 0.02,
    Channel.CHAT: 1.00,
}
# Before any evidence: typical response rates per channel (personal channels answer more).
DEFAULT_PRIOR_RATES: Mapping[Channel, float] = {
    Channel.EMAIL: 0.02,
    Channel.SMS: 0.03,
    Channel.PHONE: 0.10,
    Channel.BRANCH: 0.12,
    Channel.MAIL: 0.01,
    Channel.WEB: 0.01,
    Channel.APP: 0.015,
    Channel.CHAT: 0.05,
}
# Share of the person's predicted value a response is worth: keeping a slipping customer
# saves more of it than thanking a loyal one adds.
DEFAULT_RESPONSE_VALUE_SHARE: Mapping[MessagePurpose, float] = {
    MessagePurpose.ACQUISITION: 0.2,
    MessagePurpose.LOYALTY: 0.1,
    MessagePurpose.RETENTION: 0.25,
    MessagePurpose.CROSS_SELL: 0.10,
    MessagePurpose.UP_SELL: 0.10,
    MessagePurpose.WIN_BACK: 0.20,
}


@dataclass(frozen=True, slots=True)
class ResponseCounts:
    """Evidence for one posterior cell: messages sent and responses seen."""

    sends: int = 0
    responses: int = 0


PosteriorKey = tuple[str, Channel, Tier, str]
"""(campaign id, channel, tier, segment or NO_SEGMENT)."""


def posterior_key(
    campaign_id: str, channel: Channel, tier: Tier, segment: Segment | None
) -> PosteriorKey:
    """Return the learning cell of a decision."""
    return (campaign_id, channel, tier, segment.value if segment is not None else NO_SEGMENT)


@dataclass(frozen=True, slots=True)
class ChannelEconomics:
    """Costs, prior response rates and how a response is valued."""

    costs: Mapping[Channel, float] = field(default_factory=lambda: dict(DEFAULT_CHANNEL_COSTS))
    prior_rates: Mapping[Channel, float] = field(default_factory=lambda: dict(DEFAULT_PRIOR_RATES))
    prior_strength: float = 20.0
    response_value_share: Mapping[MessagePurpose, float] = field(
        default_factory=lambda: dict(DEFAULT_RESPONSE_VALUE_SHARE)
    )
    prospect_value: float = 1000.0
    habit_weight: float = 1.0

    def cost(self, channel: Channel) -> float:
        """Return what one message on the channel costs."""
        return self.costs.get(channel, 0.0)

    def prior(self, channel: Channel) -> tuple[float, float]:
        """Return the Beta prior (alpha, beta) of a channel."""
        rate = min(max(self.prior_rates.get(channel, 0.02), 1e-4), 1 - 1e-4)
        return rate * self.prior_strength, (1 - rate) * self.prior_strength


def response_value(
    contact: Contact, trigger: Trigger, purpose: MessagePurpose, economics: ChannelEconomics
) -> float:
    """Return what one response is worth: a share (by purpose) of the person's value.

    The person's value is their predicted lifetime value; for a prospect it is at least
    their potential times the value of a fully promising prospect.
    """
    share = economics.response_value_share.get(purpose, 0.1)
    value = contact.predicted_value
    if value is None:
        value = trigger.predicted_value or 0.0
    if contact.lifecycle is Lifecycle.PROSPECT and contact.potential is not None:
        value = max(value, contact.potential * economics.prospect_value)
    return share * value


def habit_lift(contact: Contact, channel: Channel, weight: float) -> float:
    """Return the lift of a channel from the person's own contact habits (1 = no habit).

    Habits inform but do not dictate: a channel the person uses for everything at most
    doubles its response estimate (weight 1).
    """
    return 1.0 + weight * contact.habits.get(channel, 0.0)


def estimate(
    channel: Channel,
    counts: ResponseCounts,
    value: float,
    lift: float,
    economics: ChannelEconomics,
    rng: random.Random,
) -> ChannelEstimate:
    """Score one channel: posterior mean and a Thompson sample, each turned into money."""
    alpha0, beta0 = economics.prior(channel)
    failures = max(counts.sends - counts.responses, 0)
    alpha, beta = alpha0 + counts.responses, beta0 + failures
    mean = alpha / (alpha + beta)
    sampled = rng.betavariate(alpha, beta)
    cost = economics.cost(channel)
    return ChannelEstimate(
        channel=channel,
        prior_rate=alpha0 / (alpha0 + beta0),
        sends=counts.sends,
        responses=counts.responses,
        posterior_mean=mean,
        sampled_rate=sampled,
        habit_lift=lift,
        response_value=value,
        cost=cost,
        expected_value=min(mean * lift, 1.0) * value - cost,
        sampled_value=min(sampled * lift, 1.0) * value - cost,
    )
