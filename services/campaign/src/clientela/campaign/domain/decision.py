"""The decision for one tier move: which campaigns apply, control groups, and the channel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clientela.campaign.domain.channels import choose_channel
from clientela.campaign.domain.holdout import campaign_bucket, global_bucket
from clientela.campaign.domain.model import (
    CampaignDefinition,
    Contact,
    Decision,
    Outcome,
)
from clientela.shared.contracts import (
    Channel,
    Reason,
    Tier,
    TierChanged,
    TierMove,
    derived_event_id,
)

DEFAULT_TIER_CHANNELS: Mapping[Tier, tuple[Channel, ...]] = {
    Tier.A: (Channel.PHONE, Channel.BRANCH, Channel.EMAIL, Channel.SMS),
    Tier.B: (Channel.EMAIL, Channel.SMS, Channel.PHONE),
    Tier.C: (Channel.EMAIL, Channel.SMS),
    Tier.P: (Channel.EMAIL,),
}


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """Service-wide decision knobs: the global control share and each tier's channel order."""

    global_holdout_share: float = 0.05
    tier_channels: Mapping[Tier, Sequence[Channel]] = field(
        default_factory=lambda: dict(DEFAULT_TIER_CHANNELS)
    )


@dataclass(frozen=True, slots=True)
class TierTrigger:
    """A tier move as campaigns see it: the event id that caused it and its facts."""

    event_id: str
    change: TierChanged


def decision_id(campaign_id: str, trigger_event_id: str) -> str:
    """Return the id of a campaign's decision (and message) for one trigger; stable on replay."""
    return derived_event_id("campaign.message", campaign_id, trigger_event_id)


def matches(campaign: CampaignDefinition, change: TierChanged) -> bool:
    """Return whether an enabled campaign applies to this tier move."""
    if not campaign.enabled:
        return False
    if change.move not in {kind.move for kind in campaign.trigger}:
        return False
    if change.to_tier not in campaign.to_tiers:
        return False
    if campaign.from_tiers is not None and change.from_tier not in campaign.from_tiers:
        return False
    return change.lifecycle in campaign.lifecycles


def matching_campaigns(
    campaigns: Iterable[CampaignDefinition], change: TierChanged
) -> list[CampaignDefinition]:
    """Return the campaigns that apply to this tier move, in catalog order."""
    return [c for c in campaigns if matches(c, change)]


def decide(
    trigger: TierTrigger,
    contact: Contact,
    campaigns: Iterable[CampaignDefinition],
    policy: DecisionPolicy,
    now: datetime,
) -> list[Decision]:
    """Decide every matching campaign for a tier move, given what is known of the person."""
    return [
        _decide_one(campaign, trigger, contact, policy, now)
        for campaign in matching_campaigns(campaigns, trigger.change)
    ]


def _decide_one(
    campaign: CampaignDefinition,
    trigger: TierTrigger,
    contact: Contact,
    policy: DecisionPolicy,
    now: datetime,
) -> Decision:
    change = trigger.change
    reasons: list[Reason] = [_move_reason(campaign, change)]

    def settle(outcome: Outcome, channel: Channel | None = None) -> Decision:
        return Decision(
            decision_id=decision_id(campaign.id, trigger.event_id),
            campaign_id=campaign.id,
            trigger_event_id=trigger.event_id,
            profile_id=change.profile_id,
            outcome=outcome,
            channel=channel,
            variant=campaign.variants[change.to_tier],
            purpose=campaign.purpose,
            tier=change.to_tier,
            reasons=tuple(reasons),
            decided_at=now,
            expires_at=now + timedelta(hours=campaign.message_ttl_hours),
        )

    # The person may have changed since the move (a prospect who bought is now a customer):
    # a message meant for their old lifecycle is the wrong message, so it is not sent.
    if contact.lifecycle not in campaign.lifecycles:
        reasons.append(
            Reason(
                code="lifecycle_no_longer_eligible",
                detail=(
                    f"the profile is now {contact.lifecycle.value}; the campaign is for "
                    f"{', '.join(sorted(lc.value for lc in campaign.lifecycles))}"
                ),
                value=contact.lifecycle.value,
            )
        )
        return settle(Outcome.SUPPRESSED)

    global_share = policy.global_holdout_share
    g_bucket = global_bucket(change.profile_id)
    if g_bucket < global_share:
        reasons.append(
            Reason(
                code="global_control_group",
                detail=f"bucket {g_bucket:.4f} < global control share {global_share:.4f}",
                value=round(g_bucket, 6),
            )
        )
        return settle(Outcome.CONTROL)
    c_bucket = campaign_bucket(campaign.id, change.profile_id)
    if c_bucket < campaign.holdout_share:
        reasons.append(
            Reason(
                code="campaign_holdout",
                detail=(
                    f"bucket {c_bucket:.4f} < campaign holdout share {campaign.holdout_share:.4f}"
                ),
                value=round(c_bucket, 6),
            )
        )
        return settle(Outcome.CONTROL)
    reasons.append(
        Reason(
            code="treatment_group",
            detail=(
                f"global bucket {g_bucket:.4f} >= {global_share:.4f} and campaign bucket "
                f"{c_bucket:.4f} >= {campaign.holdout_share:.4f}"
            ),
            value=round(c_bucket, 6),
        )
    )

    choice = choose_channel(
        tuple(policy.tier_channels.get(change.to_tier, ())), campaign.channels, contact
    )
    reasons.extend(choice.reasons)
    if choice.channel is None:
        return settle(Outcome.SUPPRESSED)
    return settle(Outcome.SENT, choice.channel)


def _move_reason(campaign: CampaignDefinition, change: TierChanged) -> Reason:
    if change.move is TierMove.ENTERED or change.from_tier is None:
        move = f"entered tier {change.to_tier.value}"
    else:
        move = (
            f"moved {change.move.value} from tier {change.from_tier.value} "
            f"to {change.to_tier.value}"
        )
    return Reason(
        code="tier_move",
        detail=(
            f"{change.lifecycle.value} {move} with predicted value {change.predicted_value:.2f}; "
            f"campaign {campaign.id} reacts to "
            f"{', '.join(sorted(kind.value for kind in campaign.trigger))}"
        ),
        value=round(change.predicted_value, 2),
    )
