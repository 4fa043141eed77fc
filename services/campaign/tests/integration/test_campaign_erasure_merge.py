"""Erasure, merges, expiring triggers and the cheap contact view on real stores.

Every test runs on SQLite and PostgreSQL, with the in-process ledger and with Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis_asyncio
from sqlalchemy import select

from clientela.campaign.adapters.inbound.wire import inputs_from_events
from clientela.campaign.application.queries import roi_of
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.contact_policy import cap_keys
from clientela.campaign.wiring import Container, build
from clientela.shared.contracts import Channel, Envelope, Tier, TierMove
from clientela.shared.settings import CacheSettings, DatabaseSettings, KafkaSettings
from clientela.shared.testing import SettableClock

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # a Monday, midday in UTC


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture
async def container(
    database_settings: DatabaseSettings, cache_settings: CacheSettings, clock: SettableClock
) -> AsyncIterator[Container]:
    settings = CampaignSettings(
        database=database_settings,
        cache=cache_settings,
        kafka=KafkaSettings(topic_prefix="test."),
        global_holdout_share=0,
    )
    async with build(settings, clock=clock, consume=False) as built:
        yield built


async def handle(container: Container, *items: Envelope) -> None:
    await container.decider.handle_batch(inputs_from_events(items, 17), container.unit_of_work())


async def rows_mentioning(container: Container, needle: str) -> dict[str, int]:
    """Return, per table of the service, how many rows mention the needle anywhere."""
    found: dict[str, int] = {}
    async with container.engine.connect() as conn:
        for table in container.tables.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            hits = sum(1 for row in rows if needle in repr(tuple(row)))
            if hits:
                found[table.name] = hits
    return found


async def cap_values(container: Container, profile_id: str) -> dict[str, int]:
    """Return the person's contact counters that exist, by key (without the prefix)."""
    keys = cap_keys(profile_id, NOW)
    settings = container.settings.cache
    if settings.url.startswith("memory://"):
        counts = container.ledger._counts  # type: ignore[union-attr]
        return {k: counts[k][0] for k in keys if k in counts}
    client = redis_asyncio.Redis.from_url(settings.url)
    try:
        values = await client.mget([settings.key_prefix + k for k in keys])
    finally:
        await client.aclose()
    return {k: int(v) for k, v in zip(keys, values, strict=True) if v is not None}


async def test_erasure_leaves_nothing_keyed_by_the_person_and_keeps_the_results(
    container: Container, events, treatment_profile_ids
) -> None:
    pid, other = treatment_profile_ids[:2]
    await handle(
        container,
        events.profile(pid, 1, reachable=(Channel.EMAIL,), traits={"last_name": "Zephyrine"}),
        events.profile(other, 1, reachable=(Channel.EMAIL,)),
        events.scores(pid, 1),
    )
    await handle(container, events.tier(pid, 1), events.tier(other, 1))
    await handle(container, events.tier(pid, 7, move=TierMove.DOWN, from_tier=Tier.A))
    assert await cap_values(container, pid)
    before = roi_of("welcome-to-a", await container.read_model.result_cells("welcome-to-a"))

    await handle(container, events.erased(pid))

    assert await rows_mentioning(container, pid) == {}
    assert await rows_mentioning(container, "Zephyrine") == {}
    assert await cap_values(container, pid) == {}
    assert await cap_values(container, other)
    after = roi_of("welcome-to-a", await container.read_model.result_cells("welcome-to-a"))
    assert after == before
    assert await container.read_model.decisions_for_profile(pid, 10) == []


async def test_events_in_flight_after_an_erasure_do_not_resurrect_the_person(
    container: Container, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    await handle(container, events.profile(pid, 1, reachable=(Channel.EMAIL,)))
    await handle(container, events.erased(pid))

    await handle(
        container,
        events.profile(pid, 2, reachable=(Channel.EMAIL,)),
        events.scores(pid, 2),
        events.tier(pid, 2),
    )

    assert await rows_mentioning(container, pid) == {}
    async with container.engine.connect() as conn:
        (marker,) = (await conn.execute(select(container.tables.erased.c.marker))).scalars()
    assert pid not in marker
    assert len(marker) == 64


async def test_a_merge_moves_history_caps_and_waiting_triggers_to_the_survivor(
    container: Container, events, treatment_profile_ids
) -> None:
    survivor, absorbed = treatment_profile_ids[:2]
    await handle(container, events.profile(absorbed, 1, reachable=(Channel.EMAIL,)))
    await handle(container, events.tier(absorbed, 1))
    counted = await cap_values(container, absorbed)
    assert counted
    waiting = events.tier(absorbed, 9, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B)
    await handle(container, waiting)

    await handle(container, events.merged(survivor, absorbed))
    await handle(container, events.merged(survivor, absorbed))  # a redelivery changes nothing
    await handle(container, events.profile(survivor, 1, reachable=(Channel.EMAIL,)))

    assert await cap_values(container, absorbed) == {}
    assert await cap_values(container, survivor) == {
        key.replace(f":{absorbed}:", f":{survivor}:"): n for key, n in counted.items()
    }
    history = await container.read_model.decisions_for_profile(survivor, 10)
    assert {d.campaign_id for d in history} == {"welcome-to-a", "slipping-a"}
    # The move waiting for the absorbed profile was decided for the survivor, and the daily
    # cap, counted before the merge, held.
    (slipping,) = [d for d in history if d.campaign_id == "slipping-a"]
    assert slipping.outcome.value == "suppressed"
    # Only the message sent before the merge, waiting for the relay, names the absorbed id.
    assert await rows_mentioning(container, absorbed) == {"outbox": 1}


async def test_an_unchanged_profile_advances_the_version_and_last_seen_only(
    container: Container, events, treatment_profile_ids
) -> None:
    pid = treatment_profile_ids[0]
    await handle(container, events.profile(pid, 1, last_seen_at=NOW, habits={"email": 1}))
    later = NOW + timedelta(days=3)

    await handle(
        container, events.profile(pid, 2, last_seen_at=later, habits={"email": 3, "sms": 1})
    )

    async with container.engine.connect() as conn:
        row = (
            await conn.execute(
                select(container.tables.contacts).where(
                    container.tables.contacts.c.profile_id == pid
                )
            )
        ).one()
    assert row.version == 2
    assert row.last_seen_at == datetime(2025, 3, 6, tzinfo=UTC)  # rounded down to the day
    assert row.habits == "email=0.8;sms=0.2"
    async with container.unit_of_work() as uow:
        contact = (await uow.contacts.get_many([pid]))[pid]
    assert contact.habits == {Channel.EMAIL: 0.8, Channel.SMS: 0.2}


async def test_a_trigger_whose_contact_never_arrives_expires(
    container: Container, events, clock: SettableClock
) -> None:
    stale = events.tier("never-known", 1)
    await handle(container, stale)

    clock.now = NOW + timedelta(hours=49)
    outcome = await container.decider.sweep(container.unit_of_work())

    assert outcome.expired == 1
    async with container.engine.connect() as conn:
        t = container.tables.triggers
        status = await conn.scalar(select(t.c.status).where(t.c.trigger_event_id == stale.event_id))
    assert status == "expired"
    assert (await container.decider.sweep(container.unit_of_work())).expired == 0
