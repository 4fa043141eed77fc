"""End to end: one touchpoint can be followed through the platform by its trace id.

A sale posted with a W3C `traceparent` reaches every topic of its chain (touchpoints,
profiles, tier changes, campaign messages) carrying that trace, hop after hop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from clientela.platform.launcher import Platform
from clientela.shared.contracts import topics
from clientela.shared.settings import DEV_READ_KEY, DEV_WRITE_KEY
from clientela.shared.tracing import TraceContext

pytestmark = pytest.mark.e2e

Event = dict[str, Any]


async def trace_on_topic(
    platform: Platform, spec: topics.TopicSpec, match: Callable[[Event], bool]
) -> str | None:
    """Read a topic from the start until an event matches; return its record's trace id."""
    settings = platform.settings
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + spec.name,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for record in (r for rs in batch.values() for r in rs if r.value is not None):
                    try:
                        event = json.loads(record.value)
                    except ValueError:
                        continue  # other tests put poison records on the shared topics
                    if isinstance(event, dict) and match(event):
                        carried = TraceContext.from_headers(list(record.headers))
                        return carried.trace_id if carried is not None else None
    finally:
        await consumer.stop()


async def profile_id_of(platform: Platform, customer_id: str) -> str:
    """Poll the profile service until it knows the customer; return the profile id."""
    url = f"{platform.settings.url('profile')}/v1/profiles/by/customer_id/{customer_id}"
    headers = {"Authorization": f"Bearer {DEV_READ_KEY}"}
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(60):
        while (response := await client.get(url, headers=headers)).status_code == 404:
            await asyncio.sleep(0.2)
    assert response.status_code == 200, response.text
    return str(response.json()["profile_id"])


async def test_one_trace_id_follows_a_sale_from_ingest_to_campaign(platform: Platform) -> None:
    customer = f"C-{uuid.uuid4().hex[:10]}"
    trace_id = uuid.uuid4().hex
    sale = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "kind": "sale",
        "channel": "branch",
        "direction": "inbound",
        "identifiers": {"customer_id": customer, "email": f"{customer.lower()}@shop.test"},
        "sale": {"order_id": f"O-{uuid.uuid4().hex[:8]}", "amount": "250.00", "currency": "EUR"},
    }
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{platform.settings.url('ingest')}/v1/touchpoints",
            json=sale,
            headers={
                "Authorization": f"Bearer {DEV_WRITE_KEY}",
                "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
            },
        )
    assert response.status_code == 200, response.text
    profile_id = await profile_id_of(platform, customer)

    def of_customer(event: Event) -> bool:
        return bool(event["data"].get("identifiers", {}).get("customer_id") == customer)

    def of_profile(event: Event) -> bool:
        return bool(event["data"].get("profile_id") == profile_id)

    carried = {
        spec.name: await trace_on_topic(platform, spec, match)
        for spec, match in (
            (topics.TOUCHPOINTS, of_customer),
            (topics.PROFILES, of_profile),
            (topics.TIER_CHANGES, of_profile),
            (topics.CAMPAIGN_MESSAGES, of_profile),
        )
    }

    assert carried == dict.fromkeys(carried, trace_id)
