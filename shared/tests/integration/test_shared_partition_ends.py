"""The end of a partition, read correctly on the embedded broker whose ListOffsets under-reports."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clientela.shared.consumer import partition_ends
from clientela.shared.contracts.topics import CleanupPolicy, TopicSpec
from clientela.shared.kafka import ensure_topics
from clientela.shared.settings import KafkaSettings


async def test_partition_ends_count_every_record_also_when_producers_batch(
    kafka_settings: KafkaSettings,
) -> None:
    spec = TopicSpec(
        name="ends.v1",
        key="none",
        partitions=3,
        cleanup_policy=CleanupPolicy.DELETE,
        contract=None,
        producer="test",
    )
    await ensure_topics(kafka_settings, [spec])
    topic = kafka_settings.topic(spec)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, linger_ms=50)
    await producer.start()
    try:
        # Partition 0: one record, then a batch of 10; partition 1: one batch of 5. The
        # embedded broker's ListOffsets answers 2 and 1 (last batch's base offset plus one).
        await producer.send_and_wait(topic, b"single", partition=0)
        sent = [await producer.send(topic, b"a%d" % i, partition=0) for i in range(10)]
        for future in sent:
            await future
        sent = [await producer.send(topic, b"b%d" % i, partition=1) for i in range(5)]
        for future in sent:
            await future
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await partition_ends(consumer, tps)
        # The consumer can be used as usual afterwards.
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        read = 0
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(*tps, timeout_ms=500)
            read += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    assert ends == {tps[0]: 11, tps[1]: 5, tps[2]: 0}
    assert read == 16
