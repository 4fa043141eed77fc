"""End to end: a sale posted over HTTP becomes a tier change and a campaign message.

The four services run as real processes against a real Kafka-protocol broker, once on the
embedded backends (SQLite, in-process cache) and once on PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from clientela.platform.launcher import Platform
from clientela.shared.codec import to_record
from clientela.shared.contracts import TouchpointRecorded, topics
from clientela.shared.settings import DEV_READ_KEY, DEV_WRITE_KEY

pytestmark = pytest.mark.e2e

WRITE = {"Authorization": f"Bearer {DEV_WRITE_KEY}"}
READ = {"Authorization": f"Bearer {DEV_READ_KEY}"}


def sale(customer_id: str, amount: str = "250.00", event_id: str | None = None) -> dict[str, Any]:
    """Return a native sale touchpoint for ingest."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "kind": "sale",
        "channel": "branch",
        "direction": "inbound",
        "identifiers": {"customer_id": customer_id, "email": f"{customer_id.lower()}@shop.test"},
        "agent": {"agent_id": "rep-1", "role": "sales_rep"},
        "sale": {"order_id": f"O-{uuid.uuid4().hex[:8]}", "amount": amount, "currency": "EUR"},
    }


async def find_on_topic(
    platform: Platform, spec: topics.TopicSpec, match: dict[str, Any], timeout_s: float = 60
) -> dict[str, Any]:
    """Read a topic from the start with a plain consumer until an event's data matches."""
    settings = platform.settings
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + spec.name,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        event: dict[str, Any] = json.loads(record.value)
                        if all(event["data"].get(k) == v for k, v in match.items()):
                            return event
    finally:
        await consumer.stop()


async def profile_of(platform: Platform, customer_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """Poll the profile service until it knows the customer; return the golden record."""
    url = f"{platform.settings.url('profile')}/v1/profiles/by/customer_id/{customer_id}"
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(timeout_s):
        while True:
            response = await client.get(url, headers=READ)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            assert response.status_code == 404, response.text
            await asyncio.sleep(0.2)


async def test_a_sale_becomes_a_tier_change_and_a_campaign_message(platform: Platform) -> None:
    customer = f"C-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{platform.settings.url('ingest')}/v1/touchpoints", json=sale(customer), headers=WRITE
        )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1

    profile = await profile_of(platform, customer)
    profile_id = profile["profile_id"]
    assert profile["lifecycle"] == "customer"
    assert profile["aggregates"]["purchase_count"] == 1

    tier_changed = await find_on_topic(platform, topics.TIER_CHANGES, {"profile_id": profile_id})
    assert tier_changed["type"] == "tier.changed"
    assert tier_changed["data"]["from_tier"] is None
    assert tier_changed["data"]["to_tier"] in {"A", "B", "C"}
    assert tier_changed["data"]["predicted_value"] > 0

    message = await find_on_topic(platform, topics.CAMPAIGN_MESSAGES, {"profile_id": profile_id})
    assert message["type"] == "campaign.message"
    assert message["data"]["campaign_id"] == "e2e-welcome"
    assert message["data"]["trigger_event_id"] == tier_changed["event_id"]
    # The customer came with an email and a branch visit, no phone: the personal channel the
    # A/B/C policy can reach first is the branch (A) or email (B, C).
    assert message["data"]["channel"] in {"branch", "email"}
    assert message["causation_id"] == tier_changed["event_id"]


async def test_a_retried_post_is_acknowledged_but_not_counted_twice(platform: Platform) -> None:
    customer = f"C-{uuid.uuid4().hex[:10]}"
    event = sale(customer, amount="40.00")
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"{platform.settings.url('ingest')}/v1/touchpoints"
        first = await client.post(url, json=event, headers=WRITE)
        second = await client.post(url, json=event, headers=WRITE)
    assert first.json()["accepted"] == 1
    assert second.status_code == 200
    assert second.json()["duplicates"] == 1
    assert second.json()["accepted"] == 0
    profile = await profile_of(platform, customer)
    assert profile["aggregates"]["purchase_count"] == 1


async def test_a_redelivered_touchpoint_changes_nothing(platform: Platform) -> None:
    """The same record twice on the topic (as after a producer retry) is applied once."""
    customer = f"C-{uuid.uuid4().hex[:10]}"
    settings = platform.settings
    topic = settings.topic_prefix + topics.TOUCHPOINTS.name
    twice = TouchpointRecorded.model_validate({"source": "pos", "data": sale(customer)})
    sentinel = TouchpointRecorded.model_validate(
        {
            "source": "web",
            "data": {
                "kind": "web_visit",
                "channel": "web",
                "direction": "inbound",
                "identifiers": {"customer_id": customer},
                "web_visit": {"page_views": 2},
            },
        }
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        # One key, one partition: the sentinel is applied after both copies of the sale.
        for event in (twice, twice, sentinel):
            record = to_record(topic, "e2e-redelivery", event)
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=record.headers
            )
    finally:
        await producer.stop()

    async with asyncio.timeout(60):
        while True:
            profile = await profile_of(platform, customer)
            if profile["aggregates"]["counts_by_kind"].get("web_visit"):
                break
            await asyncio.sleep(0.2)
    aggregates = profile["aggregates"]
    assert aggregates["purchase_count"] == 1
    assert aggregates["touchpoint_count"] == 2
    assert aggregates["total_spend"] in ("250.00", "250.0000", "250")
