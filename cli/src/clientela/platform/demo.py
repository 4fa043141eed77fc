"""Demo traffic: a small deterministic population of customers and prospects, and a live tail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from clientela.platform.population import Population, PopulationSpec
from clientela.shared.contracts import topics


def demo_touchpoints(seed: int = 7, people: int = 25, events: int = 150) -> list[dict[str, Any]]:
    """Return a short stream from the synthetic population: buyers, browsers and prospects."""
    return list(Population(PopulationSpec(people=people, seed=seed)).touchpoints(events))


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
