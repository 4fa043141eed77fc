"""The decision for one trigger: which campaigns apply, who is held out, which channel, when.

`decide` returns, per matching campaign, either a final Decision (control or suppressed), a
Deferral (quiet hours: ask again later) or a CapRequest (a message that may go out if the
person's contact caps allow one of the ranked channels). `settle` turns a CapRequest and the
contact ledger's answer into the final Decision.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clientela.campaign.domain.channels import eligible_channels
from clientela.campaign.domain.contact_policy import (
    CapCounter,
    ContactPolicy,
    cap_counters,
    cooldown_until,
    quiet_until,
)
from clientela.campaign.domain.economics import (
    ChannelEconomics,
    PosteriorKey,
    ResponseCounts,
    estimate,
    habit_lift,
    posterior_key,
    response_value,
)
from clientela.campaign.domain.holdout import campaign_bucket, global_bucket
from clientela.campaign.domain.model import (
    CampaignDefinition,
    ChannelEstimate,
    Contact,
    Decision,
    Outcome,
    Reason,
    Trigger,
    TriggerKind,
)
from clientela.shared.contracts import (
    Channel,
    Lifecycle,
    MessagePurpose,
    Segment,
    Tier,
    derived_event_id,
)

DEFAULT_TIER_CHANNELS: Mapping[Tier, tuple[Channel, ...]] = {
    Tier.A: (Channel.PHONE, Channel.BRANCH, Channel.EMAIL, Channel.SMS),
    Tier.B: (Channel.EMAIL, Channel.SMS, Channel.PHONE),
    Tier.C: (Channel.EMAIL, Channel.SMS),
    Tier.P: (Channel.EMAIL,),
}
# What a segment values most when no trait says it: price for one-off buyers, service for
# the rest (they buy systems, relationships or partnerships, not a discount).
SEGMENT_VALUE_DRIVER: Mapping[Segment, str] = {
    Segment.TRANSACTIONAL: "price",
    Segment.SOLUTIONS: "service",
    Segment.RELATIONAL: "service",
    Segment.COLLABORATIVE: "service",
}


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """Service-wide decision knobs: control share, tier channel policy, economics, contact."""

    global_holdout_share: float = 0.05
    tier_channels: Mapping[Tier, Sequence[Channel]] = field(
        default_factory=lambda: dict(DEFAULT_TIER_CHANNELS)
    )
    economics: ChannelEconomics = field(default_factory=ChannelEconomics)
    contact: ContactPolicy = field(default_factory=ContactPolicy)
    value_driver_trait: str = "value_driver"


@dataclass(frozen=True, slots=True)
class CapRequest:
    """A message that may go out on the first ranked channel the person's caps allow."""

    draft: Decision
    alternatives: tuple[ChannelEstimate, ...]
    counters: tuple[tuple[CapCounter, ...], ...]


@dataclass(frozen=True, slots=True)
class Deferral:
    """A campaign to decide again once quiet hours are over."""

    campaign_id: str
    until: datetime
    reason: Reason


Plan = Decision | CapRequest | Deferral


def _finished(
    d: Decision,
    reasons: tuple[Reason, ...],
    outcome: Outcome | None = None,
    best: ChannelEstimate | None = None,
) -> Decision:
    """Return the draft with its reasons and, when given, its outcome and channel numbers.

    Built directly: `dataclasses.replace` walks the fields on every one of many candidates.
    """
    return Decision(
        d.decision_id,
        d.campaign_id,
        d.trigger_event_id,
        d.profile_id,
        d.outcome if outcome is None else outcome,
        best.channel if best is not None else d.channel,
        d.variant,
        d.purpose,
        d.tier,
        reasons,
        d.decided_at,
        d.expires_at,
        d.segment,
        d.offer,
        best.cost if best is not None and outcome is Outcome.SENT else d.cost,
        best.expected_value if best is not None else d.expected_value,
    )


def decision_id(campaign_id: str, trigger_event_id: str) -> str:
    """Return the id of a campaign's decision (and message) for one trigger; stable on replay."""
    return derived_event_id("campaign.message", campaign_id, trigger_event_id)


def audience_tier(trigger: Trigger, contact: Contact) -> Tier | None:
    """Return the tier a campaign sees: the tier moved into, else the person's current tier."""
    if trigger.kind.is_tier_move:
        return trigger.to_tier
    return contact.tier or trigger.to_tier


