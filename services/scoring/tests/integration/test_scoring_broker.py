"""The whole service on a real broker: profiles.v1 in, tier-changes.v1 and scores.v1 out."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from clientela.scoring.config import ScoringSettings
from clientela.scoring.wiring import Container, create_app
from clientela.shared.codec import HEADER_ACCEPTED_AT, OutgoingRecord, header, to_record
from clientela.shared.contracts import (
    ProfileChangedEvent,
    ProfileErased,
    ProfileErasedEvent,
    derived_event_id,
)
from clientela.shared.contracts.topics import (
    PROFILE_ERASURES,
    PROFILES,
    SCORES,
    SCORING_DLQ,
    TIER_CHANGES,
)
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.settings import DEV_READ_KEY, DatabaseSettings, KafkaSettings

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2025, 6, 1, tzinfo=UTC)

MakeProfile = Callable[..., ProfileChangedEvent]


@pytest.fixture(scope="module")
async def service(
    kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Container, KafkaPublisher]]:
    """Run the scoring app (consumer + relay + API) once for the module."""
    data_dir: Path = tmp_path_factory.mktemp("scoring")
    settings = ScoringSettings(
        kafka=kafka_settings,
        database=DatabaseSettings(data_dir=data_dir),
        group_id=f"clientela-scoring-{run_id}",
    )
    app = create_app(settings)
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as client:
                yield client, app.state.container, publisher
    finally:
        await publisher.stop()


async def _records(
    settings: KafkaSettings,
    topic: str,
    keep: Callable[[ConsumerRecord[bytes, bytes]], bool],
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read the records `keep` accepts from the start of a topic until `done` says so."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not done(found) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [r for r in records if keep(r)]
    finally:
        await consumer.stop()
    return found


async def read_topic(
    settings: KafkaSettings, topic: str, keys: set[str], want: int, timeout_s: float = 30.0
) -> list[tuple[dict[str, Any], list[tuple[str, bytes]]]]:
    """Read records for the given keys from the start of a topic until `want` arrived."""
    found = await _records(
        settings,
        topic,
        lambda r: r.key is not None and r.key.decode() in keys,
        lambda rs: len(rs) >= want,
        timeout_s,
    )
    return [(json.loads(r.value), list(r.headers)) for r in found]


async def test_profile_changes_become_tier_changes_on_the_broker(
    service: tuple[httpx.AsyncClient, Container, KafkaPublisher],
    kafka_settings: KafkaSettings,
    profile_changed: MakeProfile,
) -> None:
    client, _container, publisher = service
    big, small = f"big-{uuid.uuid4().hex[:8]}", f"small-{uuid.uuid4().hex[:8]}"
    profiles_topic = kafka_settings.topic(PROFILES)
    first = profile_changed(big, 1, spend="900")
    await publisher.publish(
        [
            to_record(profiles_topic, big, first, accepted_at_ms=1_700_000_000_000),
            to_record(profiles_topic, small, profile_changed(small, 1, spend="100")),
            OutgoingRecord(topic=profiles_topic, key=big.encode(), value=None),  # a tombstone
        ]
    )

    changes = await read_topic(kafka_settings, kafka_settings.topic(TIER_CHANGES), {big}, 1)

    (event, headers), *_ = changes
    assert event["type"] == "tier.changed"
    assert event["event_id"] == derived_event_id("tier.changed", big, "t1")
    assert event["causation_id"] == first.event_id
    assert (event["data"]["from_tier"], event["data"]["to_tier"]) == (None, "A")
    assert event["data"]["move"] == "entered"
    assert header(headers, HEADER_ACCEPTED_AT) == b"1700000000000"
    scores = await read_topic(kafka_settings, kafka_settings.topic(SCORES), {big, small}, 2)
    assert {e["data"]["profile_id"] for e, _ in scores} == {big, small}

    response = await client.get(f"/v1/scores/{big}", headers={"X-API-Key": DEV_READ_KEY})
    assert response.status_code == 200
    assert response.json()["tier"] == "A"
    assert (await client.get(f"/v1/scores/{big}")).status_code == 401


async def last_values(
    settings: KafkaSettings, topic: str, key: str, done: Callable[[list[bytes | None]], bool]
) -> list[bytes | None]:
    """Read a key's values (tombstones as None) from the start of a topic until done."""
    found = await _records(
        settings, topic, lambda r: r.key == key.encode(), lambda rs: done([r.value for r in rs])
    )
    return [r.value for r in found]


async def test_an_erasure_tombstones_the_scores_and_a_late_change_does_not_resurrect(
    service: tuple[httpx.AsyncClient, Container, KafkaPublisher],
    kafka_settings: KafkaSettings,
    profile_changed: MakeProfile,
) -> None:
    client, container, publisher = service
    pid = f"erased-{uuid.uuid4().hex[:8]}"
    profiles_topic = kafka_settings.topic(PROFILES)
    await publisher.publish([to_record(profiles_topic, pid, profile_changed(pid, 1, spend="500"))])
    scores_topic = kafka_settings.topic(SCORES)
    assert (await last_values(kafka_settings, scores_topic, pid, bool))[0] is not None
    erased = ProfileErasedEvent(
        event_id=derived_event_id("profile.erased", pid, "request-1"),
        source="profile",
        data=ProfileErased(profile_id=pid, request_id="request-1", erased_at=NOW),
    )

    # The erasure, the profile's own tombstone, and a change that was already in flight.
    await publisher.publish(
        [
            to_record(kafka_settings.topic(PROFILE_ERASURES), pid, erased),
            OutgoingRecord(topic=profiles_topic, key=pid.encode(), value=None),
        ]
    )
    values = await last_values(kafka_settings, scores_topic, pid, lambda v: None in v)
    assert values[-1] is None, "the latest scores.v1 record of the erased profile is a tombstone"
    sentinel = f"sentinel-{uuid.uuid4().hex[:8]}"
    await publisher.publish(
        [
            to_record(profiles_topic, pid, profile_changed(pid, 2, spend="900")),
            to_record(profiles_topic, sentinel, profile_changed(sentinel, 1, spend="5")),
        ]
    )
    await read_topic(kafka_settings, scores_topic, {sentinel}, 1)
    deadline = asyncio.get_running_loop().time() + 10
    while await container.relay.pending() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    response = await client.get(f"/v1/scores/{pid}", headers={"X-API-Key": DEV_READ_KEY})
    assert response.status_code == 404
    after = await last_values(kafka_settings, scores_topic, pid, lambda v: len(v) >= len(values))
    assert after == values


async def test_undecodable_records_are_dead_lettered(
    service: tuple[httpx.AsyncClient, Container, KafkaPublisher],
    kafka_settings: KafkaSettings,
) -> None:
    _client, _container, publisher = service
    await publisher.publish(
        [OutgoingRecord(topic=kafka_settings.topic(PROFILES), key=b"broken", value=b"{not json")]
    )
    dead = await read_topic(
        kafka_settings, kafka_settings.topic(SCORING_DLQ), {kafka_settings.topic(PROFILES)}, 1
    )
    assert dead[0][0]["data"]["reason_code"] == "undecodable"


async def test_health_and_readiness(
    service: tuple[httpx.AsyncClient, Container, KafkaPublisher],
) -> None:
    client, container, _publisher = service
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": True, "broker": True}
    assert await container.relay.pending() == 0
