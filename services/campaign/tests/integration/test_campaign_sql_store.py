"""The use case and read model against real PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from clientela.campaign.application.decide_campaigns import CampaignInputs
from clientela.campaign.application.ports import ReceivedTrigger
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.decision import decision_id
from clientela.campaign.domain.model import Outcome
from clientela.campaign.wiring import Container, build
from clientela.shared.codec import HEADER_ACCEPTED_AT
from clientela.shared.contracts import CampaignMessageEvent, Channel, Tier, TierMove
from clientela.shared.settings import DatabaseSettings, KafkaSettings


class Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def container(database_settings: DatabaseSettings, clock: Clock) -> AsyncIterator[Container]:
    settings = CampaignSettings(
        database=database_settings, kafka=KafkaSettings(topic_prefix="test.")
    )
    async with build(settings, clock=clock, consume=False) as built:
        yield built


async def handle(container: Container, *items, accepted_at_ms: int | None = 17) -> None:
    inputs = CampaignInputs(
        [i for i in items if i.type == "profile.changed"],
        [ReceivedTrigger(i, accepted_at_ms) for i in items if i.type == "tier.changed"],
    )
    await container.decider.handle_batch(inputs, container.unit_of_work())


async def count(container: Container, table_name: str, **where: str) -> int:
    table = getattr(container.tables, table_name)
    stmt = select(func.count()).select_from(table)
    for column, value in where.items():
        stmt = stmt.where(table.c[column] == value)
    async with container.engine.connect() as conn:
        return int(await conn.scalar(stmt) or 0)


async def test_trigger_waits_for_contact_then_one_message_is_staged(
    container, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    tier = events.tier(pid, 2)

    await handle(container, tier)
    await handle(container, events.profile(pid, 1))

    assert await count(container, "triggers", status="pending") == 1
    assert await count(container, "outbox") == 0

    await handle(container, events.profile(pid, 2))
    await handle(container, tier, events.profile(pid, 2))  # redelivery

    assert await count(container, "triggers", status="decided") == 1
    assert await count(container, "decisions") == 1
    async with container.engine.connect() as conn:
        rows = (await conn.execute(select(container.tables.outbox))).all()
    (row,) = rows
    message = CampaignMessageEvent.model_validate_json(row.value)
    assert row.topic == "test.campaign-messages.v1"
    assert row.key == pid.encode()
    assert [HEADER_ACCEPTED_AT, "17"] in row.headers
    assert message.event_id == decision_id("welcome-to-a", tier.event_id)
    assert message.causation_id == tier.event_id
    assert message.data.channel is Channel.PHONE


async def test_a_newer_contact_is_never_overwritten_by_an_older_one(container, events) -> None:
    await handle(container, events.profile("p-v", 5, reachable=(Channel.EMAIL,)))
    await handle(container, events.profile("p-v", 3, reachable=(Channel.SMS,)))

    async with container.unit_of_work() as uow:
        contacts = await uow.contacts.get_many(["p-v"])

    assert contacts["p-v"].version == 5
    assert contacts["p-v"].reachable_channels == {Channel.EMAIL}


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


async def test_stats_and_profile_history_read_what_was_decided(
    container, clock, events, treatment_profile_ids
) -> None:
    first, second = treatment_profile_ids[2:4]
    await handle(container, events.profile(first, 1), events.tier(first, 1))
    clock.now += timedelta(minutes=5)
    await handle(
        container,
        events.profile(second, 1, reachable=()),
        events.tier(second, 1),
        events.tier(first, 2, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B),
    )
    await handle(container, events.profile(first, 2))

    counts = await container.read_model.outcome_counts("welcome-to-a")
    by_key = {(c.outcome, c.channel): c.count for c in counts}
    assert by_key == {(Outcome.SENT, Channel.PHONE): 1, (Outcome.SUPPRESSED, None): 1}

    history = await container.read_model.decisions_for_profile(first, limit=10)
    assert [d.campaign_id for d in history] == ["slipping-a", "welcome-to-a"]
    assert history[0].created_at == clock.now
    assert history[0].channel is Channel.EMAIL
    assert history[0].reasons[0].code == "tier_move"
    assert len(await container.read_model.decisions_for_profile(first, limit=1)) == 1
    assert await container.read_model.ready()
