"""Erasure: after DELETE /v1/profiles/{id} the person is gone from every store, and stays gone.

One person goes all the way through the platform (profile, scores, tier change, campaign
message), is erased, and then every store is searched: PostgreSQL (every table of every
service's schema), Redis (every key of the run) and the compacted topics.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from aiokafka import AIOKafkaProducer
from clientela_reliability_harness import ADMIN, READ, WRITE, Rig, profile_by_customer

from clientela.platform.launcher import SERVICES
from clientela.shared.contracts import topics

pytestmark = pytest.mark.e2e


@dataclass
class Erased:
    """The erased person: their identifiers, profile id, and what they left behind."""

    customer_id: str
    personal: list[str]
    profile_id: str
    receipt: dict[str, Any]
    old_touchpoints: list[tuple[bytes | None, bytes, list[Any]]]


def _touchpoints(customer: str, email: str, phone: str, name: str) -> list[dict[str, Any]]:
    base = {
        "channel": "branch",
        "direction": "inbound",
        "identifiers": {"customer_id": customer, "email": email, "phone": phone},
        "traits": {"first_name": name.split()[0], "last_name": name.split()[1], "name": name},
    }
    return [
        {
            **base,
            "event_id": f"erase-{uuid.uuid4()}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "kind": "sale",
            "sale": {
                "order_id": f"E-{n}-{uuid.uuid4().hex[:6]}",
                "amount": "900.00",
                "currency": "EUR",
            },
        }
        for n in range(3)
    ]


async def _rows_mentioning(rig: Rig, schema: str, needles: list[str]) -> dict[str, int]:
    """Return, per table of a schema, how many rows mention any of the needles anywhere."""
    tables = await rig.sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s", s=schema
    )
    found: dict[str, int] = {}
    for (table,) in tables:
        rows = await rig.sql(f'SELECT * FROM "{schema}"."{table}"')
        hits = sum(1 for row in rows if any(n in repr(tuple(row)) for n in needles))
        if hits:
            found[table] = hits
    return found


async def _redis_mentioning(rig: Rig, needles: list[str]) -> list[str]:
    """Return the keys of the run (with their values) that mention any of the needles."""
    client = redis_asyncio.from_url(rig.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{rig.cache_prefix}*", count=5000)]
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            kinds = [k.decode() for k in await pipe.execute()]
        readers = {
            "string": lambda p, k: p.get(k),
            "hash": lambda p, k: p.hgetall(k),
            "set": lambda p, k: p.smembers(k),
            "zset": lambda p, k: p.zrange(k, 0, -1),
            "list": lambda p, k: p.lrange(k, 0, -1),
        }
        async with client.pipeline(transaction=False) as pipe:
            for key, kind in zip(keys, kinds, strict=True):
                readers.get(kind, lambda p, k: p.exists(k))(pipe, key)
            values = await pipe.execute()
        texts = [f"{k.decode(errors='replace')}={v!r}" for k, v in zip(keys, values, strict=True)]
        return [t[:200] for t in texts if any(n in t for n in needles)]
    finally:
        await client.aclose()


async def _last_value(rig: Rig, spec: topics.TopicSpec, key: str) -> tuple[bool, bytes | None]:
    """Return whether the compacted topic holds the key, and its latest value."""
    last: tuple[bool, bytes | None] = (False, None)
    for record in await rig.read_topic(spec):
        if record.key == key.encode():
            last = (True, record.value)
    return last


@pytest.fixture(scope="module")
async def erased(rig: Rig) -> Erased:
    """Send one person through the platform, then erase them."""
    await asyncio.to_thread(rig.ensure_up)
    tag = uuid.uuid4().hex[:8]
    customer = f"ERASE-{tag}"
    email, phone, name = (
        f"erase.me.{tag}@private.example",
        "+12025550187",
        f"Quillon Zephyrine{tag[:3]}",
    )
    rig.personal_data.update({email, name, "Quillon", f"Zephyrine{tag[:3]}"})
    events = _touchpoints(customer, email, phone, name)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            rig.url("ingest") + "/v1/touchpoints", json=events, headers=WRITE
        )
        assert response.json()["accepted"] == 3, response.text
        async with asyncio.timeout(60):
            while (profile := await profile_by_customer(client, rig, customer)) is None or (
                profile["aggregates"]["purchase_count"] < 3
            ):
                await asyncio.sleep(0.3)
        profile_id = profile["profile_id"]
        async with asyncio.timeout(60):
            while (
                await client.get(f"{rig.url('scoring')}/v1/scores/{profile_id}", headers=READ)
            ).status_code != 200:
                await asyncio.sleep(0.3)
        await rig.wait_quiet(90)
        old = [
            (r.key, r.value, list(r.headers or ()))
            for r in await rig.read_topic(topics.TOUCHPOINTS)
            if customer.encode() in (r.value or b"")
        ]
        response = await client.delete(
            f"{rig.url('profile')}/v1/profiles/{profile_id}", headers=ADMIN
        )
        assert response.status_code == 200, response.text
        await rig.wait_quiet(90)
    return Erased(customer, [email, phone, name, customer], profile_id, response.json(), old)


async def test_security_erasure_removes_the_person_from_the_profile_store(
    rig: Rig, erased: Erased
) -> None:
    assert erased.receipt["identifiers_removed"] >= 3
    assert erased.receipt["touchpoints_removed"] == 3
    found = await _rows_mentioning(rig, rig.schema("profile"), erased.personal)
    assert not found, f"personal data left in the profile schema: {found}"
    by_id = await _rows_mentioning(rig, rig.schema("profile"), [erased.profile_id])
    assert set(by_id) <= {"erasures"}, f"the profile id is left in: {by_id}"
    async with httpx.AsyncClient(timeout=10) as client:
        gone = await client.get(
            f"{rig.url('profile')}/v1/profiles/{erased.profile_id}", headers=READ
        )
        assert gone.status_code == 404
        assert await profile_by_customer(client, rig, erased.customer_id) is None


async def test_security_erasure_leaves_no_personal_data_in_any_database(
    rig: Rig, erased: Erased
) -> None:
    found = {
        service: hits
        for service in SERVICES
        if (hits := await _rows_mentioning(rig, rig.schema(service), erased.personal))
    }
    assert not found, f"personal data left after erasure: {found}"


async def test_security_erasure_drops_scores_and_campaign_history(rig: Rig, erased: Erased) -> None:
    found = {
        service: hits
        for service in ("scoring", "campaign")
        if (hits := await _rows_mentioning(rig, rig.schema(service), [erased.profile_id]))
    }
    assert not found, f"rows still keyed by the erased profile: {found}"


async def test_security_erasure_leaves_nothing_in_redis(rig: Rig, erased: Erased) -> None:
    hits = await _redis_mentioning(rig, [*erased.personal, erased.profile_id])
    assert not hits, f"Redis keys still about the erased person: {hits[:5]}"


async def test_security_erasure_tombstones_the_profiles_topic(rig: Rig, erased: Erased) -> None:
    present, value = await _last_value(rig, topics.PROFILES, erased.profile_id)
    assert present, "the profile never appeared on profiles.v1"
    assert value is None, "the latest profiles.v1 record of the erased profile is not a tombstone"


async def test_security_erasure_tombstones_the_scores_topic(rig: Rig, erased: Erased) -> None:
    present, value = await _last_value(rig, topics.SCORES, erased.profile_id)
    assert present, "the profile was never scored"
    assert value is None, "the latest scores.v1 record of the erased profile is not a tombstone"


async def test_security_erasure_a_replayed_old_touchpoint_does_not_resurrect(
    rig: Rig, erased: Erased
) -> None:
    """A consumer reset or a producer retry redelivers old touchpoints after the erasure."""
    assert erased.old_touchpoints
    producer = AIOKafkaProducer(bootstrap_servers=rig.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in erased.old_touchpoints:
            await producer.send_and_wait(
                rig.topic(topics.TOUCHPOINTS), value, key=key, headers=headers
            )
    finally:
        await producer.stop()
    await rig.wait_quiet(60)
    async with httpx.AsyncClient(timeout=10) as client:
        assert await profile_by_customer(client, rig, erased.customer_id) is None
    found = await _rows_mentioning(rig, rig.schema("profile"), erased.personal)
    assert not found, f"the replay brought personal data back: {found}"


async def test_security_erasure_a_later_event_starts_afresh(rig: Rig, erased: Erased) -> None:
    """The person comes back: a new profile, with nothing of the erased history."""
    event = _touchpoints(erased.customer_id, erased.personal[0], erased.personal[1], "A B")[0]
    event["sale"]["amount"] = "5.00"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            rig.url("ingest") + "/v1/touchpoints", json=event, headers=WRITE
        )
        assert response.json()["accepted"] == 1
        deadline = time.monotonic() + 60
        while (profile := await profile_by_customer(client, rig, erased.customer_id)) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
    assert profile["profile_id"] != erased.profile_id
    aggregates = profile["aggregates"]
    assert (aggregates["touchpoint_count"], aggregates["purchase_count"]) == (1, 1)
    assert str(aggregates["total_spend"]).startswith("5")
    assert json.dumps(profile).count(erased.personal[2].split()[1]) == 0  # the old last name