def policy_tier(trigger: Trigger, tier: Tier) -> Tier:
    """Return the tier whose channel policy applies.

    A person slipping down keeps the channels of the tier they are slipping from: the
    relationship being rescued is the one they had.
    """
    if trigger.kind is TriggerKind.TIER_DOWN and trigger.from_tier is not None:
        return trigger.from_tier
    return tier


def matches(
    campaign: CampaignDefinition, trigger: Trigger, contact: Contact, now: datetime
) -> bool:
    """Return whether an active campaign applies to this trigger and person."""
    if not campaign.active_at(now) or trigger.kind not in campaign.trigger:
        return False
    tier = audience_tier(trigger, contact)
    if tier is None or tier not in campaign.to_tiers:
        return False
    if (
        trigger.kind.is_tier_move
        and campaign.from_tiers is not None
        and trigger.from_tier not in campaign.from_tiers
    ):
        return False
    if (trigger.lifecycle or contact.lifecycle) not in campaign.lifecycles:
        return False
    if campaign.segments is not None and contact.segment not in campaign.segments:
        return False
    if any(contact.trait(k) != v for k, v in campaign.traits.items()):
        return False
    if trigger.kind is TriggerKind.INACTIVITY and trigger.inactive_days != campaign.inactive_days:
        return False
    if (
        trigger.kind is TriggerKind.HIGH_POTENTIAL
        and (contact.potential or 0) < campaign.min_potential
    ):
        return False
    if trigger.kind is TriggerKind.CROSS_SELL and campaign.cross_sell is not None:
        rule = campaign.cross_sell
        if not (rule.bought & contact.categories) or rule.offer in contact.categories:
            return False
    return True


def decide(
    trigger: Trigger,
    contact: Contact,
    campaigns: Iterable[CampaignDefinition],
    policy: DecisionPolicy,
    evidence: Mapping[PosteriorKey, ResponseCounts],
    now: datetime,
    remaining_budget: Mapping[str, float] | None = None,
) -> list[Plan]:
    """Plan every matching campaign for a trigger, given what is known of the person."""
    budgets = remaining_budget or {}
    return [
        _plan_one(c, trigger, contact, policy, evidence, now, budgets.get(c.id))
        for c in campaigns
        if matches(c, trigger, contact, now)
    ]


def value_driver(contact: Contact, policy: DecisionPolicy) -> str | None:
    """Return what the person values (trait, else derived from the segment)."""
    trait = contact.trait(policy.value_driver_trait)
    if isinstance(trait, str) and trait:
        return trait
    return SEGMENT_VALUE_DRIVER.get(contact.segment) if contact.segment is not None else None


