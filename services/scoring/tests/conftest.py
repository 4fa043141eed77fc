"""Factories and in-memory fakes shared by the scoring tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest

from clientela.scoring.application.ports import (
    LoadedBatch,
    ScoreRecord,
    TierTransition,
    UnpublishedChange,
)
from clientela.scoring.application.service import ScoringApplication, ScoringConfig
from clientela.scoring.domain.value_model import FittedParameters
from clientela.shared.codec import EncodedEvent, OutgoingEvent, decode_event
from clientela.shared.contracts import (
    Envelope,
    Lifecycle,
    ProfileAggregates,
    ProfileChanged,
    ProfileChangedEvent,
    ScoresUpdatedEvent,
    TierChangedEvent,
    TopicSpec,
    derived_event_id,
)
from clientela.shared.testing import SettableClock

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

MakeProfile = Callable[..., ProfileChangedEvent]
CONTRACTS: dict[str, type[Envelope]] = {
    ScoresUpdatedEvent.EVENT_TYPE: ScoresUpdatedEvent,
    TierChangedEvent.EVENT_TYPE: TierChangedEvent,
}
E = TypeVar("E", bound=Envelope)


def make_profile_changed(
    profile_id: str = "p-1",
    version: int = 1,
    *,
    spend: str | Decimal = "0",
    purchases: int | None = None,
    days_ago: float = 0.0,
    first_days_ago: float | None = None,
    correlation_id: str | None = None,
    now: datetime = NOW,
    **aggregates: Any,
) -> ProfileChangedEvent:
    """Return a ProfileChanged event; a positive spend implies at least one purchase."""
    amount = Decimal(spend)
    count = purchases if purchases is not None else (1 if amount > 0 else 0)
    last = now - timedelta(days=days_ago) if count else None
    first = now - timedelta(days=first_days_ago) if count and first_days_ago else last
    return ProfileChangedEvent(
        event_id=derived_event_id("test-profile-changed", profile_id, str(version)),
        source="profile",
        correlation_id=correlation_id,
        data=ProfileChanged(
            profile_id=profile_id,
            version=version,
            lifecycle=Lifecycle.CUSTOMER if count else Lifecycle.PROSPECT,
            created_at=now - timedelta(days=400),
            aggregates=ProfileAggregates(
                currency="EUR",
                purchase_count=count,
                purchase_days=count,
                total_spend=amount,
                last_purchase_at=last,
                first_purchase_at=first,
                **aggregates,
            ),
        ),
    )


@pytest.fixture
def profile_changed() -> MakeProfile:
    """Return the ProfileChanged factory."""
    return make_profile_changed


@pytest.fixture
def now() -> datetime:
    """Return the fixed processing time the factories use."""
    return NOW


class FakeScoreStore:
    """Score records in a dict."""

    def __init__(self) -> None:
        self.rows: dict[str, ScoreRecord] = {}

    async def get_many(
        self, profile_ids: Sequence[str], *, with_state: bool = False
    ) -> dict[str, ScoreRecord]:
        found = {pid: self.rows[pid] for pid in profile_ids if pid in self.rows}
        return found if with_state else {p: replace(r, state=b"") for p, r in found.items()}

    async def save_many(self, records: Sequence[ScoreRecord]) -> None:
        for r in records:
            kept = self.rows.get(r.profile_id)
            if kept is None or kept.revision < r.revision:
                self.rows[r.profile_id] = r

    async def all_records(self) -> list[ScoreRecord]:
        return list(self.rows.values())


class FakeParameterStore:
    """Parameter sets in a list."""

    def __init__(self) -> None:
        self.sets: list[FittedParameters] = []

    async def latest(self) -> FittedParameters | None:
        return self.sets[-1] if self.sets else None

    async def history(self, limit: int) -> list[FittedParameters]:
        return list(reversed(self.sets))[:limit]

    async def add(self, parameters: FittedParameters) -> None:
        self.sets.append(parameters)


class FakeUnitOfWork:
    """Keeps what a transaction did; events and history show only once committed."""

    def __init__(self) -> None:
        self._scores = FakeScoreStore()
        self._parameters = FakeParameterStore()
        self.inbox: set[str] = set()
        self.outbox: list[OutgoingEvent] = []
        self.written: list[EncodedEvent] = []
        self.history: list[TierTransition] = []
        self.erased: set[str] = set()
        self.tombstones: list[tuple[TopicSpec, str]] = []
        self.commits = 0
        self._pending: tuple[list[OutgoingEvent], list[TierTransition]] = ([], [])
        self._erasing: tuple[set[str], list[tuple[TopicSpec, str]]] = (set(), [])

    @property
    def scores(self) -> FakeScoreStore:
        return self._scores

    @property
    def parameters(self) -> FakeParameterStore:
        return self._parameters

    def __call__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        self._pending = ([], [])
        self._erasing = (set(), [])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pending = ([], [])
        self._erasing = (set(), [])

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        new = set(event_ids) - self.inbox
        self.inbox |= new
        return new

    async def load_batch(self, profile_ids: Sequence[str]) -> LoadedBatch:
        return LoadedBatch(
            await self._scores.get_many(profile_ids),
            {pid for pid in profile_ids if pid in self.erased},
        )

    async def write_scored(
        self,
        records: Sequence[ScoreRecord],
        transitions: Sequence[TierTransition],
        events: Sequence[EncodedEvent],
        unpublished: Sequence[UnpublishedChange] = (),
    ) -> None:
        await self.store_unpublished(unpublished)
        await self._scores.save_many(records)
        await self.record_tier_changes(transitions)
        await self.stage_encoded(events)

    async def store_unpublished(self, changes: Sequence[UnpublishedChange]) -> None:
        rows = self._scores.rows
        for change in changes:
            kept = rows.get(change.profile_id)
            stored = change.applied_to(kept) if kept is not None else None
            if stored is not None:
                rows[change.profile_id] = stored

    async def stale_ids(self) -> list[str]:
        return sorted(pid for pid, r in self._scores.rows.items() if r.republish)

    async def erase(self, profile_ids: Sequence[str]) -> None:
        self._erasing[0].update(profile_ids)

    async def stage_tombstones(self, topic: TopicSpec, keys: Sequence[str]) -> None:
        self._erasing[1].extend((topic, k) for k in keys)

    async def record_tier_changes(self, changes: Sequence[TierTransition]) -> None:
        self._pending[1].extend(changes)

    async def stage_encoded(self, events: Sequence[EncodedEvent]) -> None:
        # Decoded with the contract: every event the service writes must be valid.
        self.written.extend(events)
        self._pending[0].extend(
            OutgoingEvent(
                e.topic,
                e.key,
                decode_event(CONTRACTS[e.event_type], e.value),
                e.accepted_at_ms,
            )
            for e in events
        )

    async def commit(self) -> None:
        self.outbox.extend(self._pending[0])
        self.history.extend(self._pending[1])
        gone, tombstones = self._erasing
        for pid in gone:
            self._scores.rows.pop(pid, None)
        self.history = [h for h in self.history if h.profile_id not in gone]
        self.erased |= gone
        self.tombstones.extend(tombstones)
        self._pending = ([], [])
        self._erasing = (set(), [])
        self.commits += 1

    def events(self, kind: type[E]) -> list[E]:
        return [o.event for o in self.outbox if isinstance(o.event, kind)]


@pytest.fixture
def uow() -> FakeUnitOfWork:
    """Return an in-memory unit of work (calling it returns itself, like a factory)."""
    return FakeUnitOfWork()


@pytest.fixture
def clock() -> SettableClock:
    """Return a clock set to NOW."""
    return SettableClock(NOW)


@pytest.fixture
def application(uow: FakeUnitOfWork, clock: SettableClock) -> ScoringApplication:
    """Return the scoring application on the fake unit of work, ranking every batch."""
    return ScoringApplication(ScoringConfig(cutoff_refresh_s=0.0), uow, clock)
