"""The bare baseline hop: consume raw bytes from one topic and produce them to the next.

Pipelined, as fast as the hardware allows for one hop: the next batch is fetched while the
previous ones wait for their acknowledgements, and a batch's offsets are committed once it and
every batch before it were acknowledged (the same guarantee the services give). It produces with
the services' own publisher (`KafkaPublisher`), so the baseline and the pipeline pay the same
per-record produce cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from clientela.shared.kafka import KafkaPublisher
from clientela.shared.settings import KafkaSettings

# Batches in flight at once: enough to hide one acknowledgement round trip behind the fetches.
IN_FLIGHT = 4


async def relay(bootstrap: str, source: str, target: str, group: str) -> None:
    """Relay records with no processing until SIGTERM; commit after each acknowledged batch."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
    )
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=bootstrap))
    await consumer.start()
    await publisher.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    pending: asyncio.Queue[tuple[asyncio.Task[None], dict[TopicPartition, int]] | None] = (
        asyncio.Queue(maxsize=IN_FLIGHT)
    )

    async def commit_in_order() -> None:
        while (item := await pending.get()) is not None:
            sent, ends = item
            await sent
            await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})

    committer = asyncio.create_task(commit_in_order())
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            rows = [
                (target, r.key, r.value, list(r.headers))
                for records in batches.values()
                for r in records
            ]
            if rows:
                ends = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
                await pending.put((asyncio.create_task(publisher.publish_rows(rows)), ends))
            if committer.done():
                committer.result()  # a failed acknowledgement stops the relay
    finally:
        if committer.done():
            with contextlib.suppress(Exception):
                committer.result()
        else:
            await pending.put(None)
            with contextlib.suppress(Exception):
                await committer
        await consumer.stop()
        await publisher.stop()


def main() -> None:
    """Command line: relay one topic into another."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(relay(args.bootstrap, args.source, args.target, args.group))


if __name__ == "__main__":
    main()
