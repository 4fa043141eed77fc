"""The decision: matching, control groups, channel choice with reach and consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.domain.channels import choose_channel
from clientela.campaign.domain.decision import (
    DecisionPolicy,
    TierTrigger,
    decide,
    decision_id,
    matching_campaigns,
)
from clientela.campaign.domain.holdout import campaign_bucket, global_bucket
from clientela.campaign.domain.model import CampaignDefinition, Contact, Outcome
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Lifecycle,
    MessagePurpose,
    Tier,
    TierChanged,
    TierMove,
    derived_event_id,
)

CATALOG = load_catalog()
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NO_HOLDOUT = DecisionPolicy(global_holdout_share=0.0)
A_ORDER = (Channel.PHONE, Channel.BRANCH, Channel.EMAIL, Channel.SMS)


def change(
    move: TierMove,
    from_tier: Tier | None,
    to_tier: Tier,
    lifecycle: Lifecycle = Lifecycle.CUSTOMER,
    profile_id: str = "p-1",
) -> TierChanged:
    return TierChanged(
        profile_id=profile_id,
        profile_version=3,
        from_tier=from_tier,
        to_tier=to_tier,
        move=move,
        lifecycle=lifecycle,
        predicted_value=812.345,
        model_version="m1",
    )


def contact(
    *channels: Channel,
    lifecycle: Lifecycle = Lifecycle.CUSTOMER,
    consent: dict[Channel, ConsentStatus] | None = None,
    profile_id: str = "p-1",
) -> Contact:
    return Contact(profile_id, 3, lifecycle, frozenset(channels), consent or {})


def without_holdout(campaign_id: str) -> CampaignDefinition:
    campaign = CATALOG.get(campaign_id)
    assert campaign is not None
    return campaign.model_copy(update={"holdout_share": 0.0})


def matched_ids(tier_change: TierChanged) -> list[str]:
    return [c.id for c in matching_campaigns(CATALOG, tier_change)]


@pytest.mark.parametrize(
    ("tier_change", "expected"),
    [
        (change(TierMove.ENTERED, None, Tier.A), ["welcome-to-a"]),
        (change(TierMove.UP, Tier.B, Tier.A), ["welcome-to-a"]),
        (change(TierMove.UP, Tier.C, Tier.B), ["grow-to-b"]),
        (change(TierMove.ENTERED, None, Tier.B), []),
        (change(TierMove.DOWN, Tier.A, Tier.B), ["slipping-a"]),
        (change(TierMove.DOWN, Tier.A, Tier.C, Lifecycle.LAPSED), ["slipping-a"]),
        (change(TierMove.DOWN, Tier.B, Tier.C), []),
        (change(TierMove.ENTERED, None, Tier.P, Lifecycle.PROSPECT), ["prospect-acquisition"]),
        (change(TierMove.ENTERED, None, Tier.A, Lifecycle.PROSPECT), []),
    ],
)
def test_campaigns_match_on_move_tiers_and_lifecycle(
    tier_change: TierChanged, expected: list[str]
) -> None:
    assert matched_ids(tier_change) == expected


def test_a_disabled_campaign_never_matches() -> None:
    disabled = without_holdout("welcome-to-a").model_copy(update={"enabled": False})

    assert matching_campaigns([disabled], change(TierMove.UP, Tier.B, Tier.A)) == []


def test_buckets_are_deterministic_and_shares_hold_over_10k_ids() -> None:
    ids = [f"profile-{n}" for n in range(10_000)]

    assert [global_bucket(i) for i in ids[:50]] == [global_bucket(i) for i in ids[:50]]
    global_share = sum(global_bucket(i) < 0.05 for i in ids) / len(ids)
    campaign_share = sum(campaign_bucket("welcome-to-a", i) < 0.1 for i in ids) / len(ids)
    assert global_share == pytest.approx(0.05, abs=0.01)
    assert campaign_share == pytest.approx(0.1, abs=0.015)
    # Campaign holdouts are drawn independently: not the same people held out everywhere.
    both = sum(
        campaign_bucket("welcome-to-a", i) < 0.1 and campaign_bucket("grow-to-b", i) < 0.1
        for i in ids
    ) / len(ids)
    assert both == pytest.approx(0.01, abs=0.005)


def test_global_control_group_wins_over_everything() -> None:
    pid = next(f"g-{n}" for n in range(1000) if global_bucket(f"g-{n}") < 0.05)
    trigger = TierTrigger("t-1", change(TierMove.UP, Tier.B, Tier.A, profile_id=pid))

    (decision,) = decide(
        trigger,
        contact(*A_ORDER, profile_id=pid),
        [without_holdout("welcome-to-a")],
        DecisionPolicy(global_holdout_share=0.05),
        now=NOW,
    )

    assert decision.outcome is Outcome.CONTROL
    assert decision.channel is None
    assert decision.reasons[-1].code == "global_control_group"
    assert decision.reasons[-1].value == pytest.approx(global_bucket(pid), abs=1e-6)


def test_campaign_holdout_puts_the_person_in_control() -> None:
    pid = next(f"h-{n}" for n in range(1000) if campaign_bucket("welcome-to-a", f"h-{n}") < 0.1)
    campaign = CATALOG.get("welcome-to-a")
    assert campaign is not None

    (decision,) = decide(
        TierTrigger("t-1", change(TierMove.UP, Tier.B, Tier.A, profile_id=pid)),
        contact(*A_ORDER, profile_id=pid),
        [campaign],
        NO_HOLDOUT,
        now=NOW,
    )

    assert decision.outcome is Outcome.CONTROL
    assert decision.reasons[-1].code == "campaign_holdout"


def test_a_sent_decision_carries_ids_variant_expiry_and_reasons() -> None:
    now = NOW
    (decision,) = decide(
        TierTrigger("t-42", change(TierMove.UP, Tier.B, Tier.A)),
        contact(*A_ORDER),
        [without_holdout("welcome-to-a")],
        NO_HOLDOUT,
        now=now,
    )

    assert decision.outcome is Outcome.SENT
    assert decision.channel is Channel.PHONE
    assert decision.decision_id == decision_id("welcome-to-a", "t-42")
    assert decision.decision_id == derived_event_id("campaign.message", "welcome-to-a", "t-42")
    assert decision.variant == "welcome-a-v1"
    assert decision.purpose is MessagePurpose.LOYALTY
    assert decision.tier is Tier.A
    assert decision.expires_at == now + timedelta(hours=168)
    codes = [r.code for r in decision.reasons]
    assert codes == ["tier_move", "treatment_group", "channel_selected"]
    assert decision.reasons[0].value == 812.35
    assert "moved up from tier B to A" in decision.reasons[0].detail


@pytest.mark.parametrize(
    ("reachable", "consent", "expected", "skipped"),
    [
        (A_ORDER, {}, Channel.PHONE, []),
        (A_ORDER, {Channel.PHONE: ConsentStatus.OPTED_OUT}, Channel.BRANCH, ["channel_opted_out"]),
        ((Channel.EMAIL, Channel.SMS), {}, Channel.EMAIL, ["channel_unreachable"] * 2),
        (
            (Channel.PHONE, Channel.SMS),
            {Channel.PHONE: ConsentStatus.OPTED_OUT},
            Channel.SMS,
            ["channel_opted_out", "channel_unreachable", "channel_unreachable"],
        ),
    ],
)
def test_the_tier_order_is_limited_by_reach_and_consent(
    reachable: tuple[Channel, ...],
    consent: dict[Channel, ConsentStatus],
    expected: Channel,
    skipped: list[str],
) -> None:
    choice = choose_channel(A_ORDER, A_ORDER, contact(*reachable, consent=consent))

    assert choice.channel is expected
    assert [r.code for r in choice.reasons] == [*skipped, "channel_selected"]


def test_the_campaign_limits_the_tier_order() -> None:
    choice = choose_channel(A_ORDER, (Channel.SMS, Channel.EMAIL), contact(*A_ORDER))

    # The tier's order decides among the campaign's channels, not the campaign's own order.
    assert choice.channel is Channel.EMAIL


def test_no_channel_left_suppresses_with_the_reason() -> None:
    (decision,) = decide(
        TierTrigger("t-1", change(TierMove.UP, Tier.C, Tier.B)),
        contact(Channel.EMAIL, consent={Channel.EMAIL: ConsentStatus.OPTED_OUT}),
        [without_holdout("grow-to-b")],
        NO_HOLDOUT,
        now=NOW,
    )

    assert decision.outcome is Outcome.SUPPRESSED
    assert decision.channel is None
    assert [r.code for r in decision.reasons][-3:] == [
        "channel_opted_out",
        "channel_unreachable",
        "no_eligible_channel",
    ]
    assert decision.reasons[-1].value == 2


def test_a_tier_policy_sharing_no_channel_with_the_campaign_suppresses() -> None:
    policy = DecisionPolicy(global_holdout_share=0.0, tier_channels={Tier.B: (Channel.BRANCH,)})
    (decision,) = decide(
        TierTrigger("t-1", change(TierMove.UP, Tier.C, Tier.B)),
        contact(*A_ORDER),
        [without_holdout("grow-to-b")],
        policy,
        now=NOW,
    )

    assert decision.outcome is Outcome.SUPPRESSED
    assert decision.reasons[-1].code == "no_channel_in_policy"


@pytest.mark.parametrize(
    ("consent", "outcome"),
    [
        ({}, Outcome.SUPPRESSED),
        ({Channel.EMAIL: ConsentStatus.OPTED_OUT}, Outcome.SUPPRESSED),
        ({Channel.EMAIL: ConsentStatus.OPTED_IN}, Outcome.SENT),
    ],
)
def test_prospects_need_an_explicit_opt_in(
    consent: dict[Channel, ConsentStatus], outcome: Outcome
) -> None:
    (decision,) = decide(
        TierTrigger("t-1", change(TierMove.ENTERED, None, Tier.P, Lifecycle.PROSPECT)),
        contact(Channel.EMAIL, lifecycle=Lifecycle.PROSPECT, consent=consent),
        [without_holdout("prospect-acquisition")],
        NO_HOLDOUT,
        now=NOW,
    )

    assert decision.outcome is outcome
    assert decision.purpose is MessagePurpose.ACQUISITION


def test_a_prospect_who_became_a_customer_gets_no_acquisition_message() -> None:
    (decision,) = decide(
        TierTrigger("t-1", change(TierMove.ENTERED, None, Tier.P, Lifecycle.PROSPECT)),
        contact(Channel.EMAIL, consent={Channel.EMAIL: ConsentStatus.OPTED_IN}),
        [without_holdout("prospect-acquisition")],
        NO_HOLDOUT,
        now=NOW,
    )

    assert decision.outcome is Outcome.SUPPRESSED
    assert decision.reasons[-1].code == "lifecycle_no_longer_eligible"
