"""End to end through a real broker: touchpoints in, ProfileChanged (and dead letters) out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer

from clientela.profile.config import ProfileSettings
from clientela.profile.wiring import Container, build
from clientela.shared.codec import (
    HEADER_ACCEPTED_AT,
    DecodeError,
    OutgoingRecord,
    decode_event,
    header,
    to_record,
)
from clientela.shared.contracts import (
    DeadLetterEvent,
    ProfileChangedEvent,
    ProfilesMergedEvent,
    topics,
    utc_now,
)
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.settings import DatabaseSettings, KafkaSettings


@pytest.fixture(scope="module")
async def service(
    kafka_settings: KafkaSettings, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Container]:
    data = tmp_path_factory.mktemp("profile-kafka")
    settings = ProfileSettings(
        kafka=kafka_settings,
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{data / 'profile.db'}"),
        group_id=f"clientela-profile-{run_id}",
    )
    async with build(settings) as container:
        yield container


async def _read_until(kafka: KafkaSettings, topic: str, contract, keep, done) -> list:
    """Collect decoded events that keep() accepts from the start of a topic until done(found)."""
    found: list = []

    def wanted(record) -> bool:
        # A tombstone has no event to decode; it is never what these callers look for.
        if record.value is None:
            return False
        try:
            event = decode_event(contract, record.value)
        except DecodeError:
            return False  # other suites of the session write poison to the same topics
        if keep(event):
            found.append((record, event))
        return False

    await _raw_records(kafka, topic, wanted, lambda _: done(found))
    return found


async def test_touchpoints_become_profile_changes(service: Container, kafka_settings, tp) -> None:
    ann = [
        tp(kind="web_visit", email="ann@example.com", correlation_id="corr-ann"),
        tp(kind="sale", amount="25", email="ann@example.com", phone="+33612345678", at=utc_now()),
    ]
    bob = tp(kind="branch_visit", channel="branch", customer_id="C-77")
    touchpoints_topic = kafka_settings.topic(topics.TOUCHPOINTS)
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    try:
        await publisher.publish(
            [to_record(touchpoints_topic, "ann", e, 1_700_000_000_000) for e in ann]
            + [to_record(touchpoints_topic, "bob", bob, 1_700_000_000_500)]
            + [OutgoingRecord(touchpoints_topic, b"junk", b"{not json", [])]
        )
    finally:
        await publisher.stop()

    causes = {e.event_id for e in [*ann, bob]}

    def complete(found: list) -> bool:
        events = [event for _, event in found]
        return any(e.causation_id == bob.event_id for e in events) and any(
            e.data.aggregates.touchpoint_count == 2 for e in events
        )

    found = await _read_until(
        kafka_settings,
        topics.PROFILES.name,
        ProfileChangedEvent,
        keep=lambda e: e.causation_id in causes,
        done=complete,
    )
    for record, _ in found:
        assert b"ann@example.com" not in record.value
        assert b"+33612345678" not in record.value
    bob_record, bob_event = next((r, e) for r, e in found if e.causation_id == bob.event_id)
    assert bob_record.key == bob_event.data.profile_id.encode()
    assert header(bob_record.headers, HEADER_ACCEPTED_AT) == b"1700000000500"
    assert bob_event.data.identifier_types == ["customer_id"]
    assert bob_event.data.reachable_channels == ["branch"]
    ann_event = next(e for _, e in found if e.data.aggregates.touchpoint_count == 2)
    assert ann_event.data.profile_id != bob_event.data.profile_id
    assert ann_event.causation_id == ann[1].event_id
    assert ann_event.data.aggregates.purchase_count == 1
    assert ann_event.data.identifier_types == ["email", "phone"]
    assert ann_event.data.lifecycle == "customer"

    dead = await _read_until(
        kafka_settings,
        topics.PROFILE_DLQ.name,
        DeadLetterEvent,
        keep=lambda e: e.data.original_key_b64 == "anVuaw==",  # base64 of b"junk"
        done=bool,
    )
    assert dead[0][1].data.reason_code == "undecodable"


async def _publish(kafka: KafkaSettings, events) -> None:
    topic = kafka.topic(topics.TOUCHPOINTS)
    publisher = KafkaPublisher(kafka)
    await publisher.start()
    try:
        await publisher.publish([to_record(topic, e.event_id, e) for e in events])
    finally:
        await publisher.stop()


async def _raw_records(kafka: KafkaSettings, topic: str, keep, done) -> list:
    """Collect raw records (tombstones included) that keep() accepts until done(found)."""
    consumer = AIOKafkaConsumer(
        kafka.topic_prefix + topic,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list = []
    try:
        deadline = time.monotonic() + 45
        while not done(found) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(r for r in records if keep(r))
    finally:
        await consumer.stop()
    assert done(found), f"gave up waiting on {topic}"
    return found


async def test_a_merge_is_announced_and_the_merged_id_tombstoned(
    service: Container, kafka_settings, tp
) -> None:
    first = tp(email="mia@example.com")
    second = tp(phone="+33698765432")
    await _publish(kafka_settings, [first, second])
    created = await _read_until(
        kafka_settings,
        topics.PROFILES.name,
        ProfileChangedEvent,
        keep=lambda e: e is not None and e.causation_id in {first.event_id, second.event_id},
        done=lambda found: len(found) == 2,
    )
    ids = {e.causation_id: e.data.profile_id for _, e in created}
    link = tp(email="mia@example.com", phone="+33698765432")
    await _publish(kafka_settings, [link])

    [(_, merged)] = await _read_until(
        kafka_settings,
        topics.PROFILE_MERGES.name,
        ProfilesMergedEvent,
        keep=lambda e: e.causation_id == link.event_id,
        done=bool,
    )
    assert {merged.data.survivor_id, merged.data.merged_id} == set(ids.values())
    [tombstone] = await _raw_records(
        kafka_settings,
        topics.PROFILES.name,
        keep=lambda r: r.value is None and r.key == merged.data.merged_id.encode(),
        done=bool,
    )
    assert tombstone.key == merged.data.merged_id.encode()
