"""Demo traffic: a small deterministic population of customers and prospects, and a live tail."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from clientela.shared.contracts import topics


def demo_touchpoints(
    seed: int = 7, customers: int = 12, prospects: int = 4
) -> list[dict[str, Any]]:
    """Return native touchpoints: customers with Pareto-distributed spend, prospects browsing."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    for n in range(1, customers + 1):
        ids = {"customer_id": f"C{n:04d}", "email": f"customer{n}@demo.clientela.dev"}
        if n % 3 == 0:
            ids["phone"] = f"+1202555{n:04d}"
        channel = rng.choice(["web", "branch", "phone"])
        for k in range(rng.randint(1, 4)):
            # Pareto shape 1.16 gives the 80/20 split the tiers are meant to find.
            amount = Decimal(str(round(25 * rng.paretovariate(1.16), 2)))
            events.append(
                {
                    "event_id": f"demo-{seed}-{n}-sale-{k}",
                    "occurred_at": (now - timedelta(days=rng.randint(0, 200))).isoformat(),
                    "kind": "sale",
                    "channel": channel,
                    "direction": "inbound",
                    "identifiers": ids,
                    "sale": {"order_id": f"O{n:04d}{k}", "amount": str(amount), "currency": "EUR"},
                }
            )
        if channel == "branch":
            events.append(
                {
                    "event_id": f"demo-{seed}-{n}-visit",
                    "occurred_at": (now - timedelta(days=rng.randint(0, 30))).isoformat(),
                    "kind": "branch_visit",
                    "channel": "branch",
                    "direction": "inbound",
                    "identifiers": ids,
                    "agent": {"agent_id": f"rep-{rng.randint(1, 5)}", "role": "branch_manager"},
                    "branch_visit": {"branch_id": "B01", "purpose": "advice"},
                }
            )
    events.extend(_prospect_visit(seed, n, now) for n in range(1, prospects + 1))
    return events


def _prospect_visit(seed: int, n: int, now: datetime) -> dict[str, Any]:
    return {
        "event_id": f"demo-{seed}-prospect-{n}",
        "occurred_at": (now - timedelta(hours=n)).isoformat(),
        "kind": "web_visit",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {
            "anonymous_id": f"anon-{seed}-{n}",
            "email": f"prospect{n}@demo.clientela.dev",
        },
        "consent": [{"channel": "email", "status": "opted_in"}],
        "web_visit": {"url": "https://shop.demo.clientela.dev/pricing", "page_views": 3},
    }


async def post_touchpoints(
    ingest_url: str, write_key: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Post touchpoints to ingest in one batch and return its answer."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{ingest_url}/v1/touchpoints",
            json=events,
            headers={"Authorization": f"Bearer {write_key}"},
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


async def tail_public_topics(
    bootstrap_servers: str,
    topic_prefix: str,
    on_event: Callable[[str, dict[str, Any]], None],
    stop: asyncio.Event,
) -> None:
    """Print-style tail of the public topics (tier changes and campaign messages) until stopped."""
    consumer = AIOKafkaConsumer(
        topic_prefix + topics.TIER_CHANGES.name,
        topic_prefix + topics.CAMPAIGN_MESSAGES.name,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    if record.value is not None:
                        on_event(record.topic.removeprefix(topic_prefix), json.loads(record.value))
    finally:
        await consumer.stop()


def describe(topic: str, event: dict[str, Any]) -> str:
    """Return one readable line for a public event."""
    data = event["data"]
    who = data["profile_id"][:8]
    if topic == topics.TIER_CHANGES.name:
        return (
            f"tier change   profile {who}: {data['from_tier'] or '-'} -> {data['to_tier']} "
            f"({data['move']}, predicted value {data['predicted_value']:.2f})"
        )
    return (
        f"campaign msg  profile {who}: {data['campaign_id']} via {data['channel']} "
        f"(variant {data['variant']}, purpose {data['purpose']})"
    )