def _plan_one(
    campaign: CampaignDefinition,
    trigger: Trigger,
    contact: Contact,
    policy: DecisionPolicy,
    evidence: Mapping[PosteriorKey, ResponseCounts],
    now: datetime,
    budget_left: float | None,
) -> Plan:
    tier = audience_tier(trigger, contact)
    assert tier is not None  # matches() guarantees a tier
    reasons: list[Reason] = [_trigger_reason(campaign, trigger, contact, tier)]
    driver = value_driver(contact, policy)
    offer = campaign.offer_variants.get(driver) if driver is not None else None
    if offer is not None:
        reasons.append(
            Reason(code="offer_variant", detail=f"values {driver}: offer {offer}", value=driver)
        )
    draft = Decision(
        decision_id=decision_id(campaign.id, trigger.event_id),
        campaign_id=campaign.id,
        trigger_event_id=trigger.event_id,
        profile_id=trigger.profile_id,
        outcome=Outcome.SUPPRESSED,
        channel=None,
        variant=campaign.variants[tier],
        purpose=campaign.purpose,
        tier=tier,
        reasons=(),
        decided_at=now,
        expires_at=now + timedelta(hours=campaign.message_ttl_hours),
        segment=contact.segment,
        offer=offer,
    )

    def settle_now(outcome: Outcome, best: ChannelEstimate | None = None) -> Decision:
        return _finished(draft, tuple(reasons), outcome, best)

    # The person may have changed since the trigger (a prospect who bought is now a
    # customer): a message meant for their old lifecycle is the wrong message.
    if contact.lifecycle not in campaign.lifecycles or not _purpose_fits(campaign, contact):
        reasons.append(
            Reason(
                code="lifecycle_no_longer_eligible",
                detail=(
                    f"the profile is now {contact.lifecycle.value}; the campaign "
                    f"({campaign.purpose.value}) is for "
                    f"{', '.join(sorted(lc.value for lc in campaign.lifecycles))}"
                ),
                value=contact.lifecycle.value,
            )
        )
        return settle_now(Outcome.SUPPRESSED)

    calm_until = cooldown_until(contact, policy.contact)
    if calm_until is not None and now < calm_until:
        reasons.append(
            Reason(
                code="cooldown",
                detail=(
                    f"opted out or complained recently; no contact before {calm_until.isoformat()}"
                ),
                value=calm_until.isoformat(),
            )
        )
        return settle_now(Outcome.SUPPRESSED)

    ranked, channel_reasons = _rank_channels(
        campaign, trigger, contact, tier, policy, evidence, draft.decision_id, budget_left
    )
    reasons.extend(channel_reasons)
    if not ranked:
        return settle_now(Outcome.SUPPRESSED)
    best = ranked[0]

    global_share = policy.global_holdout_share
    g_bucket = global_bucket(trigger.profile_id)
    if g_bucket < global_share:
        reasons.append(
            Reason(
                code="global_control_group",
                detail=f"bucket {g_bucket:.4f} < global control share {global_share:.4f}",
                value=round(g_bucket, 6),
            )
        )
        return settle_now(Outcome.CONTROL, best)
    c_bucket = campaign_bucket(campaign.id, trigger.profile_id)
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
        return settle_now(Outcome.CONTROL, best)
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

    # The best channel is worth waiting for: rather than settle for a worse one at night,
    # the campaign is decided again when the person's quiet hours end.
    wake = quiet_until(contact, best.channel, now, policy.contact)
    if wake is not None:
        deadline = trigger.occurred_at + timedelta(hours=campaign.message_ttl_hours)
        if wake >= deadline:
            reasons.append(
                Reason(
                    code="quiet_hours_past_expiry",
                    detail=f"{best.channel.value}: quiet hours end after the message would expire",
                    value=wake.isoformat(),
                )
            )
            return settle_now(Outcome.SUPPRESSED)
        return Deferral(
            campaign.id,
            wake,
            Reason(
                code="quiet_hours",
                detail=f"{best.channel.value}: quiet hours in the person's time zone until "
                f"{wake.isoformat()}",
                value=wake.isoformat(),
            ),
        )
    usable = tuple(
        e for e in ranked if quiet_until(contact, e.channel, now, policy.contact) is None
    )
    return CapRequest(
        draft=_finished(draft, tuple(reasons)),
        alternatives=usable,
        counters=tuple(
            tuple(cap_counters(contact, e.channel, now, policy.contact)) for e in usable
        ),
    )


def settle(request: CapRequest, granted: int | None, blocked: Sequence[str]) -> Decision:
    """Finish a message decision: sent on the granted alternative, or suppressed by the caps."""
    draft = request.draft
    if granted is None:
        detail = "; ".join(
            f"{alt.channel.value}: {label}"
            for alt, label in zip(request.alternatives, blocked, strict=False)
        )
        reason = Reason(
            code="contact_cap_reached",
            detail=f"every candidate channel is at its cap: {detail}",
            value=len(request.alternatives),
        )
        return _finished(draft, (*draft.reasons, reason))
    chosen = request.alternatives[granted]
    skipped = [
        Reason(
            code="contact_cap_reached",
            detail=f"{alt.channel.value}: {label}",
            value=alt.channel.value,
        )
        for alt, label in zip(request.alternatives[:granted], blocked, strict=False)
    ]
    picked = Reason(
        code="channel_selected",
        detail=(
            f"{chosen.channel.value}: highest sampled value among the allowed channels "
            f"(expected {chosen.expected_value:.2f}, sampled {chosen.sampled_value:.2f})"
        ),
        value=chosen.channel.value,
    )
    return _finished(draft, (*draft.reasons, *skipped, picked), Outcome.SENT, chosen)


def _purpose_fits(campaign: CampaignDefinition, contact: Contact) -> bool:
    # Prospects never get customer messages and customers never get acquisition ones,
    # whatever a campaign definition says.
    is_prospect = contact.lifecycle is Lifecycle.PROSPECT
    return (campaign.purpose is MessagePurpose.ACQUISITION) == is_prospect


