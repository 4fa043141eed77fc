"""The batched write path and one-query lookups: round trips, stale owners, older stores."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.adapters.outbound.sql_reader import SqlProfileReader
from clientela.profile.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import (
    ConcurrentChangeError,
    ReceivedTouchpoint,
    TimelineQuery,
)
from clientela.profile.application.queries import golden_record, golden_record_by_identifier
from clientela.shared.codec import decode_event
from clientela.shared.contracts import ProfileChangedEvent, topics, utc_now
from clientela.shared.db import create_engine
from clientela.shared.outbox import staged_records
from clientela.shared.settings import DatabaseSettings, KafkaSettings

KAFKA = KafkaSettings(topic_prefix="itest.")


async def _apply(engine: AsyncEngine, policy, *events) -> SqlUnitOfWork:
    uow = SqlUnitOfWork(engine, KAFKA)
    await handle_touchpoints([ReceivedTouchpoint.of(e, 1) for e in events], uow, policy)
    return uow


async def _owner(engine: AsyncEngine, id_type: str, value: str) -> str | None:
    return await SqlProfileReader(engine).find((id_type, value))


async def test_lookups_answer_in_one_query_with_identifiers(engine, tp, policy) -> None:
    await _apply(engine, policy, tp(phone="+33611111111"))
    await _apply(engine, policy, tp(customer_id="C-1", email="ann@x.io"))
    older = await _owner(engine, "phone", "+33611111111")
    newer = await _owner(engine, "customer_id", "C-1")
    await _apply(
        engine, policy, tp(kind="sale", amount="12", phone="+33611111111", email="ann@x.io")
    )
    reader = SqlProfileReader(engine)
    by_email = await golden_record_by_identifier(reader, "email", " Ann@X.io ", utc_now(), policy)
    assert by_email is not None
    assert by_email.profile_id == older
    assert list(by_email.identifiers) == [
        ("customer_id", "C-1"),
        ("email", "ann@x.io"),
        ("phone", "+33611111111"),
    ]
    assert by_email.aggregates.first_purchase_amount == Decimal("12.0000")
    # The merged id forwards to the survivor.
    merged = await golden_record(reader, newer, utc_now(), policy)
    assert merged is not None
    assert merged.profile_id == older
    assert merged.version == by_email.version
    assert await golden_record_by_identifier(reader, "email", "no@x.io", utc_now(), policy) is None
    assert await golden_record(reader, "nobody", utc_now(), policy) is None


async def test_the_outbox_gets_the_contract_and_the_headers(engine, tp, policy) -> None:
    await _apply(engine, policy, tp(email="ann@x.io"))
    async with engine.connect() as conn:
        [row] = await staged_records(conn, tables.outbox)
    assert row.topic == KAFKA.topic(topics.PROFILES)
    event = decode_event(ProfileChangedEvent, row.value)
    assert row.key == event.data.profile_id.encode()
    headers = dict(row.headers)
    assert headers["clientela-type"] == b"profile.changed"
    assert headers["clientela-schema-version"] == str(ProfileChangedEvent.SCHEMA_VERSION).encode()
    assert headers["clientela-event-id"] == event.event_id.encode()
    assert headers["clientela-accepted-at-ms"] == b"1"


async def test_a_batch_takes_a_handful_of_round_trips(engine, tp, policy) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the batched statements are PostgreSQL's")
    first = await _apply(engine, policy, *(tp(email=f"p{n}@x.io") for n in range(50)))
    again = await _apply(
        engine,
        policy,
        *(tp(email=f"p{n}@x.io", phone=f"+3361{n:07d}") for n in range(50)),
        *(tp(email=f"new{n}@x.io") for n in range(50)),
    )
    # BEGIN, inbox, owners and locks, identifiers, profiles, timeline, outbox, COMMIT.
    assert first.round_trips <= 8
    assert again.round_trips <= 8


async def test_an_owner_that_moved_while_the_batch_waited_is_read_again(
    engine, database_settings: DatabaseSettings, tp, policy
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: nothing moves while a batch waits")
    await _apply(engine, policy, tp(email="ann@x.io", device_id="dev-1"))
    owner = await _owner(engine, "email", "ann@x.io")
    assert owner is not None
    other = create_engine(database_settings, "profile")
    try:
        mover = SqlUnitOfWork(other, KAFKA)
        async with mover:
            # Like a split: lock the owner, move an identifier to a new profile, change both.
            [held] = (await mover.profiles.lock([owner])).values()
            waiting = asyncio.create_task(
                _apply(engine, policy, tp(kind="sale", amount="5", device_id="dev-1"))
            )
            await asyncio.sleep(0.3)  # the batch has read the owners and waits for the lock
            assert not waiting.done()
            moved = held.__class__.new("moved-1", held.created_at, policy)
            moved.attach_identifier_types(["device_id"])
            held.identifier_counts["device_id"] = 0
            for side in (held, moved):
                side.mark_changed(utc_now(), policy)
            await mover.identities.reassign_keys([("device_id", "dev-1")], "moved-1")
            await mover.profiles.save([held, moved])
            await mover.commit()
        await waiting
    finally:
        await other.dispose()
    reader = SqlProfileReader(engine)
    moved_record = await reader.live("moved-1")
    assert moved_record is not None
    # The sale went to where dev-1 lives now, not to the profile it was read under.
    assert moved_record.profile.tally.purchase_count == 1
    kept = await reader.live(owner)
    assert kept is not None
    assert kept.profile.tally.purchase_count == 0


async def _change_elsewhere(engine: AsyncEngine, profile_id: str, policy) -> None:
    """Change a profile in a transaction of its own, as an admin change would (committed)."""
    other = SqlUnitOfWork(engine, KAFKA)
    async with other:
        [held] = (await other.profiles.lock([profile_id])).values()
        held.mark_changed(utc_now(), policy)
        await other.profiles.save([held])
        await other.commit()


async def test_a_profile_changed_after_it_was_read_is_not_overwritten(engine, tp, policy) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: nothing changes after a batch read it")
    await _apply(engine, policy, tp(email="ann@x.io"))
    owner = await _owner(engine, "email", "ann@x.io")
    assert owner is not None
    uow = SqlUnitOfWork(engine, KAFKA)
    async with uow:
        read = await uow.lock_owners({("email", "ann@x.io")})
        mine = read.profiles[owner]
        assert mine.version == 1
        await _change_elsewhere(engine, owner, policy)
        mine.mark_changed(utc_now(), policy)
        with pytest.raises(ConcurrentChangeError):
            await uow.profiles.save([mine])
    stored = await SqlProfileReader(engine).live(owner)
    assert stored is not None
    assert stored.profile.version == 2
    # The whole batch, retried, applies on top of the other writer's change.
    await _apply(engine, policy, tp(kind="sale", amount="5", email="ann@x.io"))
    stored = await SqlProfileReader(engine).live(owner)
    assert stored is not None
    assert (stored.profile.version, stored.profile.tally.purchase_count) == (3, 1)


async def test_a_merged_profile_changed_after_it_was_read_is_not_deleted(
    engine, tp, policy
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: nothing changes after a batch read it")
    await _apply(engine, policy, tp(email="ann@x.io"), tp(phone="+33612345678"))
    ann = await _owner(engine, "email", "ann@x.io")
    phone = await _owner(engine, "phone", "+33612345678")
    assert ann is not None
    assert phone is not None
    assert ann != phone
    uow = SqlUnitOfWork(engine, KAFKA)
    async with uow:
        await uow.lock_owners({("email", "ann@x.io"), ("phone", "+33612345678")})
        await _change_elsewhere(engine, phone, policy)
        with pytest.raises(ConcurrentChangeError):
            await uow.merge_away({phone: ann}, utc_now())
    kept = await SqlProfileReader(engine).get(phone)
    assert kept is not None
    assert kept.profile.version == 2
    # Applied as a batch, the merge is retried and carried out on the changed profile.
    await _apply(engine, policy, tp(email="ann@x.io", phone="+33612345678"))
    assert await _owner(engine, "phone", "+33612345678") == await _owner(
        engine, "email", "ann@x.io"
    )
    stored = [p for p in (ann, phone) if await SqlProfileReader(engine).get(p) is not None]
    assert len(stored) == 1


async def test_a_store_created_with_jsonb_snapshots_keeps_working(
    engine, database_settings: DatabaseSettings, tp, policy
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("jsonb is PostgreSQL's")
    schema = database_settings.resolved_schema("profile")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f'ALTER TABLE "{schema}".profiles ALTER COLUMN state TYPE jsonb USING state::jsonb'
            )
        )
    await _apply(engine, policy, tp(email="ann@x.io"))
    await _apply(engine, policy, tp(kind="sale", amount="7", email="ann@x.io"))
    record = await golden_record_by_identifier(
        SqlProfileReader(engine), "email", "ann@x.io", utc_now(), policy
    )
    assert record is not None
    assert (record.version, record.aggregates.purchase_count) == (2, 1)


async def test_kept_decoded_profiles_never_carry_a_rolled_back_change(engine, tp, policy) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the decoded profiles are kept on PostgreSQL's path only")
    await _apply(engine, policy, tp(email="kim@x.io"))
    pid = await _owner(engine, "email", "kim@x.io")
    assert pid is not None

    failing = SqlUnitOfWork(engine, KAFKA)

    async def broken(events) -> None:
        raise RuntimeError("outbox down")

    failing.stage_encoded = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await handle_touchpoints(
            [ReceivedTouchpoint.of(tp(kind="sale", amount="99", email="kim@x.io"))], failing, policy
        )
    await _apply(engine, policy, tp(email="kim@x.io"))
    # Changed behind this process's back (as another instance would): the version moves on.
    async with engine.begin() as conn:
        await conn.execute(
            tables.profiles.update()
            .where(tables.profiles.c.profile_id == pid)
            .values(version=tables.profiles.c.version + 10)
        )
    await _apply(engine, policy, tp(email="kim@x.io"))

    stored = await SqlProfileReader(engine).get(pid)
    assert stored is not None
    assert (stored.profile.tally.touchpoint_count, stored.profile.tally.purchase_count) == (3, 0)
    assert stored.profile.version == 13


async def test_the_timeline_keeps_the_record_as_delivered(engine, tp, policy) -> None:
    """The record's bytes are the stored payload (fields this version does not know stay)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores the model's encoding (its write path is not the hot one)")
    first, second = tp(customer_id="C-RAW", email="raw@x.io"), tp(customer_id="C-RAW")
    delivered = first.model_dump_json()[:-1] + ', "from_a_newer_producer": {"x": 1}}'
    received = [
        ReceivedTouchpoint.of(first, 1, delivered.encode()),
        # Not text: the model's own encoding is stored instead.
        ReceivedTouchpoint.of(second, 1, b'{"event_id": "\xff"}'),
    ]
    await handle_touchpoints(received, SqlUnitOfWork(engine, KAFKA), policy)
    async with engine.connect() as conn:
        rows = dict(
            (
                await conn.execute(
                    select(tables.touchpoints.c.event_id, tables.touchpoints.c.payload)
                )
            )
            .tuples()
            .all()
        )
    assert rows[first.event_id]["from_a_newer_producer"] == {"x": 1}
    assert rows[second.event_id] == second.model_dump(mode="json")
    pid = await _owner(engine, "customer_id", "C-RAW")
    assert pid is not None
    page = await SqlProfileReader(engine).timeline(pid, TimelineQuery(limit=10))
    assert sorted(e.event_id for e in page) == sorted([first.event_id, second.event_id])
    assert {e.event_id: e for e in page}[first.event_id] == first


