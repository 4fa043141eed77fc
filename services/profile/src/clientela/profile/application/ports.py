"""Ports of the profile service: what the use cases need from storage and messaging."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from clientela.profile.domain.identity import (
    IdentifierClaim,
    IdentifierKey,
    IdentityConflict,
)
from clientela.profile.domain.profile import Profile
from clientela.shared.codec import EncodedEvent, OutgoingEvent
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    TopicSpec,
    TouchpointKind,
    TouchpointRecorded,
)
from clientela.shared.readers.touchpoint import TouchpointRecordedView, touchpoint_view


@dataclass(frozen=True, slots=True)
class ReceivedTouchpoint:
    """A touchpoint as delivered, with the time ingest accepted it (for latency)."""

    event: TouchpointRecordedView
    accepted_at_ms: int | None = None
    # The record as delivered, when it is this event's JSON: the timeline stores it as is.
    raw: bytes | None = None

    @classmethod
    def of(
        cls,
        event: TouchpointRecorded | TouchpointRecordedView,
        accepted_at_ms: int | None = None,
        raw: bytes | None = None,
    ) -> ReceivedTouchpoint:
        """Return a delivered touchpoint from its view or from a contract model."""
        if isinstance(event, TouchpointRecorded):
            event = touchpoint_view(event)
        return cls(event, accepted_at_ms, raw)


@dataclass(frozen=True, slots=True)
class LockedOwners:
    """The owners of a batch's identifiers, their profiles (locked) and admin separations."""

    owners: dict[IdentifierKey, str]
    profiles: dict[str, Profile]
    separated: set[tuple[str, str]]
    # A locked profile changed between reading the owners and locking it: read them again.
    stale: bool = False


class ProfileCacheUnavailableError(Exception):
    """The lookup cache could not be reached to drop what a commit changed."""


class ProfileCache(Protocol):
    """The read side's cache of profiles, kept current by every writer after its commit."""

    async def forget(
        self, profile_ids: Collection[str], keys: Collection[IdentifierKey] = ()
    ) -> None:
        """Drop cached profiles and identifier owners (raise ProfileCacheUnavailableError)."""
        ...

    async def refresh(
        self,
        profiles: Sequence[Profile],
        added: Mapping[str, Sequence[IdentifierKey]],
        merged_into: Collection[str],
        committed: float,
    ) -> None:
        """Bring cached profiles up to a commit that changed them: added holds the
        identifiers a profile gained, merged_into the profiles that absorbed others; committed
        is when the commit ended (`time.monotonic()`): a late refresh puts nothing (raise
        ProfileCacheUnavailableError)."""
        ...


class ConcurrentChangeError(Exception):
    """Another writer changed what this transaction read; the whole transaction is retried."""


@dataclass(frozen=True, slots=True)
class ConsentUpdate:
    """A consent decision stated through the API, kept so rebuilds replay it."""

    update_id: str
    profile_id: str
    channel: Channel
    status: ConsentStatus
    source: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """Proof of an erasure: what was removed, when, under which request."""

    request_id: str
    profile_id: str
    erased_at: datetime
    identifiers_removed: int
    touchpoints_removed: int
    forwards_removed: int


@dataclass(frozen=True, slots=True)
class ProfileHistory:
    """What a profile is recomputed from: its touchpoints and API consent decisions."""

    touchpoints: list[TouchpointRecordedView]
    consents: list[ConsentUpdate]


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


class IdentityGraph(Protocol):
    """Which profile owns which identifier; admin separations; refused merges."""

    async def attach(
        self,
        claims: Sequence[IdentifierClaim],
        recheck: Collection[IdentifierKey] = (),
    ) -> set[IdentifierKey]:
        """Attach new identifiers; return those another writer claimed first.

        `recheck` are identifiers the batch saw unowned but did not claim (over a limit):
        those another writer attached meanwhile are returned too.
        """
        ...

    async def of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[IdentifierKey]]:
        """Return the identifiers each profile owns."""
        ...

    async def reassign_profiles(self, moves: Mapping[str, str]) -> None:
        """Give every identifier of each key profile to its value profile (merges)."""
        ...

    async def reassign_keys(self, keys: Collection[IdentifierKey], profile_id: str) -> None:
        """Give these identifiers to a profile (splits)."""
        ...

    async def delete_profile(self, profile_id: str) -> int:
        """Remove a profile's identifiers, separations and conflicts; return identifiers."""
        ...

    async def separate(self, first: str, second: str) -> None:
        """Record that two profiles must never be merged again."""
        ...

    async def record_conflicts(self, conflicts: Sequence[IdentityConflict]) -> None:
        """Keep refused merges for review (fingerprints only)."""
        ...


