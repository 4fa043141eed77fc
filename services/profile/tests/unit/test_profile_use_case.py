"""Unit tests of handle_touchpoints against an in-memory unit of work."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from clientela.profile.application.handle_touchpoints import handle_touchpoints, new_profile_id
from clientela.profile.application.ports import LockedOwners, ReceivedTouchpoint
from clientela.profile.domain.identity import IdentifierClaim, IdentifierKey
from clientela.profile.domain.profile import Profile
from clientela.shared.codec import OutgoingEvent, decode_event, encode_event
from clientela.shared.contracts import (
    ProfileChangedEvent,
    ProfilesMergedEvent,
    derived_event_id,
    topics,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)


class FakeUnitOfWork:
    """Implements the UnitOfWork port with dicts; writes apply only on commit."""

    def __init__(self) -> None:
        self.erased: set[str] = set()
        self.owners: dict[IdentifierKey, str] = {}
        self.stored: dict[str, dict] = {}
        self.timeline_rows: dict[str, str] = {}
        self.forwards: dict[str, str] = {}
        self.conflicts: list = []
        self.published: list[OutgoingEvent] = []
        self.tombstones: list[str] = []
        self.commits = 0
        self.pending: list[Callable[[], None]] = []
        self.identities = _Identities(self)
        self.profiles = _Profiles(self)
        self.timeline = _Timeline(self)

    async def __aenter__(self) -> FakeUnitOfWork:
        self.pending = []
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.pending = []

    async def commit(self) -> None:
        for apply in self.pending:
            apply()
        self.pending = []
        self.commits += 1

    async def fresh_events(self, event_ids):
        # The timeline is the inbox; erased touchpoints' ids are kept apart.
        return set(event_ids) - self.timeline_rows.keys() - self.erased

    async def lock_owners(self, keys):
        owners = await self.identities.owners(keys)
        return LockedOwners(owners, await self.profiles.lock(set(owners.values())), set())

    async def fresh_and_owners(self, event_ids, keys):
        locked = await self.lock_owners(keys) if keys else LockedOwners({}, {}, set())
        return await self.fresh_events(event_ids), locked

    async def merge_away(self, moves, at) -> None:
        await self.identities.reassign_profiles(moves)
        await self.timeline.reassign_profiles(moves)
        await self.profiles.delete(sorted(moves))
        await self.profiles.forward(moves, at)

    async def stage(self, events) -> None:
        self.pending.append(lambda: self.published.extend(events))

    async def stage_encoded(self, events) -> None:
        # Decoding with the contract checks every event the use case encodes.
        contracts = {c.EVENT_TYPE: c for c in (ProfileChangedEvent, ProfilesMergedEvent)}
        decoded = [
            OutgoingEvent(
                e.topic, e.key, decode_event(contracts[e.event_type], e.value), e.accepted_at_ms
            )
            for e in events
            if e.value is not None
        ]
        tombstones = [e.key for e in events if e.value is None]
        self.pending.append(lambda: self.published.extend(decoded))
        self.pending.append(lambda: self.tombstones.extend(tombstones))

    async def stage_tombstones(self, topic, keys) -> None:
        self.pending.append(lambda: self.tombstones.extend(keys))


class _Identities:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def owners(self, keys):
        return {k: self.uow.owners[k] for k in keys if k in self.uow.owners}

    async def attach(self, claims: list[IdentifierClaim], recheck=()):
        def apply() -> None:
            for c in claims:
                self.uow.owners.setdefault((c.id_type, c.id_value), c.profile_id)

        self.uow.pending.append(apply)
        return set()

    async def reassign_profiles(self, moves) -> None:
        def apply() -> None:
            for key, owner in list(self.uow.owners.items()):
                self.uow.owners[key] = moves.get(owner, owner)

        self.uow.pending.append(apply)

    async def record_conflicts(self, conflicts) -> None:
        self.uow.pending.append(lambda: self.uow.conflicts.extend(conflicts))


class _Profiles:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def lock(self, profile_ids):
        return {
            pid: Profile.from_state(
                pid, s["version"], s["created_at"], NOW, s["lifecycle"], s["state"]
            )
            for pid in profile_ids
            if (s := self.uow.stored.get(pid))
        }

    async def save(self, profiles) -> None:
        rows = {
            p.profile_id: {
                "version": p.version,
                "created_at": p.created_at,
                "lifecycle": p.stage.value,
                "state": p.to_state(),
            }
            for p in profiles
        }
        self.uow.pending.append(lambda: self.uow.stored.update(rows))

    async def delete(self, profile_ids) -> None:
        def apply() -> None:
            for pid in profile_ids:
                self.uow.stored.pop(pid, None)

        self.uow.pending.append(apply)

    async def forward(self, moves, at) -> None:
        self.uow.pending.append(lambda: self.uow.forwards.update(moves))


class _Timeline:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def add(self, entries) -> None:
        rows = {received.event.event_id: pid for pid, received in entries}
        self.uow.pending.append(lambda: self.uow.timeline_rows.update(rows))

    async def reassign_profiles(self, moves) -> None:
        def apply() -> None:
            for event_id, pid in list(self.uow.timeline_rows.items()):
                self.uow.timeline_rows[event_id] = moves.get(pid, pid)

        self.uow.pending.append(apply)


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def _ids():
    counter = itertools.count(1)
    return lambda: f"p-{next(counter)}"


async def _handle(batch, uow, policy, ids=None):
    return await handle_touchpoints(
        batch, uow, policy, clock=lambda: NOW, new_profile_id=ids or _ids(), source="profile"
    )


async def test_new_person_gets_a_profile_and_one_event(uow, tp, policy) -> None:
    first = tp(kind="web_visit", email="ann@example.com", correlation_id="corr-1")
    second = tp(kind="sale", amount="20", email="ann@example.com", phone="+33600000000")
    batch = [ReceivedTouchpoint.of(first, 1_000), ReceivedTouchpoint.of(second, 900)]
    outcome = await _handle(batch, uow, policy)

    assert (outcome.applied, outcome.profiles_created, outcome.profiles_changed) == (2, 1, 1)
    assert uow.owners == {("email", "ann@example.com"): "p-1", ("phone", "+33600000000"): "p-1"}
    assert uow.timeline_rows == {first.event_id: "p-1", second.event_id: "p-1"}
    [out] = uow.published
    assert out.topic is topics.PROFILES
    assert out.key == "p-1"
    assert out.accepted_at_ms == 900
    event = out.event
    assert isinstance(event, ProfileChangedEvent)
    assert event.event_id == derived_event_id("profile.changed", "p-1", "1")
    assert event.causation_id == second.event_id
    assert event.correlation_id == second.event_id  # the last cause has no correlation id
    assert event.source == "profile"
    assert event.data.version == 1
    assert event.data.lifecycle == "customer"
    assert event.data.identifier_types == ["email", "phone"]
    assert event.data.aggregates.purchase_count == 1
    wire = encode_event(event)
    assert b"ann@example.com" not in wire
    assert b"+33600000000" not in wire


async def test_redelivery_changes_nothing(uow, tp, policy) -> None:
    batch = [ReceivedTouchpoint.of(tp(email="ann@example.com"))]
    await _handle(batch, uow, policy)
    before = (dict(uow.stored), dict(uow.owners), len(uow.published))
    outcome = await _handle(batch, uow, policy, ids=_ids())
    assert outcome.duplicates == 1
    assert outcome.applied == 0
    assert (dict(uow.stored), dict(uow.owners), len(uow.published)) == before


async def test_later_batch_attaches_and_increments_the_version(uow, tp, policy) -> None:
    await _handle([ReceivedTouchpoint.of(tp(email="ann@example.com"))], uow, policy)
    later = tp(email="ann@example.com", device_id="dev-1", correlation_id="corr-9")
    await _handle([ReceivedTouchpoint.of(later)], uow, policy, ids=lambda: "unused")
    assert uow.owners[("device_id", "dev-1")] == "p-1"
    assert [o.event.data.version for o in uow.published] == [1, 2]  # type: ignore[attr-defined]
    assert uow.published[-1].event.correlation_id == "corr-9"


async def test_a_touchpoint_naming_two_profiles_merges_them(uow, tp, policy) -> None:
    await _handle([ReceivedTouchpoint.of(tp(phone="+33611111111"))], uow, policy)
    await _handle([ReceivedTouchpoint.of(tp(customer_id="C-1"))], uow, policy, ids=lambda: "p-2")
    both = tp(phone="+33611111111", customer_id="C-1", email="x@y.z")
    outcome = await _handle([ReceivedTouchpoint.of(both, 7)], uow, policy, ids=lambda: "unused")
    assert (outcome.merges, outcome.conflicts) == (1, 0)
    # Both were created at NOW; p-1 sorts first, so it is the survivor.
    assert set(uow.owners.values()) == {"p-1"}
    assert uow.forwards == {"p-2": "p-1"}
    assert uow.tombstones == ["p-2"]
    assert set(uow.stored) == {"p-1"}
    merged = [o for o in uow.published if o.topic is topics.PROFILE_MERGES]
    [event] = [o.event for o in merged]
    assert isinstance(event, ProfilesMergedEvent)
    assert event.data.survivor_id == "p-1"
    assert event.data.merged_id == "p-2"
    assert event.data.rule == "shared_touchpoint:customer_id+phone"
    assert b"C-1" not in encode_event(event)
    assert event.causation_id == both.event_id
    assert uow.published[-1].event.data.aggregates.touchpoint_count == 3


async def test_a_refused_merge_is_recorded_not_applied(uow, tp, policy) -> None:
    await _handle([ReceivedTouchpoint.of(tp(customer_id="C-1"))], uow, policy)
    await _handle([ReceivedTouchpoint.of(tp(customer_id="C-2"))], uow, policy, ids=lambda: "p-2")
    both = tp(customer_id="C-2", email="x@y.z")
    await _handle([ReceivedTouchpoint.of(both)], uow, policy, ids=lambda: "unused")
    clash = tp(customer_id="C-1", email="x@y.z")
    outcome = await _handle([ReceivedTouchpoint.of(clash)], uow, policy, ids=lambda: "unused")
    assert (outcome.merges, outcome.conflicts) == (0, 1)
    [conflict] = uow.conflicts
    assert conflict.reason == "limit:customer_id"
    assert set(uow.stored) == {"p-1", "p-2"}


async def test_a_failed_batch_commits_nothing(uow, tp, policy) -> None:
    async def broken(events) -> None:
        raise RuntimeError("outbox down")

    uow.stage_encoded = broken
    with pytest.raises(RuntimeError):
        await _handle([ReceivedTouchpoint.of(tp(email="ann@example.com"))], uow, policy)
    assert (uow.timeline_rows, uow.stored, uow.owners, uow.commits) == ({}, {}, {}, 0)


async def test_a_touchpoint_on_the_timeline_is_not_applied_again(uow, tp, policy) -> None:
    batch = [ReceivedTouchpoint.of(tp(email="ann@example.com"))]
    await _handle(batch, uow, policy)
    outcome = await _handle(batch, uow, policy, ids=_ids())
    assert (outcome.applied, outcome.duplicates, len(uow.published)) == (0, 1, 1)


async def test_an_erased_touchpoint_is_not_applied_again(uow, tp, policy) -> None:
    event = tp(email="ann@example.com")
    uow.erased.add(event.event_id)  # erasure removed it from the timeline, kept its id
    outcome = await _handle([ReceivedTouchpoint.of(event)], uow, policy)
    assert (outcome.applied, outcome.duplicates, uow.stored) == (0, 1, {})


def test_new_profile_ids_are_distinct_random_uuids() -> None:
    ids = [new_profile_id() for _ in range(2_000)]  # several pools of 256
    assert len(set(ids)) == len(ids)
    for found in ids:
        parsed = uuid.UUID(found)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == found