async def test_the_first_read_answers_as_the_inbox_and_the_owners_read_apart(
    engine, tp, policy
) -> None:
    applied, other = tp(email="ann@x.io", phone="+33612345678"), tp(customer_id="C-9")
    await _apply(engine, policy, applied, other)
    new = tp(email="ann@x.io", device_id="dev-7")
    ids = [applied.event_id, new.event_id, new.event_id]
    keys = {("email", "ann@x.io"), ("customer_id", "C-9"), ("device_id", "dev-7")}
    apart = SqlUnitOfWork(engine, KAFKA)
    async with apart:
        fresh = await apart.fresh_events(ids)
        owners = await apart.lock_owners(keys)
    together = SqlUnitOfWork(engine, KAFKA)
    async with together:
        both = await together.fresh_and_owners(ids, keys)
    assert fresh == both[0] == {new.event_id}
    assert both[1].owners == owners.owners
    assert len(set(owners.owners.values())) == 2
    assert {p: v.version for p, v in both[1].profiles.items()} == {
        p: v.version for p, v in owners.profiles.items()
    }
    assert both[1].separated == owners.separated
    assert not both[1].stale
    if engine.dialect.name == "postgresql":
        # BEGIN, the one read, COMMIT-or-ROLLBACK: one statement where there were two.
        assert together.round_trips == apart.round_trips - 1


