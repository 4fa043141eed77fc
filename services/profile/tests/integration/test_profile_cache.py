"""Lookup cache (Redis and in-process): served from it, kept current by the writers, cleared
by merges, splits and erasures, and no stale fill outlives a writer's commit."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound.profile_cache import (
    CachedProfileReader,
    ProfileCacheWriter,
    cached_entries,
    identifier_key,
    identifiers_key,
    profile_key,
)
from clientela.profile.adapters.outbound.sql_reader import SqlProfileReader
from clientela.profile.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.profile.application.admin import erase_profile, split_profile, update_consent
from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import (
    ProfileCacheUnavailableError,
    ReceivedTouchpoint,
    StoredProfile,
)
from clientela.profile.domain.identity import IdentifierKey
from clientela.shared.cache import Cache, RedisCache, make_cache
from clientela.shared.contracts import Channel, ConsentStatus
from clientela.shared.settings import CacheSettings, KafkaSettings

KAFKA = KafkaSettings(topic_prefix="ctest.")
GRACE_S = 0.2


class CountingReader(SqlProfileReader):
    """The SQL reader, counting the lookups that reached the store."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.store_reads = 0

    async def by_identifier(self, key: IdentifierKey) -> StoredProfile | None:
        self.store_reads += 1
        return await super().by_identifier(key)

    async def live(self, profile_id: str) -> StoredProfile | None:
        self.store_reads += 1
        return await super().live(profile_id)


@pytest.fixture
async def cache(cache_settings: CacheSettings) -> AsyncIterator[Cache]:
    cache = make_cache(cache_settings)
    yield cache
    await cache.close()


@pytest.fixture
def store(engine: AsyncEngine) -> CountingReader:
    return CountingReader(engine)


@pytest.fixture
def reader(store: CountingReader, cache: Cache) -> CachedProfileReader:
    return CachedProfileReader(store, cache, ttl_s=60, grace_s=GRACE_S)


@pytest.fixture
async def writer(cache: Cache) -> AsyncIterator[ProfileCacheWriter]:
    writer = ProfileCacheWriter(cache, ttl_s=60, grace_s=GRACE_S)
    yield writer
    await writer.drain()


async def _apply(engine, policy, writer, *events) -> None:
    batch = [ReceivedTouchpoint.of(e) for e in events]
    await handle_touchpoints(batch, SqlUnitOfWork(engine, KAFKA), policy, cache=writer)


async def test_a_lookup_is_served_from_the_cache_and_a_change_refreshes_it(
    engine, policy, tp, store, reader, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="ann@example.com", phone="+33611111111"))
    first = await reader.by_identifier(("email", "ann@example.com"))
    assert first is not None
    again = await reader.by_identifier(("email", "ann@example.com"))
    by_id = await reader.live(first.profile.profile_id)
    assert store.store_reads == 1
    assert again is not None
    assert by_id is not None
    assert again.profile.to_json_sorted() == first.profile.to_json_sorted()
    assert by_id.identifiers == first.identifiers

    # The writer puts the new version in the cache: the next lookup does not reach the store.
    await _apply(engine, policy, writer, tp(kind="sale", amount="30", phone="+33611111111"))
    changed = await reader.by_identifier(("email", "ann@example.com"))
    assert store.store_reads == 1
    stored = await store.live(first.profile.profile_id)
    assert changed is not None
    assert stored is not None
    assert (changed.profile.version, changed.profile.tally.purchase_count) == (2, 1)
    assert changed.profile.to_json_sorted() == stored.profile.to_json_sorted()
    assert changed.identifiers == stored.identifiers


async def test_a_new_identifier_joins_the_cached_list_and_a_merge_marks_it(
    engine, policy, tp, store, reader, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="gil@example.com"))
    assert (await reader.by_identifier(("email", "gil@example.com"))) is not None
    assert store.store_reads == 1
    # The writer appends what the batch attached to the list of the version it started from.
    await _apply(engine, policy, writer, tp(email="gil@example.com", phone="+33644444444"))
    found = await reader.by_identifier(("email", "gil@example.com"))
    assert found is not None
    assert set(found.identifiers) == {("email", "gil@example.com"), ("phone", "+33644444444")}
    assert found.profile.version == 2
    assert store.store_reads == 1
    # A merge brings identifiers the writer does not know: the next lookup reads the store.
    await _apply(engine, policy, writer, tp(customer_id="C-GIL"))
    await _apply(engine, policy, writer, tp(email="gil@example.com", customer_id="C-GIL"))
    for _ in range(2):
        merged = await reader.by_identifier(("email", "gil@example.com"))
        assert merged is not None
        assert ("customer_id", "C-GIL") in merged.identifiers
    assert store.store_reads == 2


