"""Thin Kafka plumbing: batch publishers, topic creation, and batch consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from clientela.shared.codec import OutgoingRecord
from clientela.shared.codec import Row as Row  # where the producers' users find it
from clientela.shared.contracts import TopicSpec
from clientela.shared.settings import KafkaSettings

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes | None, bytes | None]
RecordBatch = Sequence[Record]
BatchHandler = Callable[[RecordBatch], Awaitable[None]]


class PublishError(Exception):
    """The broker did not acknowledge every record of a batch."""


ProducerClient = Literal["aiokafka", "confluent"]


class RecordPublisher(Protocol):
    """Produces batches and returns once the broker acknowledged all of them."""

    async def start(self) -> None:
        """Connect."""
        ...

    async def stop(self) -> None:
        """Flush and disconnect."""
        ...

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Publish the records; raise PublishError unless all are acknowledged."""
        ...

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        """Publish (topic, key, value, headers) rows; raise PublishError unless all are acked."""
        ...

    async def ready(self) -> bool:
        """Return whether the broker answers."""
        ...


class AiokafkaPublisher:
    """Produces batches of records with aiokafka and returns once the broker acked them all."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect the producer."""
        s = self._settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            acks="all",
            enable_idempotence=s.enable_idempotence,
            linger_ms=s.linger_ms,
            max_batch_size=s.max_batch_bytes,
            compression_type=None if s.compression == "none" else s.compression,
            request_timeout_ms=s.request_timeout_ms,
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Send every record, then await every acknowledgement; raise PublishError on failure."""
        await self.publish_rows([(r.topic, r.key, r.value, r.headers) for r in records])

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        """Publish (topic, key, value, headers) rows; return once all are acknowledged."""
        if not rows:
            return
        producer = self._producer
        if producer is None:
            raise PublishError("publisher is not started")
        send = producer.send
        try:
            futures = [
                await send(topic, value, key=key, headers=headers)
                for topic, key, value, headers in rows
            ]
            await asyncio.gather(*futures)
        except (KafkaError, OSError) as exc:
            raise PublishError(f"broker did not acknowledge the batch: {exc!r}") from exc

    async def ready(self) -> bool:
        """Return whether the broker answers a metadata request."""
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True


class KafkaPublisher:
    """Produces batches with the configured client and returns once all are acknowledged.

    The client is `client` when given, else the settings' `producer` (CLIENTELA_KAFKA_PRODUCER).
    """

    def __init__(self, settings: KafkaSettings, *, client: ProducerClient | None = None) -> None:
        self.client: ProducerClient = client or settings.producer
        self._impl: RecordPublisher
        if self.client == "confluent":
            # Imported on demand: librdkafka loads only in processes that use it.
            from clientela.shared.confluent import ConfluentPublisher

            self._impl = ConfluentPublisher(settings)
        else:
            self._impl = AiokafkaPublisher(settings)

    async def start(self) -> None:
        """Connect the producer."""
        await self._impl.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer."""
        await self._impl.stop()

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Send every record, then await every acknowledgement; raise PublishError on failure."""
        await self._impl.publish(records)

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        """Publish (topic, key, value, headers) rows; return once all are acknowledged."""
        await self._impl.publish_rows(rows)

    async def ready(self) -> bool:
        """Return whether the broker answers a metadata request."""
        return await self._impl.ready()


async def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> None:
    """Create the given topics when missing, with their partitions and cleanup policy."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(settings.topic(spec), spec.partitions, 1, topic_configs=spec.config)
            for spec in specs
            if settings.topic(spec) not in existing
        ]
        if missing:
            # Another service may create the same topic in between; that is the goal anyway.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics: %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()


@runtime_checkable
class PreparedBatchHandler(Protocol):
    """A batch handler in two steps, so the next batch is read while this one is applied.

    `prepare` does the CPU work (decoding, dead letters chosen) and returns the coroutine
    function that applies the batch (database, publishing); the consumer prepares batch n+1
    while batch n's statements run on the database.
    """

    def prepare(self, records: RecordBatch) -> Callable[[], Coroutine[Any, Any, None]]:
        """Read a batch; return what applies it."""
        ...


Batch: TypeAlias = dict[TopicPartition, list[Record]]
Apply: TypeAlias = Callable[[], Coroutine[Any, Any, None]]


