"""Identity rules, merges, splits, erasure, consent and rebuild on PostgreSQL and SQLite."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.adapters.outbound.sql_reader import SqlProfileReader
from clientela.profile.adapters.outbound.sql_unit_of_work import SqlUnitOfWork, profile_from_row
from clientela.profile.application.admin import (
    ProfileNotFoundError,
    SplitRefusedError,
    erase_profile,
    rebuild_profiles,
    split_profile,
    update_consent,
)
from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import ReceivedTouchpoint
from clientela.profile.application.queries import golden_record, golden_record_by_identifier
from clientela.profile.domain.identity import fingerprint
from clientela.shared.codec import decode_event
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    ProfileChangedEvent,
    ProfileErasedEvent,
    ProfilesMergedEvent,
)
from clientela.shared.outbox import StagedRecord, staged_records
from clientela.shared.settings import KafkaSettings

KAFKA = KafkaSettings(topic_prefix="itest.")
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _uow(engine: AsyncEngine) -> SqlUnitOfWork:
    return SqlUnitOfWork(engine, KAFKA)


_TICKS = itertools.count()


def _clock() -> datetime:
    """Return a time that moves on at every call, so creation order is unambiguous."""
    return NOW + timedelta(seconds=next(_TICKS))


async def _apply(engine: AsyncEngine, policy, *events):
    batch = [ReceivedTouchpoint.of(e) for e in events]
    return await handle_touchpoints(batch, _uow(engine), policy, clock=_clock)


async def _owner(engine: AsyncEngine, id_type: str, value: str) -> str | None:
    return await SqlProfileReader(engine).find((id_type, value))


async def _rows(engine: AsyncEngine, table) -> list:
    async with engine.connect() as conn:
        return list((await conn.execute(select(table))).all())


async def _outbox(engine: AsyncEngine) -> list[StagedRecord]:
    async with engine.connect() as conn:
        return await staged_records(conn, tables.outbox)


async def _states(engine: AsyncEngine) -> dict[str, dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(tables.profiles))
        return {r.profile_id: profile_from_row(r).to_state() for r in rows}


async def test_merge_forwards_the_old_id_and_announces_fingerprints(engine, tp, policy) -> None:
    await _apply(engine, policy, tp(kind="sale", amount="30", email="ann@example.com"))
    older = await _owner(engine, "email", "ann@example.com")
    await _apply(engine, policy, tp(kind="phone_call", channel="phone", phone="+33611111111"))
    younger = await _owner(engine, "phone", "+33611111111")
    assert older
    assert younger
    assert older != younger

    link = tp(email="ann@example.com", phone="+33611111111", correlation_id="c-link")
    outcome = await _apply(engine, policy, link)
    assert outcome.merges == 1
    assert await _owner(engine, "phone", "+33611111111") == older

    reader = SqlProfileReader(engine)
    record = await golden_record(reader, younger, NOW, policy)
    assert record is not None
    assert record.profile_id == older
    assert record.aggregates.touchpoint_count == 3
    assert record.aggregates.total_spend == 30
    assert [k for k, _ in record.identifiers] == ["email", "phone"]

    rows = await _outbox(engine)
    [merged_row] = [r for r in rows if r.topic == "itest.profiles.merges.v1"]
    merged = decode_event(ProfilesMergedEvent, merged_row.value)
    assert (merged.data.survivor_id, merged.data.merged_id) == (older, younger)
    assert merged.data.identifier_types == ["email", "phone"]
    assert merged.data.identifier_fingerprints == [
        fingerprint(("email", "ann@example.com")),
        fingerprint(("phone", "+33611111111")),
    ]
    assert b"ann@example.com" not in merged_row.value
    assert merged.causation_id == link.event_id
    assert merged_row.key == older.encode()
    tombstones = [r for r in rows if r.value is None]
    assert [(t.topic, t.key) for t in tombstones] == [("itest.profiles.v1", younger.encode())]
    last = decode_event(ProfileChangedEvent, rows[-1].value)
    assert (last.data.profile_id, last.data.aggregates.touchpoint_count) == (older, 3)


async def test_refused_merge_is_a_conflict_and_blocked_values_link_nothing(
    engine, tp, policy
) -> None:
    await _apply(engine, policy, tp(customer_id="C-1", email="test@test.com"))
    await _apply(engine, policy, tp(customer_id="C-2", email="test@test.com"))
    first = await _owner(engine, "customer_id", "C-1")
    second = await _owner(engine, "customer_id", "C-2")
    assert first != second  # the blocked test address linked nothing
    assert await _owner(engine, "email", "test@test.com") is None

    await _apply(engine, policy, tp(customer_id="C-2", email="bob@example.com"))
    outcome = await _apply(engine, policy, tp(customer_id="C-1", email="bob@example.com"))
    assert (outcome.merges, outcome.conflicts) == (0, 1)
    [conflict] = await _rows(engine, tables.identity_conflicts)
    assert conflict.reason == "limit:customer_id"
    assert {conflict.profile_id, conflict.other_profile_id} == {first, second}
    assert conflict.identifier_fingerprints[0] == fingerprint(("customer_id", "C-1"))
    assert "bob@example.com" not in str(conflict.identifier_fingerprints)
    assert len(await _rows(engine, tables.profiles)) == 2


async def test_merges_and_their_chains_in_one_batch(engine, tp, policy) -> None:
    await _apply(engine, policy, tp(email="a@x.io"))
    await _apply(engine, policy, tp(phone="+33600000001"))
    await _apply(engine, policy, tp(device_id="dev-1"))
    a, b, c = [
        await _owner(engine, t, v)
        for t, v in [("email", "a@x.io"), ("phone", "+33600000001"), ("device_id", "dev-1")]
    ]
    outcome = await _apply(
        engine,
        policy,
        tp(phone="+33600000001", device_id="dev-1"),
        tp(email="a@x.io", phone="+33600000001"),
    )
    assert outcome.merges == 2
    assert len(await _rows(engine, tables.profiles)) == 1
    forwards = {r.merged_id: r.survivor_id for r in await _rows(engine, tables.profile_forwards)}
    assert forwards == {b: a, c: a}
    assert {r.profile_id for r in await _rows(engine, tables.touchpoints)} == {a}


async def test_split_moves_what_follows_the_identifier_and_blocks_a_remerge(
    engine, tp, policy
) -> None:
    await _apply(
        engine,
        policy,
        tp(kind="sale", amount="10", email="ann@example.com", anonymous_id="a-ann"),
        tp(anonymous_id="a-ann", at="2024-05-02T10:00:00+00:00"),
    )
    await _apply(
        engine,
        policy,
        tp(kind="sale", amount="99", phone="+33622222222", anonymous_id="a-bob"),
        tp(kind="phone_call", channel="phone", phone="+33622222222"),
    )
    ann = await _owner(engine, "email", "ann@example.com")
    wrong = tp(email="ann@example.com", phone="+33622222222")
    await _apply(engine, policy, wrong)
    assert await _owner(engine, "phone", "+33622222222") == ann

    outcome = await split_profile(
        _uow(engine), ann, [("phone", "+33 6 22 22 22 22")], policy, request_id="r-1"
    )
    bob = outcome.new_profile_id
    assert (outcome.identifiers_moved, outcome.touchpoints_moved) == (2, 2)
    assert await _owner(engine, "anonymous_id", "a-bob") == bob
    assert await _owner(engine, "anonymous_id", "a-ann") == ann
    reader = SqlProfileReader(engine)
    ann_record = await golden_record(reader, ann, NOW, policy)
    bob_record = await golden_record(reader, bob, NOW, policy)
    assert ann_record
    assert bob_record
    # The linking touchpoint's strongest identifier is Ann's email: it stays with her.
    assert ann_record.aggregates.touchpoint_count == 3
    assert ann_record.aggregates.total_spend == 10
    assert bob_record.aggregates.total_spend == 99
    assert bob_record.aggregates.counts_by_kind == {"phone_call": 1, "sale": 1}
    rows = await _outbox(engine)
    announced = [decode_event(ProfileChangedEvent, r.value) for r in rows[-2:]]
    assert {e.data.profile_id for e in announced} == {ann, bob}

    again = await _apply(engine, policy, tp(email="ann@example.com", phone="+33622222222"))
    assert (again.merges, again.conflicts) == (0, 1)
    [conflict] = await _rows(engine, tables.identity_conflicts)
    assert conflict.reason == "separated_by_admin"

    with pytest.raises(SplitRefusedError):
        await split_profile(_uow(engine), bob, [("email", "nobody@x.io")], policy, request_id="r")
    with pytest.raises(SplitRefusedError):
        await split_profile(
            _uow(engine),
            bob,
            [("phone", "+33622222222"), ("anonymous_id", "a-bob")],
            policy,
            request_id="r",
        )


async def test_erasure_removes_pii_tombstones_and_gives_a_receipt(engine, tp, policy) -> None:
    first = tp(kind="sale", email="eve@example.com", traits={"name": "Eve"})
    await _apply(engine, policy, first)
    await _apply(engine, policy, tp(phone="+33633333333"))
    eve = await _owner(engine, "email", "eve@example.com")
    other = await _owner(engine, "phone", "+33633333333")
    await _apply(engine, policy, tp(email="eve@example.com", phone="+33633333333"))

    receipt = await erase_profile(_uow(engine), other, request_id="dsr-1", clock=lambda: NOW)
    assert receipt.profile_id == eve  # the merged id was followed to the survivor
    assert (receipt.identifiers_removed, receipt.touchpoints_removed) == (2, 3)
    assert receipt.forwards_removed == 1
    for table in (tables.profiles, tables.identifiers, tables.touchpoints):
        assert await _rows(engine, table) == []
    again = await erase_profile(_uow(engine), eve, request_id="dsr-2")
    assert again == receipt

    rows = await _outbox(engine)
    assert (rows[-2].topic, rows[-2].key, rows[-2].value) == (
        "itest.profiles.v1",
        eve.encode(),
        None,
    )
    erased = decode_event(ProfileErasedEvent, rows[-1].value)
    assert rows[-1].topic == "itest.profiles.erasures.v1"
    assert (erased.data.profile_id, erased.data.request_id) == (eve, "dsr-1")

    # The timeline is the inbox: an erased touchpoint redelivered is still a no-op.
    redelivered = await _apply(engine, policy, first)
    assert (redelivered.applied, redelivered.duplicates) == (0, 1)
    assert await _owner(engine, "email", "eve@example.com") is None
    assert len(await _rows(engine, tables.erased_events)) == 3

    await _apply(engine, policy, tp(email="eve@example.com"))
    fresh = await _owner(engine, "email", "eve@example.com")
    assert fresh is not None
    assert fresh != eve
    with pytest.raises(ProfileNotFoundError):
        await erase_profile(_uow(engine), "no-such-profile", request_id="x")


async def test_consent_update_wins_by_time_and_survives_rebuild(engine, tp, policy) -> None:
    await _apply(engine, policy, tp(email="c@x.io", consent={"email": "opted_in"}))
    pid = await _owner(engine, "email", "c@x.io")
    assert pid
    await update_consent(
        _uow(engine),
        pid,
        Channel.EMAIL,
        ConsentStatus.OPTED_OUT,
        policy,
        stated_by="call-centre",
        occurred_at=datetime(2024, 5, 5, tzinfo=UTC),
        update_id="u-1",
    )
    record = await golden_record(SqlProfileReader(engine), pid, NOW, policy)
    assert record
    assert record.consent[Channel.EMAIL].status is ConsentStatus.OPTED_OUT
    assert record.consent[Channel.EMAIL].source == "call-centre"
    outcome = await rebuild_profiles(_uow(engine), policy)
    assert (outcome.profiles, outcome.changed) == (1, 0)


def _random_history(tp, seed: int) -> list:
    """Touchpoints of twelve people whose identifiers overlap, in shuffled event time."""
    rng = random.Random(seed)
    events = []
    kinds = ["web_visit", "sale", "email", "phone_call", "branch_visit", "support_case"]
    for person in range(12):
        ids = {
            "email": f"p{person}@x.io",
            "phone": f"+336000000{person:02d}",
            "anonymous_id": f"anon-{person}",
            "device_id": f"dev-{person}",
        }
        for _ in range(rng.randint(3, 6)):
            chosen = rng.sample(sorted(ids), rng.randint(1, 2))
            kind = rng.choice(kinds)
            channel = {"email": "email", "phone_call": "phone", "branch_visit": "branch"}.get(
                kind, "web"
            )
            extra = {}
            if kind == "sale":
                extra = {"amount": str(rng.randint(1, 300))}
            at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randint(0, 3000))
            event = tp(
                kind=kind,
                channel=channel,
                at=at,
                traits={"city": rng.choice(["Lyon", "Paris"])},
                consent={"email": rng.choice(["opted_in", "opted_out"])},
                **extra,
                **{k: ids[k] for k in chosen},
            )
            events.append(event)
    rng.shuffle(events)
    return events


async def test_rebuild_arrives_at_the_same_state(engine, tp, policy) -> None:
    events = _random_history(tp, seed=11)
    for start in range(0, len(events), 7):
        await _apply(engine, policy, *events[start : start + 7])
    pid = await _owner(engine, "email", "p3@x.io")
    assert pid
    owned = list((await SqlProfileReader(engine).get(pid)).identifiers)  # type: ignore[union-attr]
    if len(owned) > 1:
        await split_profile(_uow(engine), pid, [owned[-1]], policy, request_id="r-1")
    before = await _states(engine)

    outcome = await rebuild_profiles(_uow(engine), policy, page_size=5)
    assert outcome.profiles == len(before)
    assert outcome.changed == 0
    assert await _states(engine) == before


async def test_out_of_order_batches_give_the_same_golden_record(engine, tp, policy) -> None:
    events = [
        tp(kind="sale", amount="20", email="o@x.io", at="2024-03-01T10:00:00+00:00"),
        tp(kind="web_visit", email="o@x.io", traits={"tier": "gold"}, at="2024-04-01T10:00:00Z"),
        tp(kind="sale", amount="5", email="o@x.io", at="2024-01-01T10:00:00+00:00"),
    ]
    for event in reversed(events):
        await _apply(engine, policy, event)
    record = await golden_record_by_identifier(
        SqlProfileReader(engine), "email", "O@x.io ", NOW, policy
    )
    assert record is not None
    agg = record.aggregates
    assert (agg.purchase_count, agg.total_spend) == (2, 25)
    assert agg.first_purchase_at == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert agg.last_purchase_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert record.traits == {"tier": "gold"}


async def test_phone_lookup_normalises_like_ingest(engine, tp, policy) -> None:
    await _apply(engine, policy, tp(phone="+14155550123"))
    reader = SqlProfileReader(engine)
    for typed in ("(415) 555-0123", "+1 415 555 0123", "415.555.0123"):
        assert await golden_record_by_identifier(reader, "phone", typed, NOW, policy)


async def test_profiles_table_count_stays_one_per_person_for_redelivered_merges(
    engine, tp, policy
) -> None:
    await _apply(engine, policy, tp(email="r@x.io"))
    await _apply(engine, policy, tp(phone="+33644444444"))
    link = tp(email="r@x.io", phone="+33644444444")
    await _apply(engine, policy, link)
    redelivered = await _apply(engine, policy, link)
    assert redelivered.duplicates == 1
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(tables.profiles))
    assert count == 1
