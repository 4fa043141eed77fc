"""Simulation: a synthetic population whose true response rates differ by channel and segment.

The learned policy (Thompson sampling over Beta posteriors, expected value per channel) runs
round after round on the same people; a uniform-random channel policy runs on the same people
with the same luck. The learned policy must pick the best channel for most people by the last
round and return clearly more per unit of money spent.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from clientela.campaign.adapters.outbound.campaign_file import parse_catalog
from clientela.campaign.domain.decision import CapRequest, DecisionPolicy, decide, settle
from clientela.campaign.domain.economics import (
    ChannelEconomics,
    PosteriorKey,
    ResponseCounts,
    posterior_key,
)
from clientela.campaign.domain.model import Contact, Outcome, Trigger, TriggerKind
from clientela.shared.contracts import Channel, Lifecycle, Segment, Tier

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PHONE)
CAMPAIGN = next(
    iter(
        parse_catalog(
            """
[[campaigns]]
id = "sim"
name = "Simulation"
trigger = "at_risk"
to_tiers = ["A", "B", "C"]
lifecycles = ["customer"]
purpose = "retention"
channels = ["email", "sms", "phone"]
holdout_share = 0
variants = { A = "a", B = "b", C = "c" }
"""
        )
    )
)
# True response rates: price-driven buyers read email, relational ones answer the phone,
# solution buyers text back. A call pays only where it is answered often and much is at stake.
TRUE_RATES: dict[Segment, dict[Channel, float]] = {
    Segment.TRANSACTIONAL: {Channel.EMAIL: 0.05, Channel.SMS: 0.02, Channel.PHONE: 0.03},
    Segment.RELATIONAL: {Channel.EMAIL: 0.01, Channel.SMS: 0.06, Channel.PHONE: 0.10},
    Segment.SOLUTIONS: {Channel.EMAIL: 0.03, Channel.SMS: 0.05, Channel.PHONE: 0.04},
}
VALUE_BY_TIER = {Tier.A: 2000.0, Tier.B: 600.0, Tier.C: 150.0}
POLICY = DecisionPolicy(global_holdout_share=0.0)
ECONOMICS = ChannelEconomics()


@dataclass
class Tally:
    cost: float = 0.0
    revenue: float = 0.0
    sends: int = 0
    responses: int = 0

    @property
    def roi(self) -> float:
        return (self.revenue - self.cost) / self.cost


def population(size: int, rng: random.Random) -> list[Contact]:
    people = []
    for n in range(size):
        tier = rng.choices([Tier.A, Tier.B, Tier.C], weights=[0.2, 0.3, 0.5])[0]
        segment = rng.choice(list(TRUE_RATES))
        people.append(
            Contact(
                f"sim-{n}",
                1,
                Lifecycle.CUSTOMER,
                frozenset(CHANNELS),
                tier=tier,
                segment=segment,
                predicted_value=VALUE_BY_TIER[tier],
                scored_version=1,
            )
        )
    return people


def allowed(person: Contact) -> list[Channel]:
    assert person.tier is not None
    return [c for c in POLICY.tier_channels[person.tier] if c in CAMPAIGN.channels]


def response_worth(person: Contact) -> float:
    return ECONOMICS.response_value_share[CAMPAIGN.purpose] * (person.predicted_value or 0)


def best_channel(person: Contact) -> Channel:
    assert person.segment is not None
    worth = response_worth(person)
    rates = TRUE_RATES[person.segment]
    return max(allowed(person), key=lambda c: rates[c] * worth - ECONOMICS.cost(c))


def trigger(person: Contact, round_no: int) -> Trigger:
    return Trigger(
        event_id=f"{person.profile_id}-r{round_no}", kind=TriggerKind.AT_RISK,
        profile_id=person.profile_id, profile_version=1, occurred_at=NOW,
        lifecycle=Lifecycle.CUSTOMER, to_tier=person.tier,
    )  # fmt: skip


def run_simulation(size: int = 2400, rounds: int = 8) -> dict[str, float]:
    rng = random.Random(42)
    people = population(size, rng)
    evidence: dict[PosteriorKey, ResponseCounts] = {}
    learned, uniform = Tally(), Tally()
    best_share_last = 0.0
    for round_no in range(rounds):
        if round_no == rounds - 1:
            learned_before, uniform_before = replace(learned), replace(uniform)
        luck = random.Random(1000 + round_no)
        picks_best = picks = 0
        sends: Counter[PosteriorKey] = Counter()
        answers: Counter[PosteriorKey] = Counter()
        for person in people:
            assert person.segment is not None
            rates = TRUE_RATES[person.segment]
            draw = luck.random()  # the same luck for both policies
            # Uniform random among the channels the policy allows.
            random_channel = luck.choice(allowed(person))
            uniform.sends += 1
            uniform.cost += ECONOMICS.cost(random_channel)
            if draw < rates[random_channel]:
                uniform.responses += 1
                uniform.revenue += response_worth(person)
            (plan,) = decide(trigger(person, round_no), person, [CAMPAIGN], POLICY, evidence, NOW)
            if not isinstance(plan, CapRequest):
                continue  # not worth contacting: no cost, no revenue
            decision = settle(plan, 0, ())
            assert decision.outcome is Outcome.SENT
            assert decision.channel is not None
            channel = decision.channel
            picks += 1
            picks_best += channel is best_channel(person)
            key = posterior_key(CAMPAIGN.id, channel, decision.tier, person.segment)
            sends[key] += 1
            learned.sends += 1
            learned.cost += ECONOMICS.cost(channel)
            if draw < rates[channel]:
                answers[key] += 1
                learned.responses += 1
                learned.revenue += response_worth(person)
        # Evidence arrives after the round, as responses do after messages.
        for key in set(sends) | set(answers):
            old = evidence.get(key, ResponseCounts())
            evidence[key] = ResponseCounts(old.sends + sends[key], old.responses + answers[key])
        best_share_last = picks_best / picks
    last_learned = Tally(
        learned.cost - learned_before.cost, learned.revenue - learned_before.revenue
    )
    last_uniform = Tally(
        uniform.cost - uniform_before.cost, uniform.revenue - uniform_before.revenue
    )
    return {
        "best_channel_share_last_round": best_share_last,
        "learned_roi_last_round": last_learned.roi,
        "uniform_roi_last_round": last_uniform.roi,
        "learned_roi": learned.roi,
        "uniform_roi": uniform.roi,
        "learned_cost": learned.cost,
        "uniform_cost": uniform.cost,
        "learned_revenue": learned.revenue,
        "uniform_revenue": uniform.revenue,
    }


def test_the_learned_policy_finds_the_best_channel_and_beats_uniform_random_on_roi() -> None:
    figures = run_simulation()
    print(
        "\nsimulation: best channel for {:.1%} of people in the last round; ROI in the last "
        "round learned {:.2f} vs uniform random {:.2f}; over all rounds learned {:.2f} vs "
        "uniform random {:.2f} (revenue {:.0f} vs {:.0f}, cost {:.0f} vs {:.0f})".format(
            figures["best_channel_share_last_round"],
            figures["learned_roi_last_round"],
            figures["uniform_roi_last_round"],
            figures["learned_roi"],
            figures["uniform_roi"],
            figures["learned_revenue"],
            figures["uniform_revenue"],
            figures["learned_cost"],
            figures["uniform_cost"],
        )
    )
    assert figures["best_channel_share_last_round"] > 0.8
    assert figures["learned_roi_last_round"] > 1.5 * figures["uniform_roi_last_round"]
    assert figures["learned_roi"] > 1.2 * figures["uniform_roi"]
    assert figures["learned_revenue"] - figures["learned_cost"] > (
        figures["uniform_revenue"] - figures["uniform_cost"]
    )


def test_the_simulation_is_repeatable() -> None:
    assert run_simulation(size=300, rounds=2) == run_simulation(size=300, rounds=2)
