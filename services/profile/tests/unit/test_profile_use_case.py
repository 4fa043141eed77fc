"""Unit tests of handle_touchpoints against an in-memory unit of work."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from clientela.profile.application.handle_touchpoints import handle_touchpoints
from clientela.profile.application.ports import OutgoingEvent, ReceivedTouchpoint
from clientela.profile.domain.identity import IdentifierClaim, IdentifierKey
from clientela.profile.domain.profile import Profile
from clientela.shared.codec import encode_event
from clientela.shared.contracts import ProfileChangedEvent, derived_event_id, topics

NOW = datetime(2024, 6, 1, tzinfo=UTC)


class FakeUnitOfWork:
    """Implements the UnitOfWork port with dicts; writes apply only on commit."""

    def __init__(self) -> None:
        self.processed: set[str] = set()
        self.owners: dict[IdentifierKey, str] = {}
        self.stored: dict[str, dict] = {}
        self.timeline_rows: dict[str, str] = {}
        self.published: list[OutgoingEvent] = []
        self.commits = 0
        self.pending: list[Callable[[], None]] = []
        self.inbox = _Inbox(self)
        self.identities = _Identities(self)
        self.profiles = _Profiles(self)
        self.timeline = _Timeline(self)
        self.outbox = _Outbox(self)

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


class _Inbox:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def claim_new(self, event_ids):
        fresh = set(event_ids) - self.uow.processed
        self.uow.pending.append(lambda: self.uow.processed.update(fresh))
        return fresh


class _Identities:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def owners(self, keys):
        return {k: self.uow.owners[k] for k in keys if k in self.uow.owners}

    async def attach(self, claims: list[IdentifierClaim]) -> None:
        def apply() -> None:
            for c in claims:
                self.uow.owners.setdefault((c.id_type, c.id_value), c.profile_id)

        self.uow.pending.append(apply)


class _Profiles:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def get_many(self, profile_ids):
        return {
            pid: Profile.from_state(pid, s["version"], NOW, NOW, s["lifecycle"], s["state"])
            for pid in profile_ids
            if (s := self.uow.stored.get(pid))
        }

    async def save_many(self, profiles) -> None:
        rows = {
            p.profile_id: {"version": p.version, "lifecycle": p.stage.value, "state": p.to_state()}
            for p in profiles
        }
        self.uow.pending.append(lambda: self.uow.stored.update(rows))


class _Timeline:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def known(self, event_ids):
        return set(event_ids) & self.uow.timeline_rows.keys()

    async def add(self, entries) -> None:
        rows = {event.event_id: pid for pid, event in entries}
        self.uow.pending.append(lambda: self.uow.timeline_rows.update(rows))


class _Outbox:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def stage(self, events) -> None:
        self.uow.pending.append(lambda: self.uow.published.extend(events))


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
    batch = [ReceivedTouchpoint(first, 1_000), ReceivedTouchpoint(second, 900)]
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
    batch = [ReceivedTouchpoint(tp(email="ann@example.com"))]
    await _handle(batch, uow, policy)
    before = (dict(uow.stored), dict(uow.owners), len(uow.published))
    outcome = await _handle(batch, uow, policy, ids=_ids())
    assert outcome.duplicates == 1
    assert outcome.applied == 0
    assert (dict(uow.stored), dict(uow.owners), len(uow.published)) == before


async def test_later_batch_attaches_and_increments_the_version(uow, tp, policy) -> None:
    await _handle([ReceivedTouchpoint(tp(email="ann@example.com"))], uow, policy)
    later = tp(email="ann@example.com", device_id="dev-1", correlation_id="corr-9")
    await _handle([ReceivedTouchpoint(later)], uow, policy, ids=lambda: "unused")
    assert uow.owners[("device_id", "dev-1")] == "p-1"
    assert [o.event.data.version for o in uow.published] == [1, 2]  # type: ignore[attr-defined]
    assert uow.published[-1].event.correlation_id == "corr-9"


async def test_a_touchpoint_joins_the_strongest_match_and_steals_nothing(uow, tp, policy) -> None:
    await _handle(
        [ReceivedTouchpoint(tp(phone="+1")), ReceivedTouchpoint(tp(customer_id="C-1"))],
        uow,
        policy,
    )
    both = tp(phone="+1", customer_id="C-1", email="x@y.z")
    outcome = await _handle([ReceivedTouchpoint(both)], uow, policy, ids=lambda: "unused")
    assert outcome.contested_identifiers == 1
    assert uow.owners[("customer_id", "C-1")] == "p-2"
    assert uow.owners[("phone", "+1")] == "p-1"
    assert uow.owners[("email", "x@y.z")] == "p-2"
    assert uow.published[-1].key == "p-2"


async def test_a_failed_batch_commits_nothing(uow, tp, policy) -> None:
    async def broken(events) -> None:
        raise RuntimeError("outbox down")

    uow.outbox.stage = broken
    with pytest.raises(RuntimeError):
        await _handle([ReceivedTouchpoint(tp(email="ann@example.com"))], uow, policy)
    assert (uow.processed, uow.stored, uow.owners, uow.commits) == (set(), {}, {}, 0)


async def test_a_touchpoint_on_the_timeline_is_not_applied_again(uow, tp, policy) -> None:
    batch = [ReceivedTouchpoint(tp(email="ann@example.com"))]
    await _handle(batch, uow, policy)
    uow.processed.clear()  # the inbox prunes old ids; the timeline keeps them
    outcome = await _handle(batch, uow, policy, ids=_ids())
    assert (outcome.applied, outcome.duplicates, len(uow.published)) == (0, 1, 1)
