"""Publishers and batch consumers on a real broker: acks, order, redelivery, dead letters."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from clientela.shared.codec import OutgoingRecord, to_record
from clientela.shared.consumer import BatchProcessor, Incoming, RetryPolicy
from clientela.shared.contracts import (
    CleanupPolicy,
    Envelope,
    TopicSpec,
    TouchpointRecorded,
)
from clientela.shared.embedded_broker import EmbeddedBroker, free_port, port_is_free
from clientela.shared.kafka import (
    BatchConsumer,
    KafkaPublisher,
    ProducerClient,
    PublishError,
    RecordBatch,
    ensure_topics,
    make_broker,
    subscribe_batch,
)
from clientela.shared.settings import KafkaSettings


def touchpoint(n: int) -> TouchpointRecorded:
    """Return a small valid touchpoint event."""
    return TouchpointRecorded.model_validate(
        {
            "source": "test",
            "data": {
                "kind": "web_visit",
                "channel": "web",
                "direction": "inbound",
                "identifiers": {"anonymous_id": f"a{n}"},
                "web_visit": {},
            },
        }
    )


async def test_failed_batches_are_redelivered_and_bad_records_dead_lettered(
    kafka_settings: KafkaSettings,
) -> None:
    # Private topics: other suites write touchpoints to the shared prefixed ones.
    run = uuid.uuid4().hex[:6]
    topic = f"{kafka_settings.topic_prefix}touchpoints-{run}"
    dlq = f"{kafka_settings.topic_prefix}dlq-{run}"
    await ensure_topics(
        kafka_settings,
        [TopicSpec(name, "k", 1, CleanupPolicy.DELETE, None, "test") for name in (topic, dlq)],
    )
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    seen: list[str] = []
    failures = {"left": 1}

    async def handler(batch: list[Incoming[Envelope]]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database down")
        seen.extend(i.event.event_id for i in batch)

    async def processor(records: RecordBatch) -> None:
        await BatchProcessor(
            contracts={topic: TouchpointRecorded},
            handler=handler,
            publisher=publisher,
            dead_letter_topic=dlq,
            consumer_name="test",
            retry=RetryPolicy(attempts=1),
        )(records)

    events = [touchpoint(n) for n in range(5)]
    await publisher.publish(
        [to_record(topic, f"k{n}", e) for n, e in enumerate(events)]
        + [OutgoingRecord(topic, b"k", b"{not json")]
    )
    broker = make_broker(kafka_settings)
    group = f"g-{uuid.uuid4().hex[:6]}"
    subscribe_batch(broker, kafka_settings, [topic], group, processor)
    await broker.start()
    try:
        async with asyncio.timeout(30):
            while len(set(seen)) < 5:
                await asyncio.sleep(0.1)
    finally:
        await broker.stop()
    assert set(seen) == {e.event_id for e in events}

    consumer = AIOKafkaConsumer(
        dlq, bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(10):
            batch: dict[TopicPartition, list[object]] = {}
            while not batch:
                batch = await consumer.getmany(timeout_ms=500)
        letters = [json.loads(r.value) for rs in batch.values() for r in rs]  # type: ignore[attr-defined]
    finally:
        await consumer.stop()
    assert {d["data"]["reason_code"] for d in letters} == {"undecodable"}
    assert letters[0]["data"]["source_topic"] == topic
    await publisher.stop()


class Stepwise:
    """A two-step handler that records when each batch is read and applied."""

    def __init__(self, fail_first_apply: bool) -> None:
        self.log: list[tuple[str, tuple[bytes | None, ...]]] = []
        self.applied: list[bytes | None] = []
        self.fail = fail_first_apply
        self.release = asyncio.Event()

    def prepare(self, records: RecordBatch) -> Callable[[], Coroutine[Any, Any, None]]:
        values = tuple(r.value for r in records)
        self.log.append(("read", values))

        async def apply() -> None:
            self.log.append(("apply", values))
            # The first batch waits on its "database" until released: the next is read meanwhile.
            await self.release.wait()
            if self.fail:
                self.fail = False
                raise RuntimeError("database down")
            self.applied.extend(values)

        return apply


@pytest.mark.parametrize("fail_first_apply", [False, True])
async def test_the_next_batch_is_read_while_one_is_applied_and_applied_after_it(
    kafka_settings: KafkaSettings, fail_first_apply: bool
) -> None:
    # Two partitions: the second batch comes from the other one (keys k and k1 land apart), so
    # a failed first batch must also send its partition back, not only the failed one's.
    topic = f"{kafka_settings.topic_prefix}pipelined-{uuid.uuid4().hex[:6]}"
    await ensure_topics(
        kafka_settings, [TopicSpec(topic, "k", 2, CleanupPolicy.DELETE, None, "test")]
    )
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    settings = kafka_settings.model_copy(update={"max_poll_records": 3})
    await publisher.publish([OutgoingRecord(topic, b"k", str(n).encode()) for n in range(3)])
    handler = Stepwise(fail_first_apply)
    consumers = make_broker(settings)
    subscribe_batch(consumers, settings, [topic], f"g-{uuid.uuid4().hex[:6]}", handler)
    await consumers.start()
    try:
        async with asyncio.timeout(30):
            while not handler.log:
                await asyncio.sleep(0.05)
            await publisher.publish([OutgoingRecord(topic, b"k1", str(n).encode()) for n in (3, 4)])
            while len(handler.log) < 3:
                await asyncio.sleep(0.05)
            handler.release.set()
            while len(handler.applied) < 5:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # nothing more arrives
    finally:
        await consumers.stop()
        await publisher.stop()
    first, second = (b"0", b"1", b"2"), (b"3", b"4")
    # Batch two was read before batch one's apply returned.
    assert handler.log[:3] == [("read", first), ("apply", first), ("read", second)]
    # Applied exactly once each, in order within each partition; a failed batch is read again
    # with what was fetched after it.
    assert sorted(handler.applied) == [*first, *second]
    assert [v for v in handler.applied if v in first] == list(first)
    assert [v for v in handler.applied if v in second] == list(second)
    if fail_first_apply:
        # The failed batch's records were read again after the failure.
        assert any(kind == "read" and b"0" in values for kind, values in handler.log[3:])


async def test_a_failure_of_the_loop_itself_resumes_from_the_committed_offsets(
    kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"{kafka_settings.topic_prefix}resume-{uuid.uuid4().hex[:6]}"
    await ensure_topics(
        kafka_settings, [TopicSpec(topic, "k", 1, CleanupPolicy.DELETE, None, "test")]
    )
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    await publisher.publish([OutgoingRecord(topic, b"k", str(n).encode()) for n in range(3)])
    applied: list[bytes | None] = []

    async def handler(records: RecordBatch) -> None:
        applied.extend(r.value for r in records)

    member = BatchConsumer(kafka_settings, [topic], f"g-{uuid.uuid4().hex[:6]}", handler)
    commit = member._commit
    failures = {"left": 1}

    async def failing_commit(batch: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("not a broker error")
        await commit(batch)

    monkeypatch.setattr(member, "_commit", failing_commit)
    await member.start()
    try:
        async with asyncio.timeout(30):
            while applied.count(b"2") < 2:
                await asyncio.sleep(0.05)
            await publisher.publish([OutgoingRecord(topic, b"k", b"3")])
            while b"3" not in applied:
                await asyncio.sleep(0.05)
    finally:
        await member.stop()
        await publisher.stop()
    # The batch whose commit failed was applied again (never skipped), then the loop went on.
    assert applied[:6] == [b"0", b"1", b"2", b"0", b"1", b"2"]
    assert applied[-1] == b"3"


def test_embedded_broker_starts_on_a_free_port_and_stops() -> None:
    with EmbeddedBroker(prefer_port=0) as broker:
        assert broker.running
        host, port = broker.bootstrap_servers.split(":")
        assert not port_is_free(host, int(port))
    assert not broker.running
    assert port_is_free(host, int(port))


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
async def test_each_client_delivers_rows_in_order_with_headers_and_tombstones(
    kafka_settings: KafkaSettings, client: ProducerClient
) -> None:
    topic = f"{kafka_settings.topic_prefix}pub-{uuid.uuid4().hex[:6]}"
    publisher = KafkaPublisher(kafka_settings, client=client)
    assert publisher.client == client
    await publisher.start()
    try:
        assert await publisher.ready()
        await publisher.publish_rows(
            [(topic, b"k", f"{i}".encode(), [("n", str(i).encode())]) for i in range(300)]
        )
        await publisher.publish([OutgoingRecord(topic, b"k", None, [("h", b"\x00\xff")])])
        await publisher.publish([])
    finally:
        await publisher.stop()
    assert not await publisher.ready()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        seen: list[tuple[bytes | None, tuple[tuple[str, bytes], ...]]] = []
        async with asyncio.timeout(20):
            while len(seen) < 301:
                batch = await consumer.getmany(timeout_ms=500)
                seen.extend((r.value, tuple(r.headers)) for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    assert seen == [(f"{i}".encode(), (("n", str(i).encode()),)) for i in range(300)] + [
        (None, (("h", b"\x00\xff"),))
    ]


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
async def test_a_publisher_not_started_refuses_to_publish(
    kafka_settings: KafkaSettings, client: ProducerClient
) -> None:
    publisher = KafkaPublisher(kafka_settings, client=client)
    assert not await publisher.ready()
    with pytest.raises(PublishError, match="not started"):
        await publisher.publish([OutgoingRecord("t", b"k", b"v")])


async def test_confluent_reports_records_a_broker_never_acknowledged() -> None:
    silent = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_port()}", request_timeout_ms=1_000, linger_ms=0
    )
    publisher = KafkaPublisher(silent, client="confluent")
    await publisher.start()
    try:
        assert not await publisher.ready()
        with pytest.raises(PublishError, match="acknowledge"):
            await publisher.publish_rows([("t", b"k", b"v", []), ("t", b"k", b"w", [])])
    finally:
        await publisher.stop()


def test_the_client_is_chosen_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLIENTELA_KAFKA_PRODUCER", raising=False)
    assert KafkaPublisher(KafkaSettings()).client == "confluent"
    monkeypatch.setenv("CLIENTELA_KAFKA_PRODUCER", "aiokafka")
    assert KafkaPublisher(KafkaSettings()).client == "aiokafka"
    assert KafkaPublisher(KafkaSettings(), client="confluent").client == "confluent"


async def test_both_clients_put_a_key_on_the_same_partition(kafka_settings: KafkaSettings) -> None:
    spec = TopicSpec(f"part-{uuid.uuid4().hex[:6]}", "k", 6, CleanupPolicy.COMPACT, None, "test")
    await ensure_topics(kafka_settings, [spec])
    topic = kafka_settings.topic(spec)
    keys = [f"customer-{i}".encode() for i in range(40)]
    for client in ("aiokafka", "confluent"):
        publisher = KafkaPublisher(kafka_settings, client=client)
        await publisher.start()
        try:
            await publisher.publish_rows([(topic, k, client.encode(), []) for k in keys])
        finally:
            await publisher.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    placed: dict[bytes, dict[bytes | None, int]] = {}
    try:
        async with asyncio.timeout(20):
            while sum(len(p) for p in placed.values()) < 2 * len(keys):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        assert r.key is not None
                        placed.setdefault(r.key, {})[r.value] = r.partition
    finally:
        await consumer.stop()
    assert all(p[b"aiokafka"] == p[b"confluent"] for p in placed.values())
    assert len({p[b"aiokafka"] for p in placed.values()}) > 1


class Owner:
    """Records what a member is told it owns, and any record it is handed outside of that."""

    def __init__(self, name: str, log: list[tuple[str, str, frozenset[TopicPartition]]]) -> None:
        self.name = name
        self.log = log
        self.owned: set[TopicPartition] = set()
        self.applying = False
        self.violations: list[str] = []
        self.applied: list[bytes] = []

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self.log.append((self.name, "assigned", partitions))
        self.owned |= partitions

    async def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        if self.applying:
            self.violations.append("revoked while a batch was being applied")
        self.log.append((self.name, "revoked", partitions))
        self.owned -= partitions

    async def __call__(self, records: RecordBatch) -> None:
        self.applying = True
        try:
            for r in records:
                if TopicPartition(r.topic, r.partition) not in self.owned:
                    self.violations.append(f"handed {r.topic}/{r.partition} without owning it")
            # An apply that takes a while, so that a rebalance meets one in flight.
            await asyncio.sleep(0.03)
            self.applied.extend(r.value for r in records if r.value is not None)
        finally:
            self.applying = False


async def test_members_hear_of_their_partitions_and_are_handed_only_what_they_own(
    kafka_settings: KafkaSettings,
) -> None:
    topic = f"{kafka_settings.topic_prefix}owned-{uuid.uuid4().hex[:6]}"
    await ensure_topics(
        kafka_settings, [TopicSpec(topic, "k", 4, CleanupPolicy.DELETE, None, "test")]
    )
    publisher = KafkaPublisher(kafka_settings)
    await publisher.start()
    settings = kafka_settings.model_copy(update={"max_poll_records": 10})
    group = f"g-{uuid.uuid4().hex[:6]}"
    log: list[tuple[str, str, frozenset[TopicPartition]]] = []
    first, second = Owner("a", log), Owner("b", log)
    members = [
        BatchConsumer(settings, [topic], group, owner, owner=owner) for owner in (first, second)
    ]

    async def publish(numbers: range) -> None:
        await publisher.publish(
            [OutgoingRecord(topic, f"k{n}".encode(), str(n).encode()) for n in numbers]
        )

    await publish(range(600))
    await members[0].start()
    try:
        async with asyncio.timeout(60):
            while len(first.applied) < 50:
                await asyncio.sleep(0.01)
            # A second member joins while the first is mid-stream: partitions move.
            await members[1].start()
            await publish(range(600, 800))
            expected = {str(n).encode() for n in range(800)}
            while not expected <= {*first.applied, *second.applied} or not second.owned:
                await asyncio.sleep(0.05)
        owned = (set(first.owned), set(second.owned))
    finally:
        for member in members:
            await member.stop()
        await publisher.stop()
    assert first.violations == []
    assert second.violations == []
    # The first member heard of its partitions before its first batch, gave some up to the
    # second, which heard of them before it was handed any.
    assert log[0] == ("a", "assigned", frozenset(TopicPartition(topic, p) for p in range(4)))
    assert any(name == "a" and kind == "revoked" for name, kind, _ in log)
    assert owned[0]
    assert owned[1]
    assert not owned[0] & owned[1]
    assert owned[0] | owned[1] == {TopicPartition(topic, p) for p in range(4)}
