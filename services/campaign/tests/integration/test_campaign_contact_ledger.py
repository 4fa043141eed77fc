"""Contact caps under concurrent service instances, against real Redis (and in process)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from clientela.campaign.adapters.outbound.contact_ledger import (
    MemoryContactLedger,
    RedisContactLedger,
)
from clientela.campaign.application.ports import ContactRequest
from clientela.campaign.domain.contact_policy import CapLimits, ContactPolicy, cap_counters
from clientela.campaign.domain.model import Contact
from clientela.shared.contracts import Channel, Lifecycle

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = ContactPolicy()
INSTANCES = 6


@pytest.fixture
async def instances(redis_url: str) -> AsyncIterator[list[RedisContactLedger]]:
    """Return several ledgers, as separate service instances would hold, on one Redis."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    ledgers = [RedisContactLedger(redis_url, prefix) for _ in range(INSTANCES)]
    yield ledgers
    for ledger in ledgers:
        await ledger.close()


def requests_for(pid: str, round_no: int, channels: tuple[Channel, ...]) -> list[ContactRequest]:
    person = Contact(pid, 1, Lifecycle.CUSTOMER, frozenset(channels))
    return [
        ContactRequest(
            f"{pid}-{round_no}-{n}",
            [cap_counters(person, ch, NOW, POLICY) for ch in channels],
        )
        for n in range(5)
    ]


async def test_caps_hold_when_instances_race_for_the_same_people(
    instances: list[RedisContactLedger],
) -> None:
    people = [f"racer-{n}" for n in range(40)]
    channels = (Channel.EMAIL, Channel.SMS, Channel.PHONE)

    async def instance(ledger: RedisContactLedger, round_no: int) -> list[tuple[str, int | None]]:
        granted = []
        for pid in people:
            requests = requests_for(pid, round_no, channels)
            for request, grant in zip(requests, await ledger.reserve(requests), strict=True):
                granted.append(
                    (request.decision_id.split("-")[0] + "-" + pid.split("-")[1], grant.granted)
                )
        return granted

    results = await asyncio.gather(*[instance(ledger, i) for i, ledger in enumerate(instances)])

    per_person: dict[str, int] = {}
    for outcomes in results:
        for key, granted in outcomes:
            if granted is not None:
                per_person[key] = per_person.get(key, 0) + 1
    # 6 instances x 5 messages each asked for every person; the global cap is 1 a day.
    assert per_person == {f"racer-{n}": 1 for n in range(40)}


async def test_a_replayed_request_gets_the_same_answer_and_counts_once(
    instances: list[RedisContactLedger],
) -> None:
    first, second = instances[:2]
    (request,) = requests_for("replay", 0, (Channel.EMAIL,))[:1]

    answer = await first.reserve([request])
    replay = await second.reserve([request])
    other = await second.reserve(requests_for("replay", 1, (Channel.EMAIL,))[:1])

    assert answer[0].granted == replay[0].granted == 0
    assert other[0].granted is None
    assert other[0].blocked == ("all per day (1)",)
    assert await first.ping()


async def test_the_next_channel_is_granted_when_the_first_is_capped(redis_url: str) -> None:
    ledger = RedisContactLedger(redis_url, f"t{uuid.uuid4().hex[:8]}:")
    loose = ContactPolicy(global_caps=CapLimits(day=5, week=9))
    person = Contact("multi", 1, Lifecycle.CUSTOMER, frozenset(Channel))
    alternatives = [cap_counters(person, ch, NOW, loose) for ch in (Channel.PHONE, Channel.EMAIL)]
    try:
        one = await ledger.reserve([ContactRequest("m1", alternatives)])
        two = await ledger.reserve([ContactRequest("m2", alternatives)])
    finally:
        await ledger.close()

    assert one[0].granted == 0
    assert two[0].granted == 1
    assert two[0].blocked == ("phone per day (1)",)


async def test_the_in_process_ledger_answers_like_redis() -> None:
    ledger = MemoryContactLedger()
    answers = await asyncio.gather(
        *[ledger.reserve(requests_for("solo", n, (Channel.EMAIL, Channel.SMS))) for n in range(6)]
    )
    granted = [g for batch in answers for g in batch if g.granted is not None]
    assert len(granted) == 1
