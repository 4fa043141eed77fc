"""The decide-campaigns use case against an in-memory unit of work."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

import pytest

from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.application.decide_campaigns import CampaignDecider, CampaignInputs
from clientela.campaign.application.ports import OutgoingMessage, ReceivedTrigger
from clientela.campaign.domain.decision import DecisionPolicy, decision_id
from clientela.campaign.domain.model import Contact, Decision, Outcome
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Lifecycle,
    ProfileChangedEvent,
    Tier,
    TierChangedEvent,
    TierMove,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeState:
    """What a database would hold."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    triggers: dict[str, tuple[ReceivedTrigger, str]] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    inbox: set[str] = field(default_factory=set)
    outbox: list[OutgoingMessage] = field(default_factory=list)


class FakeContacts:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def save_newer(self, contacts: Sequence[Contact], now: datetime) -> None:
        for c in contacts:
            current = self._s.contacts.get(c.profile_id)
            if current is None or current.version < c.version:
                self._s.contacts[c.profile_id] = c

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Contact]:
        return {p: self._s.contacts[p] for p in profile_ids if p in self._s.contacts}


class FakeTriggers:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add(self, triggers: Sequence[ReceivedTrigger], now: datetime) -> None:
        for t in triggers:
            self._s.triggers.setdefault(t.event_id, (t, "pending"))

    async def pending_for(self, profile_ids: Collection[str]) -> list[ReceivedTrigger]:
        return [
            t
            for t, status in self._s.triggers.values()
            if status == "pending" and t.profile_id in profile_ids
        ]

    async def mark_decided(self, trigger_event_ids: Collection[str], now: datetime) -> None:
        for tid in trigger_event_ids:
            self._s.triggers[tid] = (self._s.triggers[tid][0], "decided")


class FakeDecisions:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add(self, decisions: Sequence[Decision]) -> set[str]:
        recorded = set()
        for d in decisions:
            taken = {(x.campaign_id, x.trigger_event_id) for x in self._s.decisions.values()}
            if d.decision_id in self._s.decisions or (d.campaign_id, d.trigger_event_id) in taken:
                continue
            self._s.decisions[d.decision_id] = d
            recorded.add(d.decision_id)
        return recorded


