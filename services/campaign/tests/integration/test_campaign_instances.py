"""Two service instances on one PostgreSQL and one Redis: the caps hold across them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest

from clientela.campaign.adapters.inbound.wire import inputs_from_events
from clientela.campaign.config import CampaignSettings
from clientela.campaign.migrations import MIGRATIONS
from clientela.campaign.wiring import Container, build
from clientela.shared.contracts import Channel, Tier, TierMove
from clientela.shared.migrations import upgrade
from clientela.shared.settings import CacheSettings, DatabaseSettings, KafkaSettings
from clientela.shared.testing import drop_schema

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def two_instances(postgres_url: str, redis_url: str) -> AsyncIterator[list[Container]]:
    schema = f"t_inst_{uuid.uuid4().hex[:8]}"
    settings = CampaignSettings(
        database=DatabaseSettings(url=postgres_url, schema_name=schema, pool_size=5),
        cache=CacheSettings(url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}:"),
        kafka=KafkaSettings(topic_prefix="test."),
        global_holdout_share=0,
    )
    await upgrade(settings.database, MIGRATIONS)
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(build(settings, clock=lambda: NOW, consume=False))
        second = await stack.enter_async_context(build(settings, clock=lambda: NOW, consume=False))
        yield [first, second]
    await drop_schema(postgres_url, schema)


async def test_two_instances_racing_for_the_same_people_respect_the_daily_cap(
    two_instances: list[Container], events, treatment_profile_ids
) -> None:
    first, second = two_instances
    people = treatment_profile_ids[:30]
    await first.decider.handle_batch(
        inputs_from_events([events.profile(p, 1, reachable=(Channel.EMAIL,)) for p in people]),
        first.unit_of_work(),
    )
    ups = inputs_from_events([events.tier(p, 1) for p in people])
    downs = inputs_from_events(
        [events.tier(p, 1, move=TierMove.DOWN, from_tier=Tier.A, to_tier=Tier.B) for p in people]
    )

    outcomes = await asyncio.gather(
        first.decider.handle_batch(ups, first.unit_of_work()),
        second.decider.handle_batch(downs, second.unit_of_work()),
    )

    assert sum(o.messages for o in outcomes) == len(people)  # one each, never two
    stats = [await first.read_model.outcome_counts(c) for c in ("welcome-to-a", "slipping-a")]
    sent = sum(c.count for rows in stats for c in rows if c.outcome.value == "sent")
    capped = sum(c.count for rows in stats for c in rows if c.outcome.value == "suppressed")
    assert (sent, capped) == (len(people), len(people))
