"""The SQL unit of work and reader against real PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.profile.adapters.outbound import tables
from clientela.profile.adapters.outbound.sql_reader import SqlProfileReader
from clientela.profile.adapters.outbound.sql_unit_of_work import SqlUnitOfWork
from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import ReceivedTouchpoint, TimelineQuery
from clientela.profile.application.queries import golden_record_by_identifier, timeline_page
from clientela.shared.codec import HEADER_ACCEPTED_AT, decode_event
from clientela.shared.contracts import ProfileChangedEvent, TouchpointKind
from clientela.shared.outbox import StagedRecord, staged_records
from clientela.shared.settings import KafkaSettings

KAFKA = KafkaSettings(topic_prefix="itest.")


async def _count(engine: AsyncEngine, table) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def _outbox(engine: AsyncEngine) -> list[StagedRecord]:
    async with engine.connect() as conn:
        return await staged_records(conn, tables.outbox)


async def _apply(engine: AsyncEngine, batch, policy, woken: list[int] | None = None):
    uow = SqlUnitOfWork(engine, KAFKA, (lambda: woken.append(1)) if woken is not None else None)
    return await handle_touchpoints(batch, uow, policy)


async def test_creates_attaches_and_stages_profile_changed(engine, tp, policy) -> None:
    first = tp(
        kind="sale", channel="web", amount="40", email="Ann@Example.com", correlation_id="c-1"
    )
    woken: list[int] = []
    await _apply(engine, [ReceivedTouchpoint.of(first, 1234)], policy, woken)
    second = tp(kind="phone_call", channel="phone", email="ann@example.com", phone="+33611111111")
    await _apply(engine, [ReceivedTouchpoint.of(second, 2000)], policy, woken)

    assert woken == [1, 1]
    assert await _count(engine, tables.profiles) == 1
    reader = SqlProfileReader(engine)
    record = await golden_record_by_identifier(
        reader, "email", " ANN@example.com", datetime.now(UTC), policy
    )
    assert record is not None
    assert record.version == 2
    assert list(record.identifiers) == [("email", "ann@example.com"), ("phone", "+33611111111")]
    assert record.aggregates.total_spend == 40
    assert record.created_at.tzinfo is not None

    rows = await _outbox(engine)
    assert [r.topic for r in rows] == ["itest.profiles.v1", "itest.profiles.v1"]
    assert rows[0].key == record.profile_id.encode()
    events = [decode_event(ProfileChangedEvent, r.value) for r in rows]
    assert [e.data.version for e in events] == [1, 2]
    assert events[0].causation_id == first.event_id
    assert events[0].correlation_id == "c-1"
    assert events[1].data.identifier_types == ["email", "phone"]
    assert (HEADER_ACCEPTED_AT, b"1234") in rows[0].headers
    assert b"ann@example.com" not in rows[1].value


async def test_same_new_person_twice_in_one_batch_is_one_profile(engine, tp, policy) -> None:
    batch = [
        ReceivedTouchpoint.of(tp(anonymous_id="anon-1")),
        ReceivedTouchpoint.of(tp(anonymous_id="anon-1", email="bob@example.com")),
        ReceivedTouchpoint.of(tp(email="bob@example.com", kind="sale")),
        ReceivedTouchpoint.of(tp(email="someone-else@example.com")),
    ]
    outcome = await _apply(engine, batch, policy)
    assert (outcome.profiles_created, outcome.profiles_changed) == (2, 2)
    assert await _count(engine, tables.profiles) == 2
    assert await _count(engine, tables.identifiers) == 3
    assert len(await _outbox(engine)) == 2
    reader = SqlProfileReader(engine)
    owner = await reader.find(("anonymous_id", "anon-1"))
    assert owner is not None
    assert owner == await reader.find(("email", "bob@example.com"))
    stored = await reader.get(owner)
    assert stored is not None
    assert stored.profile.tally.touchpoint_count == 3


async def test_redelivery_of_a_batch_changes_nothing(engine, tp, policy) -> None:
    batch = [
        ReceivedTouchpoint.of(tp(email="cy@example.com")),
        ReceivedTouchpoint.of(tp(phone="+1")),
    ]
    await _apply(engine, batch, policy)
    async with engine.connect() as conn:
        before = (await conn.execute(select(tables.profiles))).all()
    outbox_before = len(await _outbox(engine))

    woken: list[int] = []
    outcome = await _apply(engine, batch, policy, woken)
    assert (outcome.applied, outcome.duplicates) == (0, 2)
    assert woken == []
    assert len(await _outbox(engine)) == outbox_before == 2
    async with engine.connect() as conn:
        assert (await conn.execute(select(tables.profiles))).all() == before
    assert await _count(engine, tables.touchpoints) == 2


async def test_timeline_pages_newest_first_with_filters(engine, tp, policy) -> None:
    at = "2024-05-01T10:00:00+00:00"
    same_instant = [tp(email="dee@example.com", at=at, event_id=f"e-{i}") for i in range(3)]
    others = [
        tp(email="dee@example.com", kind="sale", at="2024-05-02T10:00:00+02:00", event_id="e-s"),
        tp(
            email="dee@example.com",
            kind="email",
            channel="email",
            at="2024-04-01T00:00:00Z",
            event_id="e-m",
        ),
    ]
    await _apply(engine, [ReceivedTouchpoint.of(e) for e in [*same_instant, *others]], policy)
    reader = SqlProfileReader(engine)
    profile_id = await reader.find(("email", "dee@example.com"))
    assert profile_id is not None

    seen: list[str] = []
    query = TimelineQuery(limit=2)
    while True:
        page = await timeline_page(reader, profile_id, query)
        assert page is not None
        seen += [e.event_id for e in page.items]
        if page.next_before is None:
            break
        query = TimelineQuery(
            limit=2, before=page.next_before, before_event_id=page.next_before_event_id
        )
    assert seen == ["e-s", "e-2", "e-1", "e-0", "e-m"]

    sales = await timeline_page(reader, profile_id, TimelineQuery(kind=TouchpointKind.SALE))
    assert sales is not None
    assert [e.event_id for e in sales.items] == ["e-s"]
    before = await timeline_page(
        reader, profile_id, TimelineQuery(before=datetime(2024, 5, 1, 10, tzinfo=UTC))
    )
    assert before is not None
    assert [e.event_id for e in before.items] == ["e-m"]
    assert await timeline_page(reader, "nobody", TimelineQuery()) is None
