"""End to end through the real broker: tier and profile changes in, a campaign message out."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from clientela.campaign.config import CampaignSettings
from clientela.campaign.wiring import Container, build
from clientela.shared.codec import (
    HEADER_ACCEPTED_AT,
    HEADER_REFERS_TO_MESSAGE,
    OutgoingRecord,
    header,
    to_record,
)
from clientela.shared.contracts import (
    CampaignMessageEvent,
    Channel,
    ConsentStatus,
    DeadLetterEvent,
    Lifecycle,
    MessagePurpose,
    Segment,
    Tier,
    TierMove,
)
from clientela.shared.contracts.topics import (
    CAMPAIGN_DLQ,
    CAMPAIGN_MESSAGES,
    PROFILE_ERASURES,
    PROFILE_MERGES,
    PROFILES,
    SCORES,
    TIER_CHANGES,
    TOUCHPOINTS,
)
from clientela.shared.kafka import KafkaPublisher
from clientela.shared.settings import DatabaseSettings, KafkaSettings
from clientela.shared.tracing import TraceContext

CAMPAIGNS = """
[[campaigns]]
id = "welcome-to-a"
name = "Welcome"
trigger = ["tier_entered", "tier_up"]
to_tiers = ["A"]
lifecycles = ["customer"]
purpose = "loyalty"
channels = ["phone", "branch", "email", "sms"]
holdout_share = 0
variants = { A = "welcome-a" }

[[campaigns]]
id = "prospect-acquisition"
name = "Acquire"
trigger = "tier_entered"
to_tiers = ["P"]
lifecycles = ["prospect"]
purpose = "acquisition"
channels = ["email"]
holdout_share = 0
variants = { P = "acquire-p" }
"""


@pytest.fixture(scope="module")
def kafka(kafka_settings: KafkaSettings) -> KafkaSettings:
    """Return broker settings with topics private to this module."""
    return kafka_settings.model_copy(
        update={"topic_prefix": f"{kafka_settings.topic_prefix}campaign{uuid.uuid4().hex[:6]}."}
    )


@pytest.fixture(scope="module")
async def service(
    kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Container]:
    """Run the consumer and the outbox relay once for the whole module."""
    directory: Path = tmp_path_factory.mktemp("campaign-kafka")
    campaigns_file = directory / "campaigns.toml"
    campaigns_file.write_text(CAMPAIGNS)
    settings = CampaignSettings(
        kafka=kafka,
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{directory / 'campaign.db'}"),
        campaigns_file=campaigns_file,
        global_holdout_share=0,
        group_id=f"clientela-campaign-{uuid.uuid4().hex[:8]}",
    )
    async with build(settings) as container:
        yield container


@pytest.fixture(scope="module")
async def publisher(kafka: KafkaSettings) -> AsyncIterator[KafkaPublisher]:
    producer = KafkaPublisher(kafka)
    await producer.start()
    yield producer
    await producer.stop()


async def read_until(
    kafka: KafkaSettings, topic: str, wanted: int, match, timeout_s: float = 30
) -> list:
    """Read a topic from the start until `wanted` records satisfy `match`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < wanted:
                batches = await consumer.getmany(timeout_ms=500)
                found += [r for records in batches.values() for r in records if match(r)]
    finally:
        await consumer.stop()
    return found


async def test_a_tier_move_becomes_a_campaign_message_once_the_contact_arrives(
    service: Container, publisher: KafkaPublisher, kafka: KafkaSettings, events
) -> None:
    pid = f"kafka-{uuid.uuid4().hex[:8]}"
    tier = events.tier(pid, 2, correlation_id="chain-k")
    traced = TraceContext.new()
    await publisher.publish(
        [to_record(kafka.topic(TIER_CHANGES), pid, tier, 1_700_000_000_123, trace=traced)]
    )
    await publisher.publish(
        [
            to_record(kafka.topic(PROFILES), pid, events.profile(pid, 1)),
            to_record(
                kafka.topic(PROFILES), pid, events.profile(pid, 2, reachable=(Channel.EMAIL,))
            ),
            # An erased profile leaves a tombstone on the compacted topic: not an error.
            OutgoingRecord(kafka.topic(PROFILES), pid.encode(), None),
        ]
    )

    (record,) = await read_until(
        kafka, kafka.topic(CAMPAIGN_MESSAGES), 1, lambda r: r.key == pid.encode()
    )

    message = CampaignMessageEvent.model_validate_json(record.value)
    assert message.causation_id == tier.event_id
    assert message.correlation_id == "chain-k"
    assert message.data.message_id == message.event_id
    assert message.data.channel is Channel.EMAIL
    assert message.data.variant == "welcome-a"
    assert message.data.purpose is MessagePurpose.LOYALTY
    assert header(record.headers, HEADER_ACCEPTED_AT) == b"1700000000123"
    # Decided in a later batch (once the contact arrived), the message continues the trace.
    carried = TraceContext.from_headers(record.headers)
    assert carried is not None
    assert carried.trace_id == traced.trace_id