async def test_a_merge_moves_cached_lookups_to_the_survivor(
    engine, policy, tp, reader, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="bo@example.com"))
    await _apply(engine, policy, writer, tp(phone="+33622222222"))
    by_email = await reader.by_identifier(("email", "bo@example.com"))
    by_phone = await reader.by_identifier(("phone", "+33622222222"))
    assert by_email is not None
    assert by_phone is not None
    merged_id = by_phone.profile.profile_id

    await _apply(engine, policy, writer, tp(email="bo@example.com", phone="+33622222222"))
    after = await reader.by_identifier(("phone", "+33622222222"))
    assert after is not None
    assert after.profile.profile_id == by_email.profile.profile_id
    assert set(after.identifiers) == {("email", "bo@example.com"), ("phone", "+33622222222")}
    survivor = await reader.live(merged_id)
    assert survivor is not None
    assert survivor.profile.profile_id == after.profile.profile_id


async def test_a_split_and_a_consent_update_clear_the_cache(
    engine, policy, tp, reader, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="cy@example.com", phone="+33633333333"))
    before = await reader.by_identifier(("phone", "+33633333333"))
    assert before is not None
    pid = before.profile.profile_id
    outcome = await split_profile(
        SqlUnitOfWork(engine, KAFKA),
        pid,
        [("phone", "+33633333333")],
        policy,
        request_id="split-1",
        cache=writer,
    )
    moved = await reader.by_identifier(("phone", "+33633333333"))
    kept = await reader.live(pid)
    assert moved is not None
    assert kept is not None
    assert moved.profile.profile_id == outcome.new_profile_id
    assert kept.identifiers == [("email", "cy@example.com")]

    await update_consent(
        SqlUnitOfWork(engine, KAFKA),
        pid,
        Channel.EMAIL,
        ConsentStatus.OPTED_OUT,
        policy,
        stated_by="desk",
        occurred_at=datetime(2024, 6, 1, tzinfo=UTC),
        update_id="c-1",
        cache=writer,
    )
    updated = await reader.live(pid)
    assert updated is not None
    assert updated.profile.consent[Channel.EMAIL].status is ConsentStatus.OPTED_OUT


async def test_erasure_removes_the_person_from_the_cache(
    engine, policy, tp, reader, writer, cache
) -> None:
    await _apply(engine, policy, writer, tp(email="eve@example.com", traits={"name": "Eve"}))
    stored = await reader.by_identifier(("email", "eve@example.com"))
    assert stored is not None
    pid = stored.profile.profile_id
    assert await cache.get(profile_key(pid)) is not None

    await erase_profile(SqlUnitOfWork(engine, KAFKA), pid, request_id="dsr-1", cache=writer)

    assert await cache.get_many([profile_key(pid), identifiers_key(pid)]) == [None, None]
    assert await cache.get(identifier_key(("email", "eve@example.com"))) is None
    assert await reader.by_identifier(("email", "eve@example.com")) is None
    assert await reader.live(pid) is None


async def test_a_fill_racing_a_write_is_dropped_or_deleted_again(
    engine, policy, tp, store, cache, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="dan@example.com"))
    old = await store.by_identifier(("email", "dan@example.com"))
    assert old is not None
    pid = old.profile.profile_id

    class SlowReader(CountingReader):
        async def live(self, profile_id: str) -> StoredProfile | None:
            found = await super().live(profile_id)
            await asyncio.sleep(GRACE_S)  # the read took longer than half the grace period
            return found

    slow = CachedProfileReader(SlowReader(engine), cache, ttl_s=60, grace_s=GRACE_S)
    await writer.forget([pid])
    assert await slow.live(pid) is not None
    assert await cache.get(profile_key(pid)) is None

    # A quick fill of the old state landing just after the writer's first delete...
    await writer.forget([pid])
    await cache.put_newer_many(cached_entries(old), 60)
    # ...is deleted again after the grace period.
    await asyncio.sleep(GRACE_S * 2)
    assert await cache.get(profile_key(pid)) is None


async def test_a_fill_read_before_a_commit_cannot_replace_what_it_wrote(
    engine, policy, tp, store, reader, cache, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="hal@example.com"))
    old = await store.by_identifier(("email", "hal@example.com"))
    assert old is not None
    pid = old.profile.profile_id

    # Read at version 1; meanwhile a writer commits version 2 with a new identifier...
    await _apply(engine, policy, writer, tp(email="hal@example.com", phone="+33655555555"))
    # ...and then the old read is filled: its record does not land (its identifiers, alone,
    # serve no lookup).
    await cache.put_newer_many(cached_entries(old), 60)
    assert await cache.get(profile_key(pid)) is None
    found = await reader.by_identifier(("email", "hal@example.com"))
    assert found is not None
    assert found.profile.version == 2
    assert ("phone", "+33655555555") in found.identifiers


