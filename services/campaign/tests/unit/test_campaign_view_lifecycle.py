"""The contact view kept cheaply, erasure, merges and expiring triggers, against fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clientela.campaign.adapters.inbound.wire import inputs_from_events
from clientela.campaign.application.queries import roi_of
from clientela.campaign.domain.model import ERASED_PROFILE, Outcome, merge_targets
from clientela.shared.contracts import Channel, ConsentStatus, Tier, TierMove

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def test_a_touchpoint_that_refers_to_no_message_is_not_even_claimed(
    run, state, events
) -> None:
    plain = events.touch("m-1")
    body = plain.data.model_copy(
        update={"email": plain.data.email.model_copy(update={"campaign_message_id": None})}
    )
    unrelated = plain.model_copy(update={"data": body})

    inputs = inputs_from_events([unrelated])
    await run(unrelated)

    assert inputs.reactions == []
    assert state.inbox == set()


async def test_a_profile_change_with_the_same_facts_only_advances_the_version(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,)))
    first = state.fingerprints[pid]

    await run(events.profile(pid, 2, reachable=(Channel.EMAIL,)))

    assert state.contacts[pid].version == 2
    assert state.fingerprints[pid] == first
    assert state.inbox == set()  # version-guarded: no inbox entry needed


async def test_a_tier_move_waiting_for_an_unchanged_profile_version_is_decided(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,)))
    tier = events.tier(pid, 2)
    await run(tier)
    assert state.triggers[tier.event_id][1] == "pending"

    await run(events.profile(pid, 2, reachable=(Channel.EMAIL,)))  # same facts, newer version

    assert state.triggers[tier.event_id][1] == "decided"
    assert len(state.messages()) == 1


async def test_a_consent_change_is_written(run, state, events, treatment_profile_ids) -> None:
    pid = treatment_profile_ids[0]
    await run(events.profile(pid, 1, reachable=(Channel.EMAIL,)))

    await run(
        events.profile(
            pid, 2, reachable=(Channel.EMAIL,), consent={Channel.EMAIL: ConsentStatus.OPTED_OUT}
        )
    )

    assert state.contacts[pid].consent == {Channel.EMAIL: ConsentStatus.OPTED_OUT}
    await run(events.tier(pid, 2))
    assert state.messages() == []


async def test_habits_are_kept_in_tenths(run, state, events, treatment_profile_ids) -> None:
    pid = treatment_profile_ids[0]

    await run(events.profile(pid, 1, habits={"email": 2, "phone": 1}))

    assert state.contacts[pid].habits == {Channel.EMAIL: 0.7, Channel.PHONE: 0.3}


async def test_an_erased_person_is_forgotten_and_their_decisions_anonymised(
    run, state, events, treatment_profile_ids
) -> None:
    pid, other = treatment_profile_ids[:2]
    await run(
        events.profile(pid, 1, reachable=(Channel.EMAIL,), traits={"first_name": "Quillon"}),
        events.profile(other, 1, reachable=(Channel.EMAIL,)),
    )
    await run(events.tier(pid, 1), events.tier(other, 1))
    waiting = events.tier(pid, 5, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B)
    await run(waiting)
    roi_before = roi_of("welcome-to-a", _cells(state))

    await run(events.erased(pid))

    assert pid not in state.contacts
    assert all(t.profile_id != pid for t, _, _ in state.triggers.values())
    mine = [x for x in state.decisions.values() if x.decision.profile_id == ERASED_PROFILE]
    assert len(mine) == 1
    assert mine[0].decision.reasons == ()
    assert all(x.decision.profile_id != pid for x in state.decisions.values())
    assert other in state.contacts
    assert roi_of("welcome-to-a", _cells(state)) == roi_before


async def test_late_events_of_an_erased_person_do_not_bring_them_back(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    await run(events.profile(pid, 1))
    await run(events.erased(pid))
    state.outbox.clear()

    await run(events.profile(pid, 2), events.scores(pid, 2), events.tier(pid, 2))

    assert pid not in state.contacts
    assert state.triggers == {}
    assert state.outbox == []
    assert pid not in str(state.erased)  # only keyed hashes are kept


async def test_a_message_staged_with_the_erasure_does_not_leave(
    run, state, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]

    await run(
        events.profile(pid, 1, reachable=(Channel.EMAIL,)), events.tier(pid, 1), events.erased(pid)
    )

    assert state.messages() == []


async def test_a_merge_moves_history_caps_and_waiting_triggers_to_the_survivor(
    run, state, events, treatment_profile_ids, decider
) -> None:
    survivor, absorbed = treatment_profile_ids[:2]
    await run(events.profile(absorbed, 1, reachable=(Channel.EMAIL,)))
    await run(events.tier(absorbed, 1))
    (sent,) = state.messages()
    waiting = events.tier(absorbed, 9, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B)
    await run(waiting)
    assert state.triggers[waiting.event_id][1] == "pending"

    await run(events.merged(survivor, absorbed))
    assert absorbed not in state.contacts
    assert state.decisions[sent.event_id].decision.profile_id == survivor
    await run(events.profile(survivor, 1, reachable=(Channel.EMAIL,)))

    # The waiting move was decided for the survivor, and the day's cap held across the merge.
    assert state.triggers[waiting.event_id][1] == "decided"
    moved = [x.decision for x in state.decisions.values() if x.decision.campaign_id == "slipping-a"]
    assert [d.profile_id for d in moved] == [survivor]
    assert moved[0].outcome is Outcome.SUPPRESSED
    assert len(state.messages()) == 1


async def test_a_merge_carries_a_complaint_to_the_survivor(
    run, state, events, treatment_profile_ids
) -> None:
    survivor, absorbed = treatment_profile_ids[:2]
    await run(events.profile(survivor, 1), events.profile(absorbed, 1, reachable=(Channel.EMAIL,)))
    await run(events.tier(absorbed, 1))
    (message,) = state.messages()
    await run(events.touch(message.event_id, unsubscribed=True))

    await run(events.merged(survivor, absorbed))

    assert state.contacts[survivor].complained_at == NOW


@pytest.mark.parametrize(
    ("merges", "holders"),
    [
        ([("B", "A"), ("C", "B")], {"B": "A", "C": "B"}),  # B's data left before C's arrived
        ([("C", "B"), ("B", "A")], {"C": "A", "B": "A"}),  # C's data travels on with B's
        ([("B", "A"), ("A", "B")], {"B": "B", "A": "B"}),  # back and forth: all ends at B
        ([("B", "A"), ("B", "C")], {"B": "A"}),  # B holds nothing by the second merge
    ],
)
def test_merge_targets_are_where_one_merge_at_a_time_leaves_the_data(
    merges: list[tuple[str, str]], holders: dict[str, str]
) -> None:
    assert merge_targets(merges) == holders


async def test_a_trigger_whose_data_never_arrives_expires_and_is_counted(
    run, state, events, clock
) -> None:
    stale = events.tier("never-known", 1).model_copy(update={"occurred_at": NOW})
    await run(stale)
    assert state.triggers[stale.event_id][1] == "pending"

    clock.now = NOW + timedelta(hours=47)
    assert (await run.sweep()).expired == 0
    clock.now = NOW + timedelta(hours=49)
    outcome = await run.sweep()

    assert outcome.expired == 1
    assert state.triggers[stale.event_id][1] == "expired"
    await run(events.profile("never-known", 1))
    assert state.decisions == {}


def _cells(state):  # type: ignore[no-untyped-def]
    from clientela.campaign.application.ports import ResultCell

    cells: dict[tuple, ResultCell] = {}
    for x in state.decisions.values():
        d = x.decision
        key = (d.campaign_id, d.outcome, d.channel, d.tier)
        old = cells.get(key)
        cells[key] = ResultCell(
            d.campaign_id,
            d.outcome,
            d.channel,
            d.tier,
            (old.count if old else 0) + 1,
            (old.converted if old else 0) + (x.converted_at is not None),
            (old.responded if old else 0) + (x.responded_at is not None),
            (old.revenue if old else 0.0) + float(x.revenue),
            (old.cost if old else 0.0) + (d.cost if d.outcome is Outcome.SENT else 0.0),
        )
    return list(cells.values())
