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


async def _history(container: Container, events, ids: dict[str, str]) -> None:
    """Give B, C and E a message each (and counted caps), B a waiting move, C a complaint."""
    await handle(
        container, *(events.profile(p, 1, reachable=(Channel.EMAIL,)) for p in ids.values())
    )
    await handle(container, *(events.tier(ids[r], 1) for r in "BCE"))
    await handle(
        container, events.tier(ids["B"], 9, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B)
    )
    (message,) = await container.read_model.decisions_for_profile(ids["C"], 5)
    await handle(container, events.touch(message.decision_id, unsubscribed=True))


async def _state_of(container: Container, ids: dict[str, str]) -> dict[str, object]:
    """Return what the service holds of these people, their ids replaced by their roles."""
    role = {p: r for r, p in ids.items()}
    c, t = container.tables.contacts, container.tables.triggers
    async with container.engine.connect() as conn:
        contacts = (
            await conn.execute(
                select(c.c.profile_id, c.c.complained_at).where(c.c.profile_id.in_(role))
            )
        ).all()
        triggers = (
            await conn.execute(
                select(t.c.profile_id, t.c.kind, t.c.status, t.c.payload).where(
                    t.c.profile_id.in_(role)
                )
            )
        ).all()
    caps = {}
    for r, p in ids.items():
        for key, n in (await cap_values(container, p)).items():
            caps[key.replace(f":{p}:", f":{r}:")] = n
    history = {
        r: sorted(
            (d.campaign_id, d.outcome.value)
            for d in await container.read_model.decisions_for_profile(p, 50)
        )
        for r, p in ids.items()
    }
    return {
        "contacts": sorted((role[p], at is not None) for p, at in contacts),
        "triggers": sorted(
            (role[p], kind, status, payload.get("profile_version"))
            for p, kind, status, payload in triggers
        ),
        "caps": caps,
        "history": history,
    }


@pytest.mark.parametrize(
    "merges",
    [[("A", "B"), ("B", "C"), ("D", "E")], [("B", "C"), ("A", "B"), ("D", "E")]],
    ids=["absorbed-then-absorbing", "a-chain-into-A"],
)
async def test_merges_in_one_batch_end_as_if_applied_one_by_one(
    container: Container, events, treatment_profile_ids, merges
) -> None:
    together = dict(zip("ABCDE", treatment_profile_ids[:5], strict=True))
    alone = dict(zip("ABCDE", treatment_profile_ids[5:10], strict=True))
    for ids in (together, alone):
        await _history(container, events, ids)

    await handle(container, *(events.merged(together[s], together[m]) for s, m in merges))
    for s, m in merges:
        await handle(container, events.merged(alone[s], alone[m]))

    state = await _state_of(container, together)
    assert state == await _state_of(container, alone)
    # Each absorbed contact is gone; E's message and caps are D's now.
    assert {r for r, _ in state["contacts"]} == {"A", "D"}  # type: ignore[union-attr]
    assert state["history"]["D"] == [("welcome-to-a", "sent")]  # type: ignore[index]
    assert state["history"]["E"] == []  # type: ignore[index]
    assert any(":D:" in key for key in state["caps"])  # type: ignore[union-attr]
    if merges[0] == ("B", "C"):
        # Through B, everything of B and C reached A, C's unsubscribe included.
        assert state["contacts"] == [("A", True), ("D", False)]
        assert state["history"]["A"] == [  # type: ignore[index]
            ("slipping-a", "suppressed"),
            ("welcome-to-a", "sent"),
            ("welcome-to-a", "sent"),
        ]
        assert {t[0] for t in state["triggers"]} == {"A", "D"}  # type: ignore[union-attr]


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
