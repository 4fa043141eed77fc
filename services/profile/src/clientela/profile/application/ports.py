"""Ports of the profile service: what the use cases need from storage and messaging."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from clientela.profile.domain.identity import IdentifierClaim, IdentifierKey
from clientela.profile.domain.profile import Profile
from clientela.shared.contracts import (
    Channel,
    Envelope,
    TopicSpec,
    TouchpointKind,
    TouchpointRecorded,
)


@dataclass(frozen=True, slots=True)
class ReceivedTouchpoint:
    """A touchpoint as delivered, with the time ingest accepted it (for latency)."""

    event: TouchpointRecorded
    accepted_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event to publish once the transaction that staged it commits."""

    topic: TopicSpec
    key: str
    event: Envelope
    accepted_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """A page of a profile's timeline: newest first, strictly before the cursor."""

    limit: int = 50
    before: datetime | None = None
    before_event_id: str | None = None
    kind: TouchpointKind | None = None
    channel: Channel | None = None


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A profile with the identifier values it owns (the golden record's raw material)."""

    profile: Profile
    identifiers: Sequence[IdentifierKey]


class Inbox(Protocol):
    """Ids of events already applied."""

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Record the ids as processed; return those seen for the first time."""
        ...


class IdentityGraph(Protocol):
    """Which profile owns which identifier."""

    async def owners(self, keys: Collection[IdentifierKey]) -> dict[IdentifierKey, str]:
        """Return the owner of each known identifier among keys, in one lookup."""
        ...

    async def attach(self, claims: Sequence[IdentifierClaim]) -> None:
        """Attach new identifiers to their profiles (an identifier already owned is kept)."""
        ...


class ProfileRepository(Protocol):
    """Profiles by id."""

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """Return the stored profiles among the ids, in one query."""
        ...

    async def save_many(self, profiles: Sequence[Profile]) -> None:
        """Insert or replace the profiles, in one statement."""
        ...


class Timeline(Protocol):
    """Every touchpoint, filed under its profile."""

    async def known(self, event_ids: Collection[str]) -> set[str]:
        """Return the ids among event_ids already on a timeline."""
        ...

    async def add(self, entries: Sequence[tuple[str, TouchpointRecorded]]) -> None:
        """File touchpoints under profiles, given as (profile_id, touchpoint)."""
        ...


class Outbox(Protocol):
    """Events that commit with the state they announce."""

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        """Queue events for publication after commit."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the profile store; rolled back unless committed."""

    @property
    def inbox(self) -> Inbox:
        """The processed-event ids."""
        ...

    @property
    def identities(self) -> IdentityGraph:
        """The identifier owners."""
        ...

    @property
    def profiles(self) -> ProfileRepository:
        """The profiles."""
        ...

    @property
    def timeline(self) -> Timeline:
        """The touchpoints."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The outgoing events."""
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
        """Roll back what was not committed and release the connection."""
        ...

    async def commit(self) -> None:
        """Commit the transaction."""
        ...


class ProfileReader(Protocol):
    """Read side: golden records, identifier lookups and timelines."""

    async def get(self, profile_id: str) -> StoredProfile | None:
        """Return a profile with its identifiers, or None."""
        ...

    async def find(self, key: IdentifierKey) -> str | None:
        """Return the id of the profile owning an identifier, or None."""
        ...

    async def timeline(self, profile_id: str, query: TimelineQuery) -> list[TouchpointRecorded]:
        """Return one page of the profile's touchpoints, newest first."""
        ...

    async def exists(self, profile_id: str) -> bool:
        """Return whether the profile is known."""
        ...