def _rank_channels(
    campaign: CampaignDefinition,
    trigger: Trigger,
    contact: Contact,
    tier: Tier,
    policy: DecisionPolicy,
    evidence: Mapping[PosteriorKey, ResponseCounts],
    seed: str,
    budget_left: float | None,
) -> tuple[list[ChannelEstimate], list[Reason]]:
    rules_tier = policy_tier(trigger, tier)
    tier_channels = tuple(policy.tier_channels.get(rules_tier, ()))
    eligible, reasons = eligible_channels(tier_channels, campaign.channels, contact)
    if rules_tier is not tier:
        reasons.insert(
            0,
            Reason(
                code="channel_policy_of_previous_tier",
                detail=(
                    f"slipping from {rules_tier.value}: the channels of tier "
                    f"{rules_tier.value} apply"
                ),
                value=rules_tier.value,
            ),
        )
    if not eligible:
        if tier_channels and any(c in campaign.channels for c in tier_channels):
            reasons.append(
                Reason(
                    code="no_eligible_channel",
                    detail="no candidate channel is reachable and consented",
                    value=0,
                )
            )
        return [], reasons
    economics = policy.economics
    value = response_value(contact, trigger, campaign.purpose, economics)
    rng = random.Random(seed)
    estimates = [
        estimate(
            channel,
            evidence.get(
                posterior_key(campaign.id, channel, tier, contact.segment), ResponseCounts()
            ),
            value,
            habit_lift(contact, channel, economics.habit_weight),
            economics,
            rng,
        )
        for channel in eligible
    ]
    for e in estimates:
        reasons.append(
            Reason(
                code="channel_value",
                detail=(
                    f"{e.channel.value}: P(response) {e.posterior_mean:.4f} "
                    f"(prior {e.prior_rate:.4f}, {e.responses}/{e.sends} responses/sends), "
                    f"sampled {e.sampled_rate:.4f}, habit lift {e.habit_lift:.2f}, "
                    f"response worth {e.response_value:.2f}, cost {e.cost:.2f} -> "
                    f"expected {e.expected_value:.2f}, sampled {e.sampled_value:.2f}"
                ),
                value=round(e.expected_value, 4),
            )
        )
    worth = [e for e in estimates if e.expected_value > campaign.min_expected_value]
    if not worth:
        reasons.append(
            Reason(
                code="not_worth_contacting",
                detail=(
                    f"no channel's expected value exceeds {campaign.min_expected_value:.2f}: "
                    "the contact would cost more than it is expected to return"
                ),
                value=round(max(e.expected_value for e in estimates), 4),
            )
        )
        return [], reasons
    if budget_left is not None:
        affordable = [e for e in worth if e.cost <= budget_left]
        if not affordable:
            reasons.append(
                Reason(
                    code="budget_exhausted",
                    detail=f"campaign budget left {budget_left:.2f} pays for no channel",
                    value=round(budget_left, 4),
                )
            )
            return [], reasons
        worth = affordable
    worth.sort(key=lambda e: (-e.sampled_value, tier_channels.index(e.channel)))
    return worth, reasons


def _trigger_reason(
    campaign: CampaignDefinition, trigger: Trigger, contact: Contact, tier: Tier
) -> Reason:
    if trigger.kind is TriggerKind.TIER_ENTERED or (
        trigger.kind.is_tier_move and trigger.from_tier is None
    ):
        what = f"entered tier {tier.value}"
    elif trigger.kind.is_tier_move:
        assert trigger.from_tier is not None
        direction = trigger.kind.value.removeprefix("tier_")
        what = f"moved {direction} from tier {trigger.from_tier.value} to {tier.value}"
    elif trigger.kind is TriggerKind.INACTIVITY:
        what = f"inactive for {trigger.inactive_days} days (tier {tier.value})"
    else:
        what = f"{trigger.kind.value.replace('_', ' ')} (tier {tier.value})"
    value = (
        contact.predicted_value if contact.predicted_value is not None else trigger.predicted_value
    )
    lifecycle = (trigger.lifecycle or contact.lifecycle).value
    return Reason(
        code="trigger",
        detail=(
            f"{lifecycle} {what}"
            + (f" with predicted value {value:.2f}" if value is not None else "")
            + f"; campaign {campaign.id} reacts to "
            + ", ".join(sorted(kind.value for kind in campaign.trigger))
        ),
        value=trigger.kind.value,
    )