async def test_an_opted_in_prospect_gets_an_acquisition_email(
    service: Container, publisher: KafkaPublisher, kafka: KafkaSettings, events
) -> None:
    pid = f"kafka-{uuid.uuid4().hex[:8]}"
    profile = events.profile(
        pid,
        1,
        lifecycle=Lifecycle.PROSPECT,
        reachable=(Channel.EMAIL,),
        consent={Channel.EMAIL: ConsentStatus.OPTED_IN},
    )
    tier = events.tier(
        pid, 1, move=TierMove.ENTERED, from_tier=None, to_tier=Tier.P, lifecycle=Lifecycle.PROSPECT
    )
    await publisher.publish(
        [
            to_record(kafka.topic(PROFILES), pid, profile),
            to_record(kafka.topic(TIER_CHANGES), pid, tier),
        ]
    )

    (record,) = await read_until(
        kafka, kafka.topic(CAMPAIGN_MESSAGES), 1, lambda r: r.key == pid.encode()
    )

    message = CampaignMessageEvent.model_validate_json(record.value)
    assert message.data.purpose is MessagePurpose.ACQUISITION
    assert message.data.channel is Channel.EMAIL
    assert message.correlation_id == tier.event_id


@pytest.mark.parametrize(
    "mark",
    [[], [(HEADER_REFERS_TO_MESSAGE, b"1")]],
    ids=["without-the-header", "marked-as-naming-a-message"],
)
async def test_a_click_on_touchpoints_counts_as_a_response(
    service: Container, publisher: KafkaPublisher, kafka: KafkaSettings, events, mark
) -> None:
    pid = f"kafka-{uuid.uuid4().hex[:8]}"
    at = ("welcome-to-a", Channel.EMAIL, Tier.A, Segment.RELATIONAL.value)
    # The campaign's learning cell is shared by every case of this module: count from here.
    known = (await service.read_model.evidence("welcome-to-a")).get(at)
    before = (known.sends, known.responses) if known is not None else (0, 0)
    await publisher.publish(
        [
            to_record(kafka.topic(SCORES), pid, events.scores(pid, 1, segment=Segment.RELATIONAL)),
            to_record(
                kafka.topic(PROFILES), pid, events.profile(pid, 1, reachable=(Channel.EMAIL,))
            ),
            to_record(kafka.topic(TIER_CHANGES), pid, events.tier(pid, 1)),
        ]
    )
    (record,) = await read_until(
        kafka, kafka.topic(CAMPAIGN_MESSAGES), 1, lambda r: r.key == pid.encode()
    )
    message = CampaignMessageEvent.model_validate_json(record.value)
    click = events.touch(message.data.message_id, at=message.occurred_at, clicked=True)

    sent = to_record(kafka.topic(TOUCHPOINTS), "identity-key", click)
    await publisher.publish([replace(sent, headers=[*sent.headers, *mark])])

    async with asyncio.timeout(30):
        while True:
            (decision,) = await service.read_model.decisions_for_profile(pid, 5)
            if decision.responded_at is not None:
                break
            await asyncio.sleep(0.2)
    cell = (await service.read_model.evidence("welcome-to-a"))[at]
    assert (cell.sends, cell.responses) == (before[0] + 1, before[1] + 1)