async def test_a_record_and_a_list_of_different_versions_are_not_served(
    engine, policy, tp, store, reader, cache, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="joe@example.com"))
    old = await store.by_identifier(("email", "joe@example.com"))
    assert old is not None
    await _apply(engine, policy, writer, tp(email="joe@example.com", phone="+33666666666"))
    new = await store.by_identifier(("email", "joe@example.com"))
    assert new is not None
    reads = store.store_reads
    # The list of version 1 beside the record of version 2 (say the list was evicted, then
    # filled again by a reader that read before the commit): the lookup reads the store.
    await cache.put_newer_many([cached_entries(new)[0], cached_entries(old)[1]], 60)
    found = await reader.by_identifier(("email", "joe@example.com"))
    assert found is not None
    assert ("phone", "+33666666666") in found.identifiers
    assert store.store_reads == reads + 1


async def test_a_late_refresh_deletes_what_it_would_have_put(
    engine, policy, tp, store, cache, reader, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="ida@example.com"))
    assert await reader.by_identifier(("email", "ida@example.com")) is not None
    await _apply(engine, policy, None, tp(email="ida@example.com", traits={"name": "Ida"}))
    changed = await store.by_identifier(("email", "ida@example.com"))
    assert changed is not None
    pid = changed.profile.profile_id
    # The refresh comes later than half the grace period after the commit: an erasure may
    # have made its second delete meanwhile, so no record is put, and the old one goes.
    await writer.refresh([changed.profile], {}, set(), time.monotonic() - GRACE_S)
    assert await cache.get(profile_key(pid)) is None
    found = await reader.by_identifier(("email", "ida@example.com"))
    assert found is not None
    assert found.profile.current_traits() == {"name": "Ida"}


async def test_after_concurrent_writes_and_lookups_the_cache_agrees_with_the_store(
    engine, policy, tp, store, reader, writer
) -> None:
    rng = random.Random(11)
    people = range(12)
    keys: list[IdentifierKey] = [
        key
        for n in people
        for key in (
            ("email", f"p{n}@example.com"),
            ("phone", f"+336770000{n:02d}"),
            ("customer_id", f"C-{n}"),
        )
    ]

    def event(n: int) -> object:
        # Visits by email, sometimes with a phone (attached: a cached list grows), or by
        # customer id alone (its own profile) and later with the email (a merge).
        ids = rng.choices(
            [
                {"email": f"p{n}@example.com"},
                {"email": f"p{n}@example.com", "phone": f"+336770000{n:02d}"},
                {"customer_id": f"C-{n}"},
                {"email": f"p{n}@example.com", "customer_id": f"C-{n}"},
            ],
            weights=[5, 3, 1, 1],
        )[0]
        return tp(traits={"visits": rng.randint(1, 99)}, **ids)

    async def write() -> None:
        for _ in range(2):
            await _apply(engine, policy, writer, *(event(rng.choice(people)) for _ in range(3)))

    async def read(done: asyncio.Event) -> None:
        while not done.is_set():
            await reader.by_identifier(rng.choice(keys))
            await asyncio.sleep(0)

    for _ in range(5):
        done = asyncio.Event()
        readers = [asyncio.create_task(read(done)) for _ in range(3)]
        await asyncio.gather(write(), write())
        done.set()
        await asyncio.gather(*readers)
        # Past the grace period every second delete has run: what the cache serves now must
        # be what the store holds (and these lookups fill it for the next round).
        await asyncio.sleep(GRACE_S * 2)
        for key in keys:
            cached, stored = await reader.by_identifier(key), await store.by_identifier(key)
            if stored is None:
                assert cached is None
                continue
            assert cached is not None, key
            assert cached.profile.version == stored.profile.version, key
            assert cached.profile.to_json_sorted() == stored.profile.to_json_sorted(), key
            assert set(cached.identifiers) == set(stored.identifiers), key


async def test_an_unreachable_cache_falls_back_to_the_store(
    engine, policy, tp, store, writer
) -> None:
    await _apply(engine, policy, writer, tp(email="fay@example.com"))
    down = RedisCache("redis://127.0.0.1:1/0")
    try:
        reader = CachedProfileReader(store, down, ttl_s=60, grace_s=GRACE_S)
        found = await reader.by_identifier(("email", "fay@example.com"))
        assert found is not None
        assert store.store_reads == 1
        down_writer = ProfileCacheWriter(down, ttl_s=60, grace_s=GRACE_S)
        with pytest.raises(ProfileCacheUnavailableError):
            await down_writer.forget([found.profile.profile_id])
        with pytest.raises(ProfileCacheUnavailableError):
            await down_writer.refresh([found.profile], {}, set(), time.monotonic())
    finally:
        await down.close()
