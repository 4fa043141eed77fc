"""The decision: matching, control groups, expected value per channel, the policy guards."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.domain.contact_policy import ContactPolicy, quiet_until
from clientela.campaign.domain.decision import (
    CapRequest,
    DecisionPolicy,
    Deferral,
    decide,
    decision_id,
    matches,
    settle,
)
from clientela.campaign.domain.economics import ResponseCounts, posterior_key
from clientela.campaign.domain.holdout import campaign_bucket, global_bucket
from clientela.campaign.domain.model import (
    CampaignDefinition,
    Contact,
    Decision,
    Outcome,
    Trigger,
    TriggerKind,
)
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Lifecycle,
    MessagePurpose,
    Segment,
    Tier,
    TierMove,
)

CATALOG = load_catalog()
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NO_HOLDOUT = DecisionPolicy(global_holdout_share=0.0)


def trigger(
    move: TierMove | TriggerKind,
    from_tier: Tier | None,
    to_tier: Tier | None,
    lifecycle: Lifecycle = Lifecycle.CUSTOMER,
    profile_id: str = "p-1",
    predicted_value: float = 812.345,
) -> Trigger:
    kind = TriggerKind.of_move(move) if isinstance(move, TierMove) else move
    return Trigger(
        event_id=f"ev-{profile_id}-{kind.value}",
        kind=kind,
        profile_id=profile_id,
        profile_version=3,
        occurred_at=NOW,
        lifecycle=lifecycle,
        to_tier=to_tier,
        from_tier=from_tier,
        predicted_value=predicted_value,
    )


def contact(
    *channels: Channel,
    lifecycle: Lifecycle = Lifecycle.CUSTOMER,
    consent: dict[Channel, ConsentStatus] | None = None,
    profile_id: str = "p-1",
    **facts: object,
) -> Contact:
    base = Contact(profile_id, 3, lifecycle, frozenset(channels), consent or {})
    return replace(base, **facts)  # type: ignore[arg-type]


def without_holdout(campaign_id: str, **changes: object) -> CampaignDefinition:
    campaign = CATALOG.get(campaign_id)
    assert campaign is not None
    return campaign.model_copy(update={"holdout_share": 0.0, **changes})


def only(plans: list[object]) -> object:
    (plan,) = plans
    return plan


def granted_first(plan: object) -> Decision:
    """Settle a plan as the ledger would with no caps reached."""
    if isinstance(plan, CapRequest):
        return settle(plan, 0 if plan.alternatives else None, ())
    assert isinstance(plan, Decision)
    return plan


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (trigger(TierMove.ENTERED, None, Tier.A), ["welcome-to-a"]),
        (trigger(TierMove.UP, Tier.B, Tier.A), ["welcome-to-a"]),
        (trigger(TierMove.UP, Tier.C, Tier.B), ["grow-to-b"]),
        (trigger(TierMove.DOWN, Tier.A, Tier.B), ["slipping-a"]),
        (trigger(TierMove.DOWN, Tier.A, Tier.C, Lifecycle.LAPSED), ["slipping-a"]),
        (trigger(TierMove.DOWN, Tier.B, Tier.C), []),
        (trigger(TierMove.UP, Tier.B, Tier.A, Lifecycle.LAPSED), []),
        (
            trigger(TierMove.ENTERED, None, Tier.P, Lifecycle.PROSPECT),
            ["prospect-acquisition"],
        ),
    ],
)
def test_campaigns_match_on_trigger_tiers_and_lifecycle(t: Trigger, expected: list[str]) -> None:
    person = contact(Channel.EMAIL, lifecycle=t.lifecycle or Lifecycle.CUSTOMER)
    assert [c.id for c in CATALOG if matches(c, t, person, NOW)] == expected


def test_a_disabled_or_out_of_schedule_campaign_never_matches() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A)
    person = contact(Channel.EMAIL)
    assert not matches(without_holdout("welcome-to-a", enabled=False), t, person, NOW)
    later = without_holdout("welcome-to-a", starts_at=NOW + timedelta(days=1))
    over = without_holdout("welcome-to-a", ends_at=NOW)
    assert not matches(later, t, person, NOW)
    assert not matches(over, t, person, NOW)


def test_segments_and_traits_narrow_the_audience() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A)
    campaign = without_holdout(
        "welcome-to-a", segments=frozenset({Segment.RELATIONAL}), traits={"region": "north"}
    )
    fits = contact(Channel.EMAIL, segment=Segment.RELATIONAL, traits={"region": "north"})
    assert matches(campaign, t, fits, NOW)
    assert not matches(campaign, t, replace(fits, segment=Segment.TRANSACTIONAL), NOW)
    assert not matches(campaign, t, replace(fits, traits={"region": "south"}), NOW)


def test_buckets_are_deterministic_and_shares_hold_over_10k_ids() -> None:
    ids = [f"profile-{n}" for n in range(10_000)]
    assert [global_bucket(i) for i in ids[:50]] == [global_bucket(i) for i in ids[:50]]
    in_global = sum(global_bucket(i) < 0.05 for i in ids) / len(ids)
    in_campaign = sum(campaign_bucket("welcome-to-a", i) < 0.1 for i in ids) / len(ids)
    assert 0.04 < in_global < 0.06
    assert 0.09 < in_campaign < 0.11
    both = sum(
        campaign_bucket("welcome-to-a", i) < 0.1 and campaign_bucket("grow-to-b", i) < 0.1
        for i in ids
    ) / len(ids)
    assert 0.005 < both < 0.015  # independent across campaigns: about 1%


def test_the_global_control_group_records_the_channel_it_would_have_used() -> None:
    pid = next(f"g-{n}" for n in range(1000) if global_bucket(f"g-{n}") < 0.05)
    t = trigger(TierMove.UP, Tier.B, Tier.A, profile_id=pid)

    plan = only(
        decide(t, contact(Channel.EMAIL, profile_id=pid), CATALOG, DecisionPolicy(), {}, NOW)
    )

    assert isinstance(plan, Decision)
    assert plan.outcome is Outcome.CONTROL
    assert plan.channel is Channel.EMAIL
    assert plan.reasons[-1].code == "global_control_group"


def test_the_campaign_holdout_puts_the_person_in_control() -> None:
    pid = next(
        f"h-{n}"
        for n in range(1000)
        if global_bucket(f"h-{n}") >= 0.05 and campaign_bucket("welcome-to-a", f"h-{n}") < 0.1
    )
    t = trigger(TierMove.UP, Tier.B, Tier.A, profile_id=pid)

    plan = only(
        decide(t, contact(Channel.EMAIL, profile_id=pid), CATALOG, DecisionPolicy(), {}, NOW)
    )

    assert isinstance(plan, Decision)
    assert plan.outcome is Outcome.CONTROL
    assert plan.reasons[-1].code == "campaign_holdout"


def test_a_sent_decision_carries_ids_variant_expiry_numbers_and_reasons() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A)
    plan = only(
        decide(t, contact(Channel.EMAIL), [without_holdout("welcome-to-a")], NO_HOLDOUT, {}, NOW)
    )

    decision = granted_first(plan)

    assert decision.decision_id == decision_id("welcome-to-a", t.event_id)
    assert decision.outcome is Outcome.SENT
    assert decision.channel is Channel.EMAIL
    assert decision.variant == "welcome-a-v1"
    assert decision.purpose is MessagePurpose.LOYALTY
    assert decision.expires_at == NOW + timedelta(hours=168)
    assert decision.cost == pytest.approx(0.05)
    value = next(r for r in decision.reasons if r.code == "channel_value")
    # 0.02 prior x 81.23 (10% of the predicted value 812.35) - 0.05 cost
    assert value.value == pytest.approx(0.02 * 81.2345 - 0.05, abs=1e-3)
    assert "P(response) 0.0200" in value.detail
    assert "cost 0.05" in value.detail


def test_a_valuable_customer_gets_the_personal_channel_a_modest_one_email() -> None:
    campaign = without_holdout("welcome-to-a")
    reach = (Channel.PHONE, Channel.EMAIL)
    valuable = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=20_000)
    modest = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=300)

    rich = [granted_first(only(decide(
        replace(valuable, event_id=f"v-{n}"), contact(*reach), [campaign], NO_HOLDOUT, {}, NOW
    ))).channel for n in range(200)]  # fmt: skip
    plain = [granted_first(only(decide(
        replace(modest, event_id=f"m-{n}"), contact(*reach), [campaign], NO_HOLDOUT, {}, NOW
    ))).channel for n in range(200)]  # fmt: skip

    assert rich.count(Channel.PHONE) > 150
    assert plain.count(Channel.EMAIL) == 200  # phone's expected value is negative there


def test_a_contact_that_does_not_pay_is_not_made() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=10)

    decision = granted_first(
        only(
            decide(
                t, contact(Channel.EMAIL), [without_holdout("welcome-to-a")], NO_HOLDOUT, {}, NOW
            )
        )
    )

    assert decision.outcome is Outcome.SUPPRESSED
    assert decision.reasons[-1].code == "not_worth_contacting"


def test_evidence_moves_the_choice_to_the_channel_that_answers() -> None:
    campaign = without_holdout("welcome-to-a")
    reach = (Channel.EMAIL, Channel.SMS)
    evidence = {
        posterior_key(campaign.id, Channel.EMAIL, Tier.A, None): ResponseCounts(2000, 20),
        posterior_key(campaign.id, Channel.SMS, Tier.A, None): ResponseCounts(2000, 300),
    }
    picks = [
        granted_first(only(decide(
            replace(trigger(TierMove.UP, Tier.B, Tier.A), event_id=f"e-{n}"), contact(*reach),
            [campaign], NO_HOLDOUT, evidence, NOW,
        ))).channel
        for n in range(100)
    ]  # fmt: skip
    assert picks.count(Channel.SMS) == 100


def test_habits_lift_the_channel_the_person_uses() -> None:
    campaign = without_holdout("welcome-to-a")
    t = trigger(TierMove.UP, Tier.B, Tier.A)
    person = contact(Channel.EMAIL, Channel.SMS, habits={Channel.SMS: 1.0})

    decision = granted_first(only(decide(t, person, [campaign], NO_HOLDOUT, {}, NOW)))

    lifts = {
        r.detail.split(":")[0]: r.detail for r in decision.reasons if r.code == "channel_value"
    }
    assert "habit lift 2.00" in lifts["sms"]
    assert "habit lift 1.00" in lifts["email"]


def test_the_tier_policy_keeps_c_customers_off_personal_channels() -> None:
    t = trigger(TierMove.UP, Tier.C, Tier.B)
    campaign = without_holdout("grow-to-b", channels=(Channel.PHONE,))
    policy = replace(NO_HOLDOUT, tier_channels={Tier.B: (Channel.EMAIL, Channel.SMS)})

    decision = granted_first(only(decide(t, contact(Channel.PHONE), [campaign], policy, {}, NOW)))

    assert decision.outcome is Outcome.SUPPRESSED
    assert decision.reasons[-1].code == "no_channel_in_policy"


def test_a_slipping_customer_is_contacted_with_the_channels_of_the_tier_left() -> None:
    t = trigger(TierMove.DOWN, Tier.A, Tier.C, predicted_value=20_000)

    decision = granted_first(
        only(
            decide(t, contact(Channel.PHONE), [without_holdout("slipping-a")], NO_HOLDOUT, {}, NOW)
        )
    )

    assert decision.channel is Channel.PHONE
    assert decision.tier is Tier.C
    assert decision.variant == "slipping-a-to-c-v1"
    assert decision.reasons[1].code == "channel_policy_of_previous_tier"


def test_unreachable_and_opted_out_channels_are_never_used() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=50_000)
    person = contact(Channel.EMAIL, Channel.SMS, consent={Channel.SMS: ConsentStatus.OPTED_OUT})

    decision = granted_first(
        only(decide(t, person, [without_holdout("welcome-to-a")], NO_HOLDOUT, {}, NOW))
    )

    assert decision.channel is Channel.EMAIL
    codes = [r.code for r in decision.reasons]
    assert codes.count("channel_unreachable") == 2  # phone and branch
    assert "channel_opted_out" in codes


def test_prospects_need_an_explicit_opt_in() -> None:
    t = trigger(TierMove.ENTERED, None, Tier.P, Lifecycle.PROSPECT)
    campaign = without_holdout("prospect-acquisition")
    silent = contact(Channel.EMAIL, lifecycle=Lifecycle.PROSPECT)
    opted_in = replace(silent, consent={Channel.EMAIL: ConsentStatus.OPTED_IN})

    assert granted_first(only(decide(t, silent, [campaign], NO_HOLDOUT, {}, NOW))).outcome is (
        Outcome.SUPPRESSED
    )
    assert granted_first(only(decide(t, opted_in, [campaign], NO_HOLDOUT, {}, NOW))).channel is (
        Channel.EMAIL
    )


def test_a_prospect_who_became_a_customer_gets_no_acquisition_message() -> None:
    t = trigger(TierMove.ENTERED, None, Tier.P, Lifecycle.PROSPECT)
    now_customer = contact(Channel.EMAIL, consent={Channel.EMAIL: ConsentStatus.OPTED_IN})

    decision = only(
        decide(t, now_customer, [without_holdout("prospect-acquisition")], NO_HOLDOUT, {}, NOW)
    )

    assert isinstance(decision, Decision)
    assert decision.outcome is Outcome.SUPPRESSED
    assert decision.reasons[-1].code == "lifecycle_no_longer_eligible"


def test_a_spent_budget_rules_out_the_channels_it_cannot_pay() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=50_000)
    campaign = without_holdout("welcome-to-a", budget=Decimal(100))
    person = contact(Channel.PHONE, Channel.EMAIL)

    poor = granted_first(
        only(decide(t, person, [campaign], NO_HOLDOUT, {}, NOW, {campaign.id: 1.0}))
    )
    broke = granted_first(
        only(decide(t, person, [campaign], NO_HOLDOUT, {}, NOW, {campaign.id: 0.0}))
    )

    assert poor.channel is Channel.EMAIL
    assert broke.outcome is Outcome.SUPPRESSED
    assert broke.reasons[-1].code == "budget_exhausted"


def test_a_complaint_starts_a_cool_down() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A)
    person = contact(Channel.EMAIL, complained_at=NOW - timedelta(days=29))

    decision = only(decide(t, person, [without_holdout("welcome-to-a")], NO_HOLDOUT, {}, NOW))
    later = only(
        decide(
            t, person, [without_holdout("welcome-to-a")], NO_HOLDOUT, {}, NOW + timedelta(days=2)
        )
    )

    assert isinstance(decision, Decision)
    assert decision.reasons[-1].code == "cooldown"
    assert isinstance(later, CapRequest)


def test_quiet_hours_defer_an_interrupting_channel_but_not_email() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=50_000)
    campaign = without_holdout("welcome-to-a")
    night = datetime(2025, 3, 1, 22, 30, tzinfo=UTC)
    t = replace(t, occurred_at=night)

    phone = only(decide(t, contact(Channel.PHONE), [campaign], NO_HOLDOUT, {}, night))
    email = only(decide(t, contact(Channel.EMAIL), [campaign], NO_HOLDOUT, {}, night))

    assert isinstance(phone, Deferral)
    assert phone.until == datetime(2025, 3, 2, 8, 0, tzinfo=UTC)
    assert granted_first(email).channel is Channel.EMAIL


def test_quiet_hours_ending_after_expiry_suppress() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=50_000)
    campaign = without_holdout("welcome-to-a", message_ttl_hours=2)
    night = datetime(2025, 3, 1, 22, 30, tzinfo=UTC)

    plan = only(
        decide(
            replace(t, occurred_at=night), contact(Channel.PHONE), [campaign], NO_HOLDOUT, {}, night
        )
    )

    assert isinstance(plan, Decision)
    assert plan.reasons[-1].code == "quiet_hours_past_expiry"


def test_the_ledger_answer_picks_the_next_channel_or_suppresses() -> None:
    t = trigger(TierMove.UP, Tier.B, Tier.A, predicted_value=50_000)
    plan = only(
        decide(
            t,
            contact(Channel.EMAIL, Channel.SMS),
            [without_holdout("welcome-to-a")],
            NO_HOLDOUT,
            {},
            NOW,
        )
    )
    assert isinstance(plan, CapRequest)
    assert len(plan.alternatives) == 2

    second = settle(plan, 1, ("email per day (1)",))
    none = settle(plan, None, ("all per day (1)", "all per day (1)"))

    assert second.channel is plan.alternatives[1].channel
    assert second.reasons[-2].code == "contact_cap_reached"
    assert none.outcome is Outcome.SUPPRESSED
    assert none.reasons[-1].code == "contact_cap_reached"


def test_policy_guards_hold_for_thousands_of_random_people_and_campaigns() -> None:
    """Prospects never get customer messages, customers never acquisition, and no message
    goes to a channel without reach or consent, or into the person's quiet hours."""
    rng = random.Random(7)
    zones = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Madrid", "Australia/Sydney"]
    policy = DecisionPolicy(global_holdout_share=0.0)
    checked = 0
    for n in range(8000):
        lifecycle = rng.choice(list(Lifecycle))
        channels = frozenset(rng.sample(list(Channel), rng.randint(0, 6)))
        consent = {ch: rng.choice(list(ConsentStatus)) for ch in rng.sample(list(Channel), 4)}
        person = Contact(
            f"r-{n}", 3, lifecycle, channels, consent,
            traits={"timezone": rng.choice(zones)},
            predicted_value=rng.choice([0, 50, 500, 5000, 50000]),
            potential=rng.random(),
        )  # fmt: skip
        at = NOW + timedelta(minutes=rng.randint(0, 24 * 60))
        kind = rng.choice([TierMove.UP, TierMove.DOWN, TierMove.ENTERED])
        tier = (
            Tier.P
            if lifecycle is Lifecycle.PROSPECT and rng.random() < 0.7
            else rng.choice(list(Tier))
        )
        # Mostly the lifecycle the trigger saw is still the person's; sometimes it changed since.
        seen = lifecycle if rng.random() < 0.8 else rng.choice(list(Lifecycle))
        t = replace(
            trigger(kind, rng.choice([Tier.A, Tier.B, None]), tier, seen),
            profile_id=person.profile_id, event_id=f"r-{n}", occurred_at=at,
        )  # fmt: skip
        for campaign in CATALOG:
            loose = campaign.model_copy(update={"holdout_share": 0.0})
            for plan in decide(t, person, [loose], policy, {}, at):
                decision = granted_first(plan) if not isinstance(plan, Deferral) else None
                if decision is None or decision.outcome is not Outcome.SENT:
                    continue
                checked += 1
                assert decision.channel is not None
                is_acquisition = decision.purpose is MessagePurpose.ACQUISITION
                assert is_acquisition == (lifecycle is Lifecycle.PROSPECT)
                assert decision.channel in channels
                assert consent.get(decision.channel) is not ConsentStatus.OPTED_OUT
                if lifecycle is Lifecycle.PROSPECT:
                    assert consent.get(decision.channel) is ConsentStatus.OPTED_IN
                assert quiet_until(person, decision.channel, at, ContactPolicy()) is None
    assert checked > 200


@pytest.mark.parametrize(
    ("code", "detail", "value"),
    [("trigger", "tier up to A", "tier_up"), ("budget_left", "", 12), ("x", "y" * 4096, None)],
)
def test_a_reason_is_stored_and_published_as_the_contract_has_it(code, detail, value) -> None:
    from clientela.campaign.domain.model import Reason
    from clientela.shared.contracts import Reason as ContractReason

    reason = Reason(code=code, detail=detail, value=value)
    contract = ContractReason(code=code, detail=detail, value=value)

    assert reason.as_contract() == contract
    assert reason.as_json() == contract.model_dump(mode="json")


@pytest.mark.parametrize(("code", "detail"), [("", ""), ("c" * 257, ""), ("code", "d" * 4097)])
def test_a_reason_keeps_the_contract_limits(code, detail) -> None:
    from pydantic import ValidationError

    from clientela.campaign.domain.model import Reason
    from clientela.shared.contracts import Reason as ContractReason

    with pytest.raises(ValueError, match="out of bounds"):
        Reason(code=code, detail=detail)
    with pytest.raises(ValidationError):
        ContractReason(code=code, detail=detail)
