"""The campaign use case against in-memory fakes: triggers, waiting, learning, attribution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clientela.campaign.domain.decision import decision_id
from clientela.campaign.domain.economics import posterior_key
from clientela.campaign.domain.holdout import global_bucket
from clientela.campaign.domain.model import Outcome
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Lifecycle,
    Tier,
    TierMove,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = 1_700_000_000_000
A_CHANNELS = {Channel.PHONE, Channel.BRANCH, Channel.EMAIL, Channel.SMS}


def campaign(trigger: str, extra: str = "", *, to_tiers: str = '["A", "B", "C"]') -> str:
    return f"""
[[campaigns]]
id = "c1"
name = "Campaign"
trigger = "{trigger}"
to_tiers = {to_tiers}
lifecycles = ["customer", "lapsed"]
purpose = "loyalty"
channels = ["email", "sms", "phone"]
holdout_share = 0
variants = {{ A = "a", B = "b", C = "c" }}
{extra}
"""


async def test_a_trigger_waits_for_its_contact_then_is_decided(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    tier = events.tier(pid, 3, correlation_id="chain-1")

    await run(tier)
    assert state.triggers[tier.event_id][1] == "pending"
    assert state.decisions == {}

    await run(events.profile(pid, 2))  # too old for the move
    assert state.outbox == []

    await run(events.profile(pid, 3))

    assert state.triggers[tier.event_id][1] == "decided"
    (staged,) = state.outbox
    message = staged.event
    expected_id = decision_id("welcome-to-a", tier.event_id)
    assert message.event_id == message.data.message_id == expected_id
    assert message.causation_id == tier.event_id
    assert message.correlation_id == "chain-1"
    assert staged.accepted_at_ms == NOW_MS
    assert staged.key == pid
    assert message.data.channel in A_CHANNELS
    assert message.data.trigger_kind == "tier_up"
    codes = [r.code for r in message.data.reasons]
    assert codes[0] == "trigger"
    assert codes.count("channel_value") == 3  # email, sms and phone are reachable
    assert codes[-1] == "channel_selected"
    assert state.outcome(expected_id) is Outcome.SENT
    key = posterior_key("welcome-to-a", message.data.channel, Tier.A, None)
    assert state.evidence[key].sends == 1


async def test_a_known_contact_decides_at_once_and_redelivery_adds_nothing(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[1]
    profile = events.profile(pid, 5)
    tier = events.tier(pid, 4)  # an older profile version: the newer contact suffices
    await run(profile)

    await run(tier)
    await run(tier)
    await run(profile, tier)

    assert len(state.outbox) == 1
    assert len(state.decisions) == 1
    assert state.outbox[0].event.correlation_id == tier.event_id


async def test_an_older_contact_never_overwrites_a_newer_one(run, state, events) -> None:
    await run(
        events.profile("p-x", 4, reachable=(Channel.EMAIL,)),
        events.profile("p-x", 2, reachable=(Channel.SMS,)),
    )
    await run(events.profile("p-x", 3, reachable=(Channel.PHONE,)))

    assert state.contacts["p-x"].version == 4
    assert state.contacts["p-x"].reachable_channels == {Channel.EMAIL}


async def test_control_records_the_channel_it_would_have_used_and_sends_nothing(
    run, state, events, treatment_profile_ids
) -> None:
    control_pid = next(f"c-{n}" for n in range(1000) if global_bucket(f"c-{n}") < 0.05)
    prospect = treatment_profile_ids[3]
    await run(
        events.profile(control_pid, 1, reachable=(Channel.EMAIL,)),
        events.tier(control_pid, 1),
        # A prospect without an explicit opt-in may not be contacted.
        events.profile(prospect, 1, lifecycle=Lifecycle.PROSPECT, reachable=(Channel.EMAIL,)),
        events.tier(
            prospect, 1, move=TierMove.ENTERED, from_tier=None, to_tier=Tier.P,
            lifecycle=Lifecycle.PROSPECT,
        ),
    )  # fmt: skip

    decisions = {x.decision.profile_id: x.decision for x in state.decisions.values()}
    assert decisions[control_pid].outcome is Outcome.CONTROL
    assert decisions[control_pid].channel is Channel.EMAIL
    assert decisions[prospect].outcome is Outcome.SUPPRESSED
    assert state.outbox == []


async def test_an_opt_out_in_the_awaited_contact_is_respected(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[4]
    optouts = dict.fromkeys(Channel, ConsentStatus.OPTED_OUT)
    await run(events.tier(pid, 2))
    await run(events.profile(pid, 2, consent=optouts, consent_at=NOW - timedelta(days=400)))

    (stored,) = state.decisions.values()
    assert stored.decision.outcome is Outcome.SUPPRESSED
    assert stored.decision.reasons[-1].code == "no_eligible_channel"


async def test_a_slipping_a_customer_keeps_the_personal_channel(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[5]
    await run(
        events.profile(pid, 1, reachable=(Channel.PHONE,)),
        events.tier(pid, 1, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.C),
    )

    (message,) = state.messages()
    assert message.data.campaign_id == "slipping-a"
    assert message.data.channel is Channel.PHONE  # tier C alone allows only email and sms
    assert "channel_policy_of_previous_tier" in [r.code for r in message.data.reasons]


async def test_quiet_hours_defer_the_message_to_the_persons_morning(
    run, state, events, clock, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[6]
    # 12:00 UTC is 21:00 in Tokyo: quiet hours there, and the phone is the only channel.
    profile = events.profile(pid, 1, reachable=(Channel.PHONE,), traits={"timezone": "Asia/Tokyo"})
    tier = events.tier(pid, 1)

    outcome = await run(profile, tier)

    assert outcome.deferred == 1
    assert state.outbox == []
    assert state.triggers[tier.event_id][2] == datetime(2025, 3, 1, 23, 0, tzinfo=UTC)

    clock.now = datetime(2025, 3, 1, 22, 59, tzinfo=UTC)
    await run.sweep()
    assert state.outbox == []

    clock.now = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
    await run.sweep()
    (message,) = state.messages()
    assert message.data.channel is Channel.PHONE
    assert state.triggers[tier.event_id][1] == "decided"


async def test_the_daily_cap_stops_a_second_message_the_same_day(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[7]
    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,)), events.tier(pid, 1))
    await run(
        events.profile(pid, 2, reachable=(Channel.EMAIL,)),
        events.tier(pid, 2, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B),
    )

    assert len(state.messages()) == 1
    capped = [
        x.decision for x in state.decisions.values() if x.decision.campaign_id == "slipping-a"
    ]
    assert capped[0].outcome is Outcome.SUPPRESSED
    assert capped[0].reasons[-1].code == "contact_cap_reached"
    assert "all per day (1)" in capped[0].reasons[-1].detail


async def test_a_click_is_a_response_and_teaches_the_posterior(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[8]
    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,)), events.tier(pid, 1))
    (message,) = state.messages()
    click = events.touch(message.data.message_id, at=NOW + timedelta(hours=2), clicked=True)

    first = await run(click)
    again = await run(click)

    assert (first.responses, again.responses) == (1, 0)
    key = posterior_key("welcome-to-a", Channel.EMAIL, Tier.A, None)
    assert state.evidence[key].sends == 1
    assert state.evidence[key].responses == 1
    assert state.decisions[message.data.message_id].responded_at is not None


async def test_a_late_click_is_outside_the_attribution_window(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[9]
    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,)), events.tier(pid, 1))
    (message,) = state.messages()

    outcome = await run(
        events.touch(message.data.message_id, at=NOW + timedelta(days=30), clicked=True)
    )

    assert outcome.responses == 0


async def test_a_purchase_converts_treated_and_control_alike(
    run, state, events, treatment_profile_ids
) -> None:
    treated = treatment_profile_ids[10]
    control = next(f"c-{n}" for n in range(1000) if global_bucket(f"c-{n}") < 0.05)
    for pid in (treated, control):
        await run(events.profile(pid, 1, reachable=(Channel.EMAIL,), purchases=1, spend="100"))
        await run(events.tier(pid, 1))
    bought = NOW + timedelta(days=3)

    outcome = await run(
        *[
            events.profile(
                pid, 2, reachable=(Channel.EMAIL,), purchases=2, spend="180",
                last_purchase_at=bought,
            )
            for pid in (treated, control)
        ]
    )  # fmt: skip

    assert outcome.conversions == 2
    by_pid = {x.decision.profile_id: x for x in state.decisions.values()}
    assert by_pid[treated].converted_at == bought
    assert by_pid[treated].revenue == 80
    assert by_pid[treated].responded_at is not None  # a sale after a message answers it
    assert by_pid[control].converted_at == bought
    assert by_pid[control].responded_at is None


async def test_an_unsubscribe_starts_a_cool_down(run, state, events, treatment_profile_ids) -> None:
    pid = treatment_profile_ids[11]
    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,)), events.tier(pid, 1))
    (message,) = state.messages()
    await run(events.touch(message.data.message_id, at=NOW + timedelta(hours=1), unsubscribed=True))
    assert state.contacts[pid].complained_at == NOW + timedelta(hours=1)

    run.decider._clock = lambda: NOW + timedelta(days=8)  # past every weekly cap
    await run(
        events.profile(pid, 2, reachable=(Channel.EMAIL,)),
        events.tier(pid, 2, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B),
    )

    slipping = [
        x.decision for x in state.decisions.values() if x.decision.campaign_id == "slipping-a"
    ]
    assert slipping[0].outcome is Outcome.SUPPRESSED
    assert slipping[0].reasons[-1].code == "cooldown"


async def test_a_first_purchase_waits_for_the_scores_of_that_purchase(
    state, events, make_runner, treatment_profile_ids
) -> None:
    run = make_runner(campaign("first_purchase"))
    pid = treatment_profile_ids[12]

    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,), purchases=1, spend="50"))
    assert state.messages() == []

    await run(events.scores(pid, 1, tier=Tier.C, predicted_value=900))

    (message,) = state.messages()
    assert message.data.trigger_kind == "first_purchase"
    assert message.data.tier is Tier.C
    assert message.data.variant == "c"


async def test_at_risk_fires_once_when_the_risk_appears(state, events, make_runner) -> None:
    run = make_runner(campaign("at_risk"))
    await run(events.profile("r-1", 1, reachable=(Channel.EMAIL,)), events.scores("r-1", 1))
    assert state.messages() == []

    await run(
        events.scores("r-1", 2, at_risk=True), events.profile("r-1", 2, reachable=(Channel.EMAIL,))
    )
    await run(events.scores("r-1", 3, at_risk=True))

    (message,) = state.messages()
    assert message.data.trigger_kind == "at_risk"


async def test_inactivity_is_found_by_the_sweep_once_per_silent_spell(
    state, events, make_runner
) -> None:
    run = make_runner(campaign("inactivity", "inactive_days = 30"))
    seen = NOW - timedelta(days=31)
    await run(
        events.profile("q-1", 1, reachable=(Channel.EMAIL,), last_seen_at=seen),
        events.scores("q-1", 1, tier=Tier.B),
        events.profile("q-2", 1, reachable=(Channel.EMAIL,), last_seen_at=NOW - timedelta(days=3)),
    )

    await run.sweep()
    await run.sweep()

    (message,) = state.messages()
    assert message.data.profile_id == "q-1"
    assert message.data.trigger_kind == "inactivity"


async def test_cross_sell_needs_the_category_bought_and_not_the_offer(
    state, events, make_runner
) -> None:
    rule = 'cross_sell = { bought = ["garden"], offer = "tools" }'
    run = make_runner(campaign("cross_sell", rule))
    await run(events.scores("x-1", 1, tier=Tier.B), events.scores("x-2", 1, tier=Tier.B))

    await run(
        events.profile("x-1", 1, reachable=(Channel.EMAIL,), traits={"categories": "garden"}),
        events.profile("x-2", 1, reachable=(Channel.EMAIL,), traits={"categories": "garden,tools"}),
    )

    (message,) = state.messages()
    assert message.data.profile_id == "x-1"


async def test_offers_follow_what_the_person_values(state, events, make_runner) -> None:
    offers = 'offer_variants = { price = "discount-10", service = "priority-support" }'
    run = make_runner(campaign("tier_up", offers))
    await run(
        events.profile("o-1", 1, reachable=(Channel.EMAIL,), traits={"value_driver": "price"}),
        events.tier("o-1", 1),
    )

    (message,) = state.messages()
    assert message.data.offer == "discount-10"