class FakeUnitOfWork:
    """Works on a copy of the state; commit publishes the copy, like a transaction."""

    def __init__(self, state: FakeState) -> None:
        self.committed = state
        self._work = FakeState()

    @property
    def contacts(self) -> FakeContacts:
        return FakeContacts(self._work)

    @property
    def triggers(self) -> FakeTriggers:
        return FakeTriggers(self._work)

    @property
    def decisions(self) -> FakeDecisions:
        return FakeDecisions(self._work)

    async def __aenter__(self) -> FakeUnitOfWork:
        self._work = copy.deepcopy(self.committed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        fresh = set(event_ids) - self._work.inbox
        self._work.inbox |= fresh
        return fresh

    async def stage(self, messages: Sequence[OutgoingMessage]) -> None:
        self._work.outbox.extend(messages)

    async def commit(self) -> None:
        self.committed.__dict__.update(self._work.__dict__)


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def decider() -> CampaignDecider:
    return CampaignDecider(load_catalog(), DecisionPolicy(global_holdout_share=0.05), lambda: NOW)


async def run(
    decider: CampaignDecider, state: FakeState, *items: ProfileChangedEvent | TierChangedEvent
) -> None:
    """Handle one batch of events, as the Kafka translator would hand it over."""
    inputs = CampaignInputs(
        [i for i in items if isinstance(i, ProfileChangedEvent)],
        [ReceivedTrigger(i, 1_700_000_000_000) for i in items if isinstance(i, TierChangedEvent)],
    )
    await decider.handle_batch(inputs, FakeUnitOfWork(state))


async def test_a_trigger_waits_for_its_contact_then_is_decided(
    decider, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    tier = events.tier(pid, 3, correlation_id="chain-1")

    await run(decider, state, tier)

    assert state.triggers[tier.event_id][1] == "pending"
    assert state.decisions == {}
    assert state.outbox == []

    await run(decider, state, events.profile(pid, 2))  # too old for the move

    assert state.triggers[tier.event_id][1] == "pending"
    assert state.outbox == []

    await run(decider, state, events.profile(pid, 3))

    assert state.triggers[tier.event_id][1] == "decided"
    (message,) = state.outbox
    expected_id = decision_id("welcome-to-a", tier.event_id)
    assert message.event.event_id == message.event.data.message_id == expected_id
    assert message.event.causation_id == tier.event_id
    assert message.event.correlation_id == "chain-1"
    assert message.accepted_at_ms == 1_700_000_000_000
    assert message.event.data.channel is Channel.PHONE
    assert message.event.data.trigger_event_id == tier.event_id
    assert state.decisions[expected_id].outcome is Outcome.SENT


async def test_a_known_contact_decides_at_once_and_redelivery_adds_nothing(
    decider, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[1]
    profile = events.profile(pid, 5)
    tier = events.tier(pid, 4)  # an older profile version: the newer contact suffices
    await run(decider, state, profile)

    await run(decider, state, tier)
    await run(decider, state, tier)
    await run(decider, state, profile, tier)

    assert len(state.outbox) == 1
    assert len(state.decisions) == 1
    assert state.outbox[0].event.correlation_id == tier.event_id


async def test_trigger_and_contact_in_one_batch_decide_together(
    decider, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[2]

    await run(decider, state, events.tier(pid, 1), events.profile(pid, 1))

    assert len(state.outbox) == 1


async def test_an_older_contact_never_overwrites_a_newer_one(decider, state, events) -> None:
    await run(
        decider,
        state,
        events.profile("p-x", 4, reachable=(Channel.EMAIL,)),
        events.profile("p-x", 2, reachable=(Channel.SMS,)),
    )
    await run(decider, state, events.profile("p-x", 3, reachable=(Channel.PHONE,)))

    assert state.contacts["p-x"].version == 4
    assert state.contacts["p-x"].reachable_channels == {Channel.EMAIL}


async def test_control_and_suppressed_decisions_are_recorded_but_not_sent(
    decider, state, events, treatment_profile_ids
) -> None:
    from clientela.campaign.domain.holdout import global_bucket

    control_pid = next(f"c-{n}" for n in range(1000) if global_bucket(f"c-{n}") < 0.05)
    prospect = treatment_profile_ids[3]
    await run(
        decider,
        state,
        events.profile(control_pid, 1),
        events.tier(control_pid, 1),
        events.profile(prospect, 1, lifecycle=Lifecycle.PROSPECT, reachable=(Channel.EMAIL,)),
        events.tier(
            prospect,
            1,
            move=TierMove.ENTERED,
            from_tier=None,
            to_tier=Tier.P,
            lifecycle=Lifecycle.PROSPECT,
        ),
    )

    outcomes = {d.profile_id: d.outcome for d in state.decisions.values()}
    assert outcomes == {control_pid: Outcome.CONTROL, prospect: Outcome.SUPPRESSED}
    assert state.outbox == []


async def test_a_tier_move_no_campaign_wants_is_decided_without_decisions(
    decider, state, events
) -> None:
    tier = events.tier("p-y", 1, move=TierMove.DOWN, from_tier=Tier.B, to_tier=Tier.C)

    await run(decider, state, events.profile("p-y", 1), tier)

    assert state.triggers[tier.event_id][1] == "decided"
    assert state.decisions == {}


async def test_an_opt_out_in_the_awaited_contact_is_respected(
    decider, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[4]
    optouts = dict.fromkeys(Channel, ConsentStatus.OPTED_OUT)
    await run(decider, state, events.tier(pid, 2))
    await run(decider, state, events.profile(pid, 2, consent=optouts))

    (decision,) = state.decisions.values()
    assert decision.outcome is Outcome.SUPPRESSED
    assert decision.reasons[-1].code == "no_eligible_channel"
