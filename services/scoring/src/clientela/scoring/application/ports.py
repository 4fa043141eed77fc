"""Ports of the scoring use cases: what they need from storage and the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from clientela.shared.contracts import (
    Envelope,
    ProfileChangedEvent,
    ScoresUpdated,
    Tier,
    TierMove,
    TopicSpec,
)


@dataclass(frozen=True, slots=True)
class ProfileChangeMessage:
    """A ProfileChanged event as delivered, with the accept time carried along the chain."""

    event: ProfileChangedEvent
    accepted_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StoredScore:
    """The scores last applied to a profile."""

    scores: ScoresUpdated
    updated_at: datetime

    @property
    def profile_version(self) -> int:
        """Return the profile version the stored scores reflect."""
        return self.scores.profile_version

    @property
    def tier(self) -> Tier:
        """Return the stored tier."""
        return self.scores.tier


@dataclass(frozen=True, slots=True)
class TierTransition:
    """One row of the tier history."""

    event_id: str
    profile_id: str
    profile_version: int
    from_tier: Tier | None
    to_tier: Tier
    move: TierMove
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event to publish after commit, on a registered topic (the adapter adds the prefix)."""

    topic: TopicSpec
    key: str
    event: Envelope
    accepted_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TierTotal:
    """How many profiles a tier holds and their summed predicted value."""

    tier: Tier
    count: int
    value: float


class CustomerValues(Protocol):
    """Source of the predicted values of every scored customer (all non-P scores)."""

    async def customer_values(self) -> dict[str, float]:
        """Return predicted value by profile id for every customer, in one query."""
        ...


class ScoreStore(CustomerValues, Protocol):
    """Scores inside a unit of work."""

    async def get_many(self, profile_ids: Sequence[str]) -> dict[str, StoredScore]:
        """Return the stored scores of those profiles that have any, in one query."""
        ...

    async def save_many(self, scores: Sequence[ScoresUpdated], updated_at: datetime) -> None:
        """Insert or replace scores; an older profile version never overwrites a newer one."""
        ...


class ScoringUnitOfWork(Protocol):
    """One transaction: inbox claims, scores, tier history and staged events commit together."""

    @property
    def scores(self) -> ScoreStore:
        """Return the scores of this unit of work."""
        ...

    async def __aenter__(self) -> Self:
        """Begin the transaction."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed."""
        ...

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Mark event ids processed; return those seen for the first time."""
        ...

    async def record_tier_changes(self, changes: Sequence[TierTransition]) -> None:
        """Append tier moves to the history."""
        ...

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        """Put events in the outbox, to be published once the transaction commits."""
        ...

    async def commit(self) -> None:
        """Commit everything done in this unit of work."""
        ...


class ScoreReader(CustomerValues, Protocol):
    """Read side of the scores, for the HTTP API."""

    async def get(self, profile_id: str) -> StoredScore | None:
        """Return the stored scores of one profile, or None."""
        ...

    async def tier_totals(self) -> list[TierTotal]:
        """Return count and summed predicted value per stored tier."""
        ...
