"""The use case, repositories and read model against real PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from clientela.campaign.adapters.inbound.wire import inputs_from_events
from clientela.campaign.application.ports import ProfileAdvance, ViewChanges
from clientela.campaign.application.queries import campaign_roi
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.decision import decision_id
from clientela.campaign.domain.economics import posterior_key
from clientela.campaign.domain.holdout import global_bucket
from clientela.campaign.domain.model import Outcome
from clientela.campaign.wiring import Container, build
from clientela.shared.codec import HEADER_ACCEPTED_AT
from clientela.shared.contracts import (
    CampaignMessageEvent,
    Channel,
    Envelope,
    Lifecycle,
    Tier,
    TierMove,
)
from clientela.shared.kafka import Row
from clientela.shared.outbox import staged_records
from clientela.shared.settings import DatabaseSettings, KafkaSettings
from clientela.shared.testing import SettableClock

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture
async def container(
    database_settings: DatabaseSettings, clock: SettableClock
) -> AsyncIterator[Container]:
    settings = CampaignSettings(
        database=database_settings, kafka=KafkaSettings(topic_prefix="test.")
    )
    async with build(settings, clock=clock, consume=False) as built:
        yield built


async def handle(container: Container, *items: Envelope, accepted_at_ms: int | None = 17) -> None:
    inputs = inputs_from_events(items, accepted_at_ms)
    await container.decider.handle_batch(inputs, container.unit_of_work())


async def count(container: Container, table_name: str, **where: str) -> int:
    table = getattr(container.tables, table_name)
    stmt = select(func.count()).select_from(table)
    for column, value in where.items():
        stmt = stmt.where(table.c[column] == value)
    async with container.engine.connect() as conn:
        return int(await conn.scalar(stmt) or 0)


async def staged(container: Container) -> list[Row]:
    async with container.engine.connect() as conn:
        return await staged_records(conn, container.tables.outbox)


async def test_trigger_waits_for_contact_then_one_message_is_staged(
    container, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    tier = events.tier(pid, 2)

    await handle(container, tier)
    await handle(container, events.profile(pid, 1))

    assert await count(container, "triggers", status="pending") == 1
    assert await count(container, "outbox") == 0

    await handle(container, events.profile(pid, 2, reachable=(Channel.EMAIL,)))
    await handle(container, tier, events.profile(pid, 2))  # redelivery

    assert await count(container, "triggers", status="decided") == 1
    assert await count(container, "decisions") == 1
    ((topic, key, value, headers),) = await staged(container)
    message = CampaignMessageEvent.model_validate_json(value or b"")
    assert topic == "test.campaign-messages.v1"
    assert key == pid.encode()
    assert (HEADER_ACCEPTED_AT, b"17") in headers
    assert message.event_id == decision_id("welcome-to-a", tier.event_id)
    assert message.causation_id == tier.event_id
    assert message.data.channel is Channel.EMAIL
    assert message.data.trigger_kind == "tier_up"


async def test_profile_facts_and_scores_are_kept_apart_and_never_go_back(container, events) -> None:
    await handle(container, events.scores("p-v", 4, tier=Tier.B, predicted_value=321.0))
    await handle(container, events.profile("p-v", 5, reachable=(Channel.EMAIL,), purchases=2))
    await handle(container, events.profile("p-v", 3, reachable=(Channel.SMS,)))
    await handle(container, events.scores("p-v", 2, tier=Tier.C))

    async with container.unit_of_work() as uow:
        contact = (await uow.contacts.get_many(["p-v"]))["p-v"]

    assert contact.version == 5
    assert contact.reachable_channels == {Channel.EMAIL}
    assert contact.purchase_count == 2
    assert (contact.scored_version, contact.tier, contact.predicted_value) == (4, Tier.B, 321.0)


async def test_each_part_of_a_batch_of_view_changes_keeps_its_own_guard(container, events) -> None:
    for pid, version, scored in (("p-1", 1, 1), ("p-2", 3, 2), ("p-5", 5, 3)):
        await handle(
            container,
            events.profile(pid, version, reachable=(Channel.EMAIL,), last_seen_at=NOW),
            events.scores(pid, scored, tier=Tier.B, predicted_value=100.0),
        )

    def facts(event: Envelope):
        inputs = inputs_from_events([event])
        return inputs.profiles[0].facts() if inputs.profiles else inputs.scores[0].facts

    later = NOW + timedelta(days=2)
    changes = ViewChanges(
        # p-1: new profile facts, scores only advanced.
        profiles=[
            facts(events.profile("p-1", 2, reachable=(Channel.SMS,), last_seen_at=later)),
            # p-5: an older profile version changes nothing.
            facts(events.profile("p-5", 4, reachable=(Channel.SMS,))),
        ],
        profile_fingerprints={"p-1": "fp-p1", "p-5": "fp-p5"},
        # p-2: scores of the stored profile version replace the stored ones; p-4 is new;
        # p-5: scores of an older profile version change nothing.
        scores=[
            facts(events.scores("p-2", 2, tier=Tier.A, predicted_value=900.0)),
            facts(events.scores("p-4", 1, tier=Tier.C, lifecycle=Lifecycle.PROSPECT)),
            facts(events.scores("p-5", 1, tier=Tier.C)),
        ],
        score_fingerprints={"p-2": "fs-p2", "p-4": "fs-p4", "p-5": "fs-p5"},
        # p-2: a newer profile version with unchanged facts; p-3 is unknown: no row for it.
        advanced={
            "p-2": ProfileAdvance(4, later, {Channel.EMAIL: 1.0}),
            "p-3": ProfileAdvance(9, later, {}),
        },
        scored_versions={"p-1": 3},
    )
    async with container.unit_of_work() as uow:
        await uow.contacts.save(changes, NOW)
        await uow.commit()

    async with container.unit_of_work() as uow:
        found = await uow.contacts.get_many(["p-1", "p-2", "p-3", "p-4", "p-5"])
        stamps = await uow.contacts.stamps(["p-1", "p-2", "p-4", "p-5"])
    assert set(found) == {"p-1", "p-2", "p-4", "p-5"}
    p1, p2, p4, p5 = found["p-1"], found["p-2"], found["p-4"], found["p-5"]
    assert (p1.version, p1.reachable_channels, p1.last_seen_at) == (2, {Channel.SMS}, later)
    assert (p1.scored_version, p1.tier, p1.predicted_value) == (3, Tier.B, 100.0)
    assert (p2.version, p2.reachable_channels, p2.last_seen_at) == (4, {Channel.EMAIL}, later)
    assert p2.habits == {Channel.EMAIL: 1.0}
    assert (p2.scored_version, p2.tier, p2.predicted_value) == (2, Tier.A, 900.0)
    assert (p4.version, p4.lifecycle, p4.scored_version, p4.tier) == (
        0, Lifecycle.PROSPECT, 1, Tier.C
    )  # fmt: skip
    assert (p5.version, p5.reachable_channels, p5.scored_version, p5.tier) == (
        5, {Channel.EMAIL}, 3, Tier.B
    )  # fmt: skip
    assert (stamps["p-1"].profile_fingerprint, stamps["p-2"].scores_fingerprint) == (
        "fp-p1", "fs-p2"
    )  # fmt: skip
    assert stamps["p-4"].scores_fingerprint == "fs-p4"
    assert stamps["p-5"].profile_fingerprint != "fp-p5"
    assert stamps["p-5"].scores_fingerprint != "fs-p5"


async def test_answers_and_open_decisions_read_at_once_equal_the_two_reads(
    container, events, treatment_profile_ids
) -> None:
    first, second, third = treatment_profile_ids[3:6]
    for pid in (first, second, third):
        await handle(container, events.profile(pid, 1, reachable=(Channel.EMAIL,)))
        await handle(container, events.tier(pid, 1))
    async with container.unit_of_work() as uow:
        ids = {
            pid: (await uow.decisions.open_for_conversion([pid], NOW - timedelta(days=1)))[0]
            for pid in (first, second, third)
        }
        since = NOW - timedelta(days=1)
        for answered, buyers in (
            ({ids[first].decision_id}, {second}),
            ({ids[first].decision_id, ids[second].decision_id}, {second, third}),
            ({"not-a-message"}, {first}),
        ):
            together = await uow.decisions.answered_and_open(answered, buyers, since)
            apart = (
                await uow.decisions.refs(answered),
                await uow.decisions.open_for_conversion(buyers, since),
            )
            assert together == apart
            assert together[0] or together[1]
        # Decisions taken before `since` are not open.
        assert await uow.decisions.answered_and_open(
            {ids[first].decision_id}, {second}, NOW + timedelta(hours=1)
        ) == ({ids[first].decision_id: ids[first]}, [])


async def test_the_database_refuses_a_second_decision_for_one_trigger(
    container, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[1]
    await handle(container, events.profile(pid, 1), events.tier(pid, 1))
    table = container.tables.decisions
    async with container.engine.connect() as conn:
        row = (await conn.execute(select(table))).one()._asdict()

    with pytest.raises(IntegrityError):
        async with container.engine.begin() as conn:
            await conn.execute(table.insert(), {**row, "decision_id": "another-id"})


async def test_responses_conversions_and_roi_are_stored_and_read(
    container, clock, events, treatment_profile_ids
) -> None:
    treated = treatment_profile_ids[2]
    control = next(f"c-{n}" for n in range(1000) if global_bucket(f"c-{n}") < 0.05)
    for pid in (treated, control):
        await handle(
            container,
            events.profile(pid, 1, reachable=(Channel.EMAIL,), purchases=1, spend="100"),
            events.tier(pid, 1),
        )
    ((_topic, _key, value, _headers),) = await staged(container)
    message_id = CampaignMessageEvent.model_validate_json(value or b"").data.message_id

    await handle(container, events.touch(message_id, at=NOW + timedelta(hours=3), clicked=True))
    bought = NOW + timedelta(days=2)
    await handle(
        container,
        *[
            events.profile(
                pid, 2, reachable=(Channel.EMAIL,), purchases=2, spend="150",
                last_purchase_at=bought,
            )
            for pid in (treated, control)
        ],
    )  # fmt: skip

    async with container.unit_of_work() as uow:
        evidence = await uow.evidence.counts(["welcome-to-a"])
    key = posterior_key("welcome-to-a", Channel.EMAIL, Tier.A, None)
    assert (evidence[key].sends, evidence[key].responses) == (1, 1)

    roi = await campaign_roi("welcome-to-a", container.catalog, container.read_model)
    assert (roi.total.treated.size, roi.total.treated.converted) == (1, 1)
    assert (roi.total.control.size, roi.total.control.converted) == (1, 1)
    assert roi.total.treated.revenue == 50
    assert roi.total.cost == pytest.approx(0.05)
    assert [r.channel for r in roi.by_channel] == [Channel.EMAIL]

    history = await container.read_model.decisions_for_profile(treated, limit=10)
    assert history[0].responded_at is not None
    assert history[0].converted_at == bought


async def test_deferred_triggers_come_due_and_inactive_people_are_found(
    container, clock, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[3]
    await handle(
        container,
        events.profile(pid, 1, reachable=(Channel.PHONE,), traits={"timezone": "Asia/Tokyo"}),
        events.tier(pid, 1),
    )
    assert await count(container, "outbox") == 0
    async with container.unit_of_work() as uow:
        assert await uow.triggers.due(NOW + timedelta(hours=10, minutes=59), 10) == []
        assert len(await uow.triggers.due(NOW + timedelta(hours=11), 10)) == 1

    clock.now = NOW + timedelta(hours=11)
    await container.decider.sweep(container.unit_of_work())

    assert await count(container, "outbox") == 1
    assert await count(container, "triggers", status="decided") == 1

    await handle(container, events.profile("gone", 1, last_seen_at=NOW - timedelta(days=90)))
    async with container.unit_of_work() as uow:
        (quiet,) = await uow.contacts.inactive(NOW - timedelta(days=60), 60, 10)
        assert quiet.profile_id == "gone"


async def test_stats_and_profile_history_read_what_was_decided(
    container, clock, events, treatment_profile_ids
) -> None:
    first, second = treatment_profile_ids[4:6]
    await handle(
        container, events.profile(first, 1, reachable=(Channel.EMAIL,)), events.tier(first, 1)
    )
    clock.now += timedelta(days=8)  # past the weekly cap
    await handle(
        container,
        events.profile(second, 1, reachable=()),
        events.tier(second, 1),
        events.tier(first, 2, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B),
    )
    await handle(container, events.profile(first, 2, reachable=(Channel.EMAIL,)))

    counts = await container.read_model.outcome_counts("welcome-to-a")
    by_key = {(c.outcome, c.channel): c.count for c in counts}
    assert by_key == {(Outcome.SENT, Channel.EMAIL): 1, (Outcome.SUPPRESSED, None): 1}

    history = await container.read_model.decisions_for_profile(first, limit=10)
    assert [d.campaign_id for d in history] == ["slipping-a", "welcome-to-a"]
    assert history[0].created_at == clock.now
    assert history[0].channel is Channel.EMAIL
    assert history[0].reasons[0].code == "trigger"
    assert len(await container.read_model.decisions_for_profile(first, limit=1)) == 1
    assert await container.read_model.ready()


async def test_tier_moves_need_no_inbox_and_a_redelivered_batch_changes_nothing(
    container, events, treatment_profile_ids
) -> None:
    decided, waiting = treatment_profile_ids[5], treatment_profile_ids[6]
    batch = (
        events.profile(decided, 2, reachable=(Channel.EMAIL,)),
        events.tier(decided, 2),
        events.tier(waiting, 3),  # waits for the profile at version 3
        # A move no campaign takes: nothing is stored, and a redelivery stores nothing again.
        events.tier("p-nobody", 1, move=TierMove.ENTERED, from_tier=None, to_tier=Tier.C),
    )

    await handle(container, *batch)
    await handle(container, *batch)

    assert await count(container, "inbox") == 0
    assert await count(container, "triggers") == 2
    assert await count(container, "triggers", status="decided") == 1
    assert await count(container, "triggers", status="pending") == 1
    assert await count(container, "decisions") == 1
    assert len(await staged(container)) == 1

    # The waiting trigger is decided once its person is known, then redelivered again.
    await handle(container, events.profile(waiting, 3, reachable=(Channel.EMAIL,)))
    await handle(container, *batch)

    assert await count(container, "triggers", status="decided") == 2
    assert await count(container, "decisions") == 2
    assert len(await staged(container)) == 2
    assert await count(container, "inbox") == 0


async def test_a_tier_move_redelivered_after_its_trigger_was_decided_is_not_decided_again(
    container, events, treatment_profile_ids, clock
) -> None:
    pid = treatment_profile_ids[7]
    tier = events.tier(pid, 1)
    await handle(container, events.profile(pid, 1, reachable=(Channel.EMAIL,)), tier)
    async with container.engine.connect() as conn:
        table = container.tables.triggers
        first = await conn.scalar(select(table.c.decided_at))

    clock.now = NOW + timedelta(days=3)
    # Newer facts arrive with it: the person is known and ready, the trigger is not new.
    await handle(container, events.profile(pid, 2, reachable=(Channel.EMAIL,)), tier)
    await handle(container, tier)

    assert await count(container, "decisions") == 1
    assert len(await staged(container)) == 1
    async with container.engine.connect() as conn:
        assert await conn.scalar(select(table.c.decided_at)) == first
    assert await count(container, "triggers", status="decided") == 1


async def test_a_tier_move_redelivered_after_its_trigger_expired_stays_expired(
    container, events, treatment_profile_ids, clock
) -> None:
    pid = treatment_profile_ids[8]
    tier = events.tier(pid, 4)
    await handle(container, tier)
    clock.now = NOW + timedelta(days=3)
    await container.decider.sweep(container.unit_of_work())
    assert await count(container, "triggers", status="expired") == 1

    await handle(container, events.profile(pid, 4, reachable=(Channel.EMAIL,)), tier)

    assert await count(container, "triggers", status="expired") == 1
    assert await count(container, "decisions") == 0
    assert len(await staged(container)) == 0