class ProfileRepository(Protocol):
    """Profiles by id, forwards of merged ids, erasure receipts."""

    async def lock(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """Return the stored profiles among the ids, locked until the transaction ends."""
        ...

    async def save(self, profiles: Sequence[Profile]) -> None:
        """Insert or replace the profiles, in one statement (see `lock_owners` for the guard)."""
        ...

    async def delete(self, profile_ids: Collection[str]) -> None:
        """Remove profiles."""
        ...

    async def ids_after(self, cursor: str | None, limit: int) -> list[str]:
        """Return up to limit profile ids greater than cursor, in order (rebuild pages)."""
        ...

    async def forward(self, moves: Mapping[str, str], at: datetime) -> None:
        """Make each merged id (and the ids forwarding to it) forward to its survivor."""
        ...

    async def resolve(self, profile_id: str) -> str:
        """Return the live id a profile id forwards to (itself when not merged)."""
        ...

    async def drop_forwards_to(self, profile_id: str) -> int:
        """Remove the forwards that end at a profile; return how many."""
        ...

    async def erasure(self, profile_id: str) -> ErasureReceipt | None:
        """Return the receipt of an earlier erasure of the profile, if any."""
        ...

    async def record_erasure(self, receipt: ErasureReceipt) -> None:
        """Keep an erasure receipt."""
        ...


class Timeline(Protocol):
    """Every touchpoint and API consent decision, filed under its profile."""

    async def add(self, entries: Sequence[tuple[str, ReceivedTouchpoint]]) -> None:
        """File touchpoints under profiles, given as (profile_id, touchpoint)."""
        ...

    async def add_consent(self, update: ConsentUpdate) -> None:
        """File a consent decision stated through the API."""
        ...

    async def history(self, profile_ids: Collection[str]) -> dict[str, ProfileHistory]:
        """Return the stored touchpoints and consent decisions of each profile."""
        ...

    async def reassign_profiles(self, moves: Mapping[str, str]) -> None:
        """Refile everything of each key profile under its value profile (merges)."""
        ...

    async def reassign_events(self, event_ids: Collection[str], profile_id: str) -> None:
        """Refile these touchpoints under a profile (splits)."""
        ...

    async def delete_profile(self, profile_id: str) -> int:
        """Remove a profile's touchpoints and consent decisions; return the touchpoints."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the profile store; rolled back unless committed."""

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

    async def fresh_events(self, event_ids: Sequence[str]) -> set[str]:
        """Return the ids among event_ids never applied: the timeline (which keeps every
        applied touchpoint) is the inbox, and erased touchpoints' ids are kept apart."""
        ...

    async def lock_owners(self, keys: Collection[IdentifierKey]) -> LockedOwners:
        """Read the owners of keys and their profiles; keep them from changing unseen.

        Either the profiles are locked until the end (owners are then read before the locks
        are granted: a profile that vanished or changed meanwhile, `stale`, may have lost
        identifiers and the caller reads again), or, on PostgreSQL, nothing is locked and
        every later write of a profile read here (`save`, `merge_away`) is guarded by the
        version read, raising ConcurrentChangeError when another writer changed or deleted it.
        Either way owners cannot move unseen: every writer that moves an identifier changes
        or deletes its owner's row.
        """
        ...

    async def fresh_and_owners(
        self, event_ids: Sequence[str], keys: Collection[IdentifierKey]
    ) -> tuple[set[str], LockedOwners]:
        """Return fresh_events(event_ids) and lock_owners(keys) (empty owners when keys is
        empty), as one read where the store can: the first step of every batch."""
        ...

    async def merge_away(self, moves: Mapping[str, str], at: datetime) -> None:
        """Merge each key profile into its value profile: identifiers, touchpoints and consent
        decisions move, the merged profile is deleted and forwards to its survivor."""
        ...

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        """Queue events for publication after commit (outbox)."""
        ...

    async def stage_encoded(self, events: Sequence[EncodedEvent]) -> None:
        """Queue events already encoded for publication after commit (outbox)."""
        ...

    async def stage_tombstones(self, topic: TopicSpec, keys: Sequence[str]) -> None:
        """Queue null-valued records (deletions on a compacted topic) after commit."""
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

    async def by_identifier(self, key: IdentifierKey) -> StoredProfile | None:
        """Return the profile owning an identifier, with its identifiers, or None."""
        ...

    async def live(self, profile_id: str) -> StoredProfile | None:
        """Return a profile (a merged id: its survivor) with its identifiers, or None."""
        ...

    async def get(self, profile_id: str) -> StoredProfile | None:
        """Return a profile with its identifiers, or None."""
        ...

    async def resolve(self, profile_id: str) -> str:
        """Return the live id a profile id forwards to (itself when not merged)."""
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