async def test_an_undecodable_record_goes_to_the_dead_letter_topic(
    service: Container, publisher: KafkaPublisher, kafka: KafkaSettings
) -> None:
    key = f"bad-{uuid.uuid4().hex[:8]}".encode()
    key_b64 = base64.b64encode(key).decode()
    await publisher.publish([OutgoingRecord(kafka.topic(TIER_CHANGES), key, b"{not json")])

    (record,) = await read_until(
        kafka,
        kafka.topic(CAMPAIGN_DLQ),
        1,
        lambda r: DeadLetterEvent.model_validate_json(r.value).data.original_key_b64 == key_b64,
    )

    dead = DeadLetterEvent.model_validate_json(record.value)
    assert dead.data.reason_code == "undecodable"
    assert dead.data.source_topic == kafka.topic(TIER_CHANGES)


@pytest.mark.parametrize(
    ("kind", "value", "code"),
    [
        ("garbage", b"\x00\xffnot json", "undecodable"),
        (
            "wrong_schema",
            b'{"event_id": "x", "type": "touchpoint.recorded", "data": {}}',
            "invalid",
        ),
    ],
)
async def test_a_bad_touchpoint_is_dead_lettered_though_touchpoints_are_read_lightly(
    service: Container, publisher: KafkaPublisher, kafka: KafkaSettings, kind, value, code
) -> None:
    key = f"bad-{kind}-{uuid.uuid4().hex[:8]}".encode()
    key_b64 = base64.b64encode(key).decode()
    await publisher.publish([OutgoingRecord(kafka.topic(TOUCHPOINTS), key, value)])

    (record,) = await read_until(
        kafka,
        kafka.topic(CAMPAIGN_DLQ),
        1,
        lambda r: DeadLetterEvent.model_validate_json(r.value).data.original_key_b64 == key_b64,
    )

    assert DeadLetterEvent.model_validate_json(record.value).data.reason_code == code


async def test_a_touchpoint_marked_as_naming_no_message_is_skipped_undecoded(
    service: Container, publisher: KafkaPublisher, kafka: KafkaSettings
) -> None:
    # Neither value is JSON: only a record that is decoded can reach the dead-letter topic.
    key = f"skip-{uuid.uuid4().hex[:8]}".encode()
    marked, unmarked = b"{marked, not json", b"{unmarked, not json"
    topic = kafka.topic(TOUCHPOINTS)
    await publisher.publish(
        [
            OutgoingRecord(topic, key, marked, [(HEADER_REFERS_TO_MESSAGE, b"0")]),
            OutgoingRecord(topic, key, unmarked),
        ]
    )

    def original(r) -> bytes:
        return base64.b64decode(
            DeadLetterEvent.model_validate_json(r.value).data.original_value_b64 or ""
        )

    # One key, one partition, read in order: a dead letter of the marked record would come first.
    found = await read_until(
        kafka, kafka.topic(CAMPAIGN_DLQ), 1, lambda r: original(r) in (marked, unmarked)
    )
    assert [original(r) for r in found] == [unmarked]


async def test_erasures_and_merges_arrive_on_their_topics(
    service: Container, publisher: KafkaPublisher, kafka: KafkaSettings, events
) -> None:
    erased, survivor, absorbed = (f"kafka-{uuid.uuid4().hex[:8]}" for _ in range(3))
    await publisher.publish(
        [
            to_record(kafka.topic(PROFILES), p, events.profile(p, 1, reachable=(Channel.EMAIL,)))
            for p in (erased, absorbed)
        ]
        + [to_record(kafka.topic(TIER_CHANGES), p, events.tier(p, 1)) for p in (erased, absorbed)]
    )
    await read_until(
        kafka,
        kafka.topic(CAMPAIGN_MESSAGES),
        2,
        lambda r: r.key in (erased.encode(), absorbed.encode()),
    )

    await publisher.publish(
        [
            to_record(kafka.topic(PROFILE_ERASURES), erased, events.erased(erased)),
            to_record(kafka.topic(PROFILE_MERGES), survivor, events.merged(survivor, absorbed)),
        ]
    )

    async with asyncio.timeout(30):
        while await service.read_model.decisions_for_profile(
            erased, 5
        ) or not await service.read_model.decisions_for_profile(survivor, 5):
            await asyncio.sleep(0.2)
    assert await service.read_model.decisions_for_profile(absorbed, 5) == []