async def test_a_batch_without_merges_reads_once_before_it_writes(engine, tp, policy) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the batched statements are PostgreSQL's")
    await _apply(engine, policy, *(tp(email=f"p{n}@x.io") for n in range(50)))
    again = await _apply(
        engine,
        policy,
        *(tp(email=f"p{n}@x.io", phone=f"+3361{n:07d}") for n in range(50)),
        *(tp(email=f"new{n}@x.io") for n in range(50)),
    )
    # BEGIN, inbox with owners, identifiers, profiles, timeline, COMMIT (the outbox row goes
    # through the shared unit of work, uncounted).
    assert again.round_trips == 6


async def test_a_batch_with_a_redelivered_touchpoint_reads_the_owners_of_the_others_again(
    engine, tp, policy
) -> None:
    old = tp(phone="+33612345678")
    await _apply(engine, policy, old)
    phone = await _owner(engine, "phone", "+33612345678")
    assert phone is not None
    before = await SqlProfileReader(engine).get(phone)
    assert before is not None
    uow = await _apply(engine, policy, old, tp(email="ann@x.io"), tp(email="ann@x.io"))
    after = await SqlProfileReader(engine).get(phone)
    assert after is not None
    # The redelivered touchpoint changed nothing; the others made one profile of two.
    assert after.profile.version == before.profile.version == 1
    assert after.profile.tally.touchpoint_count == 1
    ann = await _owner(engine, "email", "ann@x.io")
    assert ann is not None
    assert ann != phone
    stored = await SqlProfileReader(engine).get(ann)
    assert stored is not None
    assert stored.profile.tally.touchpoint_count == 2
    if engine.dialect.name == "postgresql":
        # The owners of the batch's other identifiers are read again, apart: one more.
        assert uow.round_trips == 7