@runtime_checkable
class PartitionOwner(Protocol):
    """Told which partitions the member owns, for working state kept in memory per partition.

    `assigned` runs before any record of those partitions reaches the handler; `revoked` runs
    once the batch in hand is applied and committed (or after the consumer's stop grace, when
    that batch takes longer: its commit then fails and its records go to the next owner
    again), and no record of a revoked partition reaches the handler after it until the
    partition is assigned again.
    """

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Take ownership: load (or start empty) the partitions' working state."""
        ...

    async def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Give ownership up: drop the partitions' working state."""
        ...


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Settles the batch in hand before partitions move, and tells the owner."""

    def __init__(self, member: BatchConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._member._partitions_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._member._partitions_assigned(frozenset(assigned))


class BatchConsumer:
    """One consumer-group member: fetches batches, applies them in order, commits after each.

    A batch's offsets are committed only once its handler returned; a failed batch is sought
    back and delivered again after a pause (the handler retries transient failures itself
    first). While batch n is applied, batch n+1 is fetched and, for a PreparedBatchHandler,
    read: at most two batches are in the consumer's hands at a time. When partitions are
    revoked, the batch in hand commits first and what was fetched after it is fetched again
    once the new assignment is known, so an `owner` (PartitionOwner) can keep state per
    partition.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler | PreparedBatchHandler,
        *,
        failure_pause_s: float = 1.0,
        stop_grace_s: float = 10.0,
        owner: PartitionOwner | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._group = group_id
        self._handler = handler
        self._pause = failure_pause_s
        self._grace = stop_grace_s
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._applying = False
        self._stopping = False
        self._owner = owner
        # Bumped when partitions are revoked: a batch fetched before is dropped, not applied
        # (the partitions' next positions are their committed offsets, see assignment).
        self._generation = 0
        # Set while no batch is between its apply and its commit.
        self._settled = asyncio.Event()
        self._settled.set()

    async def start(self) -> None:
        """Join the group and start consuming in the background."""
        s = self._settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.max_poll_records,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            request_timeout_ms=s.request_timeout_ms,
        )
        self._consumer.subscribe(self._topics, listener=_Rebalance(self))
        await self._consumer.start()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"consume-{self._group}")

    async def stop(self) -> None:
        """Finish the batch being applied (within a grace period), then leave the group."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            if self._applying:
                # Let the batch in hand commit rather than be redelivered to the next member.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), timeout=self._grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self._generation += 1
        # Let the batch in hand commit, so the partitions' next owner starts after it; past the
        # grace it commits too late (its records repeat there, which consumers ignore).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout=self._grace)
        if self._owner is not None and revoked:
            await self._owner.revoked(revoked)

    async def _partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        # The client keeps no position across a rebalance (each assignment is new): every
        # assigned partition resumes from its committed offset, whatever was fetched before.
        if self._owner is not None and assigned:
            await self._owner.assigned(assigned)

    async def _fetch(self) -> Batch:
        consumer = self._consumer
        assert consumer is not None
        s = self._settings
        fetched: dict[TopicPartition, list[Record]] = await consumer.getmany(
            timeout_ms=s.poll_timeout_ms, max_records=s.max_poll_records
        )
        return fetched

    def _prepare(self, records: RecordBatch) -> Callable[[], Coroutine[Any, Any, None]]:
        handler = self._handler
        if isinstance(handler, PreparedBatchHandler):
            return handler.prepare(records)
        plain: BatchHandler = handler

        async def apply() -> None:
            await plain(records)

        return apply

    async def _next(self) -> tuple[Batch, Apply | None]:
        """Fetch until records come; return them and what applies them (None: unreadable)."""
        batch: Batch = {}
        while not batch:
            generation = self._generation
            batch = await self._fetch()
            if generation != self._generation:
                self._seek_back(batch)
                batch = {}
        return batch, self._read(batch)

    def _read(self, batch: Batch) -> Apply | None:
        try:
            return self._prepare([r for rs in batch.values() for r in rs])
        except Exception:
            log.exception("a batch could not be read; delivering it again")
            return None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The loop itself failed (not a batch: those are delivered again inside).
                # What is in hand is dropped; every partition resumes from its last commit.
                log.exception("the consumer loop failed; resuming from the committed offsets")
                await asyncio.sleep(self._pause)
                with contextlib.suppress(Exception):
                    await self._rewind()

    async def _rewind(self) -> None:
        """Seek every assigned partition to its committed offset (the earliest if none)."""
        consumer = self._consumer
        assert consumer is not None
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            if committed is None or committed < 0:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    async def _consume(self) -> None:
        batch, apply = await self._next()
        while True:
            if apply is None:
                await self._redeliver(batch)
                batch, apply = await self._next()
                continue
            following, then = await self._apply_and_fetch(batch, apply)
            if self._stopping:
                return
            if following is None:
                batch, apply = await self._next()
            else:
                batch, apply = following, then

    async def _apply_and_fetch(
        self, batch: Batch, apply: Apply
    ) -> tuple[Batch | None, Apply | None]:
        """Apply and commit a batch while fetching and reading the next; return the next.

        Returns (None, None) when nothing was fetched meanwhile or the batch failed (it is then
        sought back, and what was fetched after it dropped: the seek replays it all in order).
        """
        self._applying = True
        self._settled.clear()
        generation = self._generation
        applying = asyncio.create_task(apply())
        try:
            return await self._settle(batch, applying, generation)
        finally:
            self._done_with_batch()

    def _done_with_batch(self) -> None:
        self._applying = False
        self._settled.set()

    async def _settle(
        self, batch: Batch, applying: asyncio.Task[None], generation: int
    ) -> tuple[Batch | None, Apply | None]:
        fetching: asyncio.Task[Batch] | None = None
        following: Batch = {}
        then: Apply | None = None
        try:
            while not applying.done():
                fetching = fetching or asyncio.create_task(self._fetch())
                await asyncio.wait({applying, fetching}, return_when=asyncio.FIRST_COMPLETED)
                if fetching.done():
                    following, fetching = fetching.result(), None
                    if following:
                        then = self._read(following)
                        break
            await applying
        except asyncio.CancelledError:
            applying.cancel()
            if fetching is not None:
                fetching.cancel()
            raise
        except Exception:
            log.exception("a batch failed; delivering it again")
            if fetching is not None:
                # Awaited, not cancelled: whatever it took from the partitions is sought back.
                with contextlib.suppress(Exception):
                    following = await fetching
            self._done_with_batch()
            await self._redeliver(batch, following)
            return None, None
        await self._commit(batch)
        # Settled before waiting for the fetch in flight: a rebalance holds that fetch until
        # the revocation, which waits for this batch.
        self._done_with_batch()
        if not following and fetching is not None:
            following = await fetching
            then = self._read(following) if following else None
        if generation != self._generation:
            # Partitions were revoked meanwhile: what was fetched is not applied now but
            # fetched again, so its owner hears of the assignment first.
            self._seek_back(following)
            return None, None
        return (following, then) if following else (None, None)

    async def _commit(self, batch: Batch) -> None:
        consumer = self._consumer
        assert consumer is not None
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs}
        try:
            await consumer.commit(offsets)
        except KafkaError:
            # A rebalance took the partitions away: their next owner starts from the last
            # commit and applies these records again, which every consumer treats as a no-op.
            log.warning("offsets not committed (group rebalanced?); records will repeat")

    async def _redeliver(self, *batches: Batch) -> None:
        self._seek_back(*batches)
        await asyncio.sleep(self._pause)

    def _seek_back(self, *batches: Batch) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        # Each partition goes back to the first record fetched from it since the last commit:
        # the batches and anything fetched after them are delivered again, in order. Nothing
        # before that first record is left uncommitted, so this is the committed offset.
        first: dict[TopicPartition, int] = {}
        for batch in batches:
            for tp, rs in batch.items():
                if rs:
                    first[tp] = min(first.get(tp, rs[0].offset), rs[0].offset)
        for tp, offset in first.items():
            if tp in assigned:
                consumer.seek(tp, offset)


class Consumers:
    """The service's consumer-group members, started and stopped together."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._members: list[BatchConsumer] = []
        self._started: list[BatchConsumer] = []

    def add(self, member: BatchConsumer) -> None:
        """Register a member to start with the others."""
        self._members.append(member)

    async def start(self) -> None:
        """Start every member."""
        for member in self._members:
            await member.start()
            self._started.append(member)

    async def stop(self) -> None:
        """Stop every started member."""
        started, self._started = self._started, []
        for member in reversed(started):
            await member.stop()


def make_broker(settings: KafkaSettings) -> Consumers:
    """Build (without connecting) what runs the service's batch consumers."""
    return Consumers(settings)


def subscribe_batch(
    broker: Consumers,
    settings: KafkaSettings,
    topics: Sequence[str],
    group_id: str,
    handler: BatchHandler | PreparedBatchHandler,
    *,
    owner: PartitionOwner | None = None,
) -> None:
    """Register a batch consumer that commits offsets only after the handler succeeded.

    With an `owner`, the handler may keep working state per partition in memory: the owner
    hears which partitions the member holds (see PartitionOwner).
    """
    broker.add(BatchConsumer(settings, topics, group_id, handler, owner=owner))
