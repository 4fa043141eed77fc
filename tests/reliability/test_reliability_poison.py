"""Poison messages on every consumed topic go to the consumer's dead-letter topic; flow goes on.

On each topic some service consumes, three bad records (garbage bytes, a wrong schema, a newer
schema version) are written to partition 0 followed by one good record.
Every consuming service must dead-letter each bad record with its reason and commit past the
good one: a poison record never blocks its partition. Large bad records are tried on the same
components in process (a stuck consumer would stall the shared platform for later tests).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from clientela_reliability_harness import (
    CONSUMES,
    DEAD_LETTERS,
    GROUPS,
    WRITE,
    Rig,
    profile_by_customer,
)

from clientela.ingest.adapters.inbound.raw_topic import RawTopicHandler
from clientela.ingest.adapters.metrics import IngestMetrics
from clientela.ingest.adapters.outbound.kafka_publisher import KafkaDeadLetterPublisher
from clientela.ingest.config import IngestSettings
from clientela.ingest.wiring import build
from clientela.shared.codec import to_record
from clientela.shared.consumer import BatchProcessor, RetryPolicy
from clientela.shared.contracts import (
    ProfileErased,
    ProfileErasedEvent,
    ProfilesMerged,
    ProfilesMergedEvent,
    TopicSpec,
    TouchpointRecorded,
    topics,
)
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.settings import KafkaSettings

pytestmark = pytest.mark.e2e

OVERSIZED_BYTES = 1_100_000  # over the consumers' 1 MiB record limit
# The reason code each kind of poison must be dead-lettered with, by the shared consumer.
EXPECTED_CODE = {
    "garbage": "undecodable",
    "wrong_schema": "invalid",
    "wrong_version": "unsupported_version",
}
# Ingest reads the raw topic with its own translator (native and CloudEvents documents).
EXPECTED_RAW_CODE = {"garbage": "undecodable"}

SMALL = ("garbage", "wrong_schema", "wrong_version")
CONSUMED: list[tuple[str, TopicSpec]] = [
    (service, spec) for service, specs in CONSUMES.items() for spec in specs
]


@dataclass
class Poisoned:
    """Where the bad and good records went, per topic."""

    poison: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> kind -> offset
    values: dict[str, dict[str, bytes]] = field(default_factory=dict)  # topic -> kind -> bytes
    # (topic, partition) -> offset of the good record written after the poison
    good: dict[tuple[str, int], int] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)  # topic -> customer of good record


def _native_sale(customer: str) -> dict[str, Any]:
    return {
        "event_id": f"poison-{uuid.uuid4()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "kind": "sale",
        "channel": "branch",
        "direction": "inbound",
        "identifiers": {"customer_id": customer},
        "sale": {"order_id": f"O-{uuid.uuid4().hex[:8]}", "amount": "120.00", "currency": "EUR"},
    }


def _poisons(contract_type: str, valid: dict[str, Any] | None) -> dict[str, bytes]:
    newer = dict(valid or {"type": contract_type, "data": {}})
    newer["event_id"] = str(uuid.uuid4())
    newer["schema_version"] = 99
    return {
        "garbage": b"\x00\xff\xfenot json at all \x81\x82",
        "wrong_schema": json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "type": contract_type,
                "schema_version": 1,
                "occurred_at": datetime.now(UTC).isoformat(),
                "source": "poison",
                "data": {"nothing": "that this contract expects"},
            }
        ).encode(),
        "wrong_version": json.dumps(newer).encode(),
    }


async def _valid_record(rig: Rig, spec: TopicSpec) -> tuple[bytes | None, bytes, list[Any]]:
    for record in reversed(await rig.read_topic(spec)):
        if record.value is not None:
            return record.key, record.value, list(record.headers or ())
    raise AssertionError(f"no valid record on {spec.name} to copy")


def _ghost_event(spec: TopicSpec, run_id: str) -> ProfileErasedEvent | ProfilesMergedEvent:
    ghost = f"poison-ghost-{run_id}"
    if spec is topics.PROFILE_ERASURES:
        return ProfileErasedEvent(
            source="poison-test",
            data=ProfileErased(
                profile_id=ghost, request_id=f"req-{run_id}", erased_at=datetime.now(UTC)
            ),
        )
    return ProfilesMergedEvent(
        source="poison-test",
        data=ProfilesMerged(
            survivor_id=ghost,
            merged_id=f"{ghost}-absorbed",
            rule="poison_test",
            identifier_types=["customer_id"],
        ),
    )


async def _seed_traffic(rig: Rig, client: httpx.AsyncClient) -> None:
    """Make sure every topic holds a valid record: one sale all the way to a tier change."""
    customer = f"poison-seed-{rig.run_id}-{uuid.uuid4().hex[:6]}"
    response = await client.post(
        rig.url("ingest") + "/v1/touchpoints", json=_native_sale(customer), headers=WRITE
    )
    assert response.status_code == 200, response.text
    async with asyncio.timeout(60):
        while not (await rig.read_topic(topics.TIER_CHANGES)):
            await asyncio.sleep(1)


async def _committed(rig: Rig, service: str, tp: TopicPartition) -> int:
    consumer = await rig._consumer(GROUPS[service])
    try:
        return await consumer.committed(tp) or 0
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def poisoned(rig: Rig) -> Poisoned:
    """Write the poison and a good record after it on partition 0 of every consumed topic."""
    await asyncio.to_thread(rig.ensure_up)
    out = Poisoned()
    async with httpx.AsyncClient(timeout=10) as client:
        await _seed_traffic(rig, client)
    producer = AIOKafkaProducer(
        bootstrap_servers=rig.bootstrap, acks="all", max_request_size=4 * OVERSIZED_BYTES
    )
    await producer.start()
    try:
        for spec in {spec.name: spec for _, spec in CONSUMED}.values():
            name = rig.topic(spec)
            if spec is topics.RAW_TOUCHPOINTS:
                customer = f"poison-raw-{rig.run_id}"
                good: tuple[bytes | None, bytes, list[Any]] = (
                    customer.encode(),
                    json.dumps(_native_sale(customer)).encode(),
                    [],
                )
                valid = None
                contract_type = "touchpoint"
            elif spec is topics.TOUCHPOINTS:
                customer = f"poison-tp-{rig.run_id}"
                event = TouchpointRecorded.model_validate(
                    {"source": "poison-test", "data": _native_sale(customer)}
                )
                record = to_record(name, customer, event)
                good = (record.key, record.value or b"", record.headers)
                valid = json.loads(record.value or b"{}")
                contract_type = TouchpointRecorded.EVENT_TYPE
            elif spec in (topics.PROFILE_ERASURES, topics.PROFILE_MERGES):
                # The seed traffic neither merges nor erases anyone: a valid event about
                # profiles that do not exist is the good record (a no-op for its consumers).
                customer = ""
                event = _ghost_event(spec, rig.run_id)
                record = to_record(name, f"poison-ghost-{rig.run_id}", event)
                good = (record.key, record.value or b"", record.headers)
                valid = json.loads(record.value or b"{}")
                contract_type = event.EVENT_TYPE
            else:
                customer = ""
                good = await _valid_record(rig, spec)
                valid = json.loads(good[1])
                contract_type = str(valid["type"])
            out.poison[spec.name] = {}
            out.values[spec.name] = _poisons(contract_type, valid)
            key, value, headers = good
            for kind in SMALL:
                metadata = await producer.send_and_wait(
                    name, out.values[spec.name][kind], key=b"poison", partition=0
                )
                out.poison[spec.name][kind] = metadata.offset
            metadata = await producer.send_and_wait(
                name, value, key=key, headers=headers, partition=0
            )
            out.good[(spec.name, 0)] = metadata.offset
            out.customers[spec.name] = customer
    finally:
        await producer.stop()
    return out


async def _flows_past(
    rig: Rig, poisoned: Poisoned, service: str, spec: TopicSpec, partition: int, wait_s: float
) -> None:
    """Wait until the service committed past the good record written after the poison."""
    tp = TopicPartition(rig.topic(spec), partition)
    good_offset = poisoned.good[(spec.name, partition)]
    deadline = time.monotonic() + wait_s
    while (committed := await _committed(rig, service, tp)) <= good_offset:
        assert time.monotonic() < deadline, (
            f"{service} is stuck on {spec.name}[{partition}] at offset {committed}; the good "
            f"record is at {good_offset}\n{rig.platform.log_tail(service, 6)}"
        )
        await asyncio.sleep(0.5)


async def _dead_letters(
    rig: Rig, service: str, spec: TopicSpec, partition: int
) -> dict[int, dict[str, Any]]:
    dead: dict[int, dict[str, Any]] = {}
    for record in await rig.read_topic(DEAD_LETTERS[service]):
        letter = json.loads(record.value)["data"]
        if letter["source_topic"] == rig.topic(spec) and letter["source_partition"] == partition:
            dead[letter["source_offset"]] = letter
    return dead


def _check_letter(
    poisoned: Poisoned, spec: TopicSpec, kind: str, dead: dict[int, dict[str, Any]]
) -> None:
    offset = poisoned.poison[spec.name][kind]
    assert offset in dead, f"{kind} poison at offset {offset} was not dead-lettered"
    letter = dead[offset]
    assert letter["reason_code"], letter
    assert letter.get("reason"), letter
    expected = EXPECTED_RAW_CODE if spec is topics.RAW_TOUCHPOINTS else EXPECTED_CODE
    if kind in expected:
        assert letter["reason_code"] == expected[kind], (kind, letter["reason_code"])
    # The original bytes travel with the dead letter, so the record can be replayed.
    original = letter.get("original_value_b64")
    assert original is not None, letter
    assert base64.b64decode(original) == poisoned.values[spec.name][kind]


def _ids(pairs: list[tuple[str, TopicSpec]]) -> list[str]:
    return [f"{service}-{spec.name}" for service, spec in pairs]


@pytest.mark.parametrize(("service", "spec"), CONSUMED, ids=_ids(CONSUMED))
async def test_reliability_poison_is_dead_lettered_and_the_partition_flows(
    rig: Rig, poisoned: Poisoned, service: str, spec: TopicSpec
) -> None:
    """Garbage, a wrong schema and a newer version: dead-lettered, then the good record."""
    await _flows_past(rig, poisoned, service, spec, 0, wait_s=90)
    dead = await _dead_letters(rig, service, spec, 0)
    for kind in SMALL:
        _check_letter(poisoned, spec, kind, dead)
    good = poisoned.good[(spec.name, 0)]
    assert good not in dead, f"the good record was dead-lettered: {dead[good]}"
    if spec in (topics.RAW_TOUCHPOINTS, topics.TOUCHPOINTS) and service in ("ingest", "profile"):
        # The good record after the poison had its effect, not just its offset committed.
        async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(60):
            while (
                profile := await profile_by_customer(client, rig, poisoned.customers[spec.name])
            ) is None:
                await asyncio.sleep(0.5)
        assert profile["aggregates"]["purchase_count"] >= 1


def _record(topic: str, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, 0, 42, 1_700_000_000_000, 0, b"key", value, None, 3, len(value), ()
    )


async def _large_letter(rig: Rig, spec: TopicSpec, value: bytes) -> dict[str, Any]:
    """Return the dead letter the in-process consumer wrote for this value; check its cap."""
    digest = hashlib.sha256(value).hexdigest()
    letters = [
        json.loads(r.value)["data"]
        for r in await rig.read_topic(spec)
        if b"reliability-large" in r.value
    ]
    found = [d for d in letters if d.get("original_value_sha256") == digest]
    assert found, f"no dead letter for the {len(value)}-byte record"
    letter: dict[str, Any] = found[-1]
    assert letter["original_value_bytes"] == len(value)
    assert letter["original_value_truncated"] is True
    kept = base64.b64decode(letter["original_value_b64"])
    assert value.startswith(kept)
    assert len(kept) < len(value)
    return letter


# In process, against the rig's broker: a stuck consumer in the shared platform would stall
# every later test, and the outcome is the same component's.
@pytest.mark.parametrize("size", [800_000, OVERSIZED_BYTES], ids=["800KB-invalid", "oversized"])
async def test_reliability_large_bad_record_is_dead_lettered_by_the_shared_consumer(
    rig: Rig, size: int
) -> None:
    """The shared BatchProcessor (profile, scoring, campaign) dead-letters a large bad record."""
    dlq = f"{rig.topic(topics.PROFILE_DLQ)}"
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=rig.bootstrap))
    await publisher.start()
    handled: list[Any] = []

    async def handler(events: list[Any]) -> None:
        handled.extend(events)

    processor = BatchProcessor(
        contracts={"large": TouchpointRecorded},
        handler=handler,
        publisher=publisher,
        dead_letter_topic=dlq,
        consumer_name="reliability-large",
        retry=RetryPolicy(attempts=2, first_delay_s=0.05),
    )
    value = b'{"padding": "' + b"x" * size + b'"}'
    try:
        await processor([_record("large", value)])
    finally:
        await publisher.stop()
    assert handled == []
    letter = await _large_letter(rig, topics.PROFILE_DLQ, value)
    assert letter["reason_code"] == ("oversized" if size > 1_048_576 else "unexpected_type")


async def test_reliability_large_raw_record_is_dead_lettered_by_ingest(rig: Rig) -> None:
    """Ingest's raw-topic relay dead-letters a raw record far over its event limit."""
    settings = IngestSettings(
        kafka=KafkaSettings(bootstrap_servers=rig.bootstrap, topic_prefix=f"rel{rig.run_id}."),
        consume_raw=False,
    )
    async with build(settings) as container:
        handler = RawTopicHandler(
            container.intake,
            KafkaDeadLetterPublisher(container.kafka, rig.topic(topics.TOUCHPOINTS_DLQ)),
            IngestMetrics(),
            consumer="reliability-large",
            retry=RetryPolicy(attempts=2, first_delay_s=0.05),
        )
        await handler([_record(rig.topic(topics.RAW_TOUCHPOINTS), b"x" * 900_000)])
    letter = await _large_letter(rig, topics.TOUCHPOINTS_DLQ, b"x" * 900_000)
    assert letter["reason_code"] == "oversized"
