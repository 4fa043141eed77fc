"""The profile: one person's golden record, built from their touchpoints in any order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clientela.profile.domain.aggregates import Tally, decode_time, encode_time
from clientela.profile.domain.identity import priority
from clientela.profile.domain.policy import ProfilePolicy
from clientela.shared.contracts import (
    Channel,
    ConsentState,
    ConsentStatus,
    IdentifierType,
    Lifecycle,
    ProfileChanged,
    TouchpointKind,
    TouchpointRecorded,
)
from clientela.shared.contracts.base import TraitValue

STATE_SCHEMA = 1
"""Version of the snapshot layout written by Profile.to_state."""

# Which contact point makes which channel reachable.
_CHANNELS_OF_IDENTIFIER: Mapping[str, tuple[Channel, ...]] = {
    IdentifierType.EMAIL.value: (Channel.EMAIL,),
    IdentifierType.PHONE.value: (Channel.PHONE, Channel.SMS),
}


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a value was stated; the event id breaks ties so the winner never depends on order."""

    at: datetime
    event_id: str

    def supersedes(self, other: Stamp | None) -> bool:
        """Return whether a value stated at this stamp replaces one stated at other."""
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


@dataclass(frozen=True, slots=True)
class TraitEntry:
    """A trait value and when it was stated; None means the trait was cleared."""

    value: TraitValue
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    """A consent decision for one channel, when and through which system it was given."""

    status: ConsentStatus
    stamp: Stamp
    source: str


def lifecycle_at(
    last_purchase_at: datetime | None, now: datetime, policy: ProfilePolicy
) -> Lifecycle:
    """Return prospect (no sale), customer (recent sale) or lapsed (no sale for too long)."""
    if last_purchase_at is None:
        return Lifecycle.PROSPECT
    if now - last_purchase_at <= policy.lapse_after:
        return Lifecycle.CUSTOMER
    return Lifecycle.LAPSED


def as_utc(moment: datetime) -> datetime:
    """Return an aware time in UTC (naive times are taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(slots=True)
class Profile:
    """A person's golden record: identifier types, traits, consent and aggregates."""

    profile_id: str
    created_at: datetime
    updated_at: datetime
    tally: Tally
    version: int = 0
    identifier_types: set[str] = field(default_factory=set)
    traits: dict[str, TraitEntry] = field(default_factory=dict)
    consent: dict[Channel, ConsentEntry] = field(default_factory=dict)
    visited_branch: bool = False
    # Lifecycle as of the last change; readers recompute it for the time they ask.
    stage: Lifecycle = Lifecycle.PROSPECT

    @classmethod
    def new(cls, profile_id: str, now: datetime, policy: ProfilePolicy) -> Profile:
        """Return an empty profile, created now."""
        return cls(profile_id, now, now, Tally(currency=policy.base_currency))

    def attach_identifier_types(self, id_types: Iterable[str]) -> None:
        """Note that the profile now holds identifiers of these types."""
        self.identifier_types.update(id_types)

    def record(self, event: TouchpointRecorded, policy: ProfilePolicy) -> None:
        """Fold a touchpoint into the profile; the result is the same in any arrival order."""
        touchpoint = event.data
        stamp = Stamp(as_utc(event.occurred_at), event.event_id)
        self.tally.add(touchpoint, stamp.at, policy)
        if touchpoint.kind is TouchpointKind.BRANCH_VISIT or touchpoint.channel is Channel.BRANCH:
            self.visited_branch = True
        for name, value in touchpoint.traits.items():
            if stamp.supersedes(current.stamp if (current := self.traits.get(name)) else None):
                self.traits[name] = TraitEntry(value, stamp)
        decisions = {change.channel: change.status for change in touchpoint.consent}
        # An unsubscribe link clicked in an email withdraws email consent even when the
        # upstream system did not send it as an explicit consent change.
        if touchpoint.email is not None and touchpoint.email.unsubscribed:
            decisions.setdefault(Channel.EMAIL, ConsentStatus.OPTED_OUT)
        for channel, status in decisions.items():
            held = self.consent.get(channel)
            if stamp.supersedes(held.stamp if held else None):
                self.consent[channel] = ConsentEntry(status, stamp, event.source)

    def mark_changed(self, now: datetime, policy: ProfilePolicy) -> None:
        """Count one change of the profile (one per processed batch)."""
        self.version += 1
        self.updated_at = now
        self.stage = self.lifecycle(now, policy)

    def lifecycle(self, now: datetime, policy: ProfilePolicy) -> Lifecycle:
        """Return the lifecycle stage as of now."""
        return lifecycle_at(self.tally.last_purchase_at, now, policy)

    def reachable_channels(self) -> list[Channel]:
        """Return the channels the profile has a contact point for, in a stable order."""
        reachable = {
            channel
            for id_type in self.identifier_types
            for channel in _CHANNELS_OF_IDENTIFIER.get(id_type, ())
        }
        if self.visited_branch:
            reachable.add(Channel.BRANCH)
        return [channel for channel in Channel if channel in reachable]

    def current_traits(self) -> dict[str, TraitValue]:
        """Return the surviving trait values (cleared traits left out)."""
        return {
            name: entry.value
            for name, entry in sorted(self.traits.items())
            if entry.value is not None
        }

    def current_consent(self) -> dict[Channel, ConsentState]:
        """Return the latest consent decision per channel."""
        return {
            channel: ConsentState(
                status=entry.status, updated_at=entry.stamp.at, source=entry.source
            )
            for channel, entry in sorted(self.consent.items())
        }

    def sorted_identifier_types(self) -> list[str]:
        """Return the identifier types held, strongest first."""
        return sorted(self.identifier_types, key=lambda t: (priority(t), t))

    def changed(self) -> ProfileChanged:
        """Return the profile's published state as of its last change: no identifier values."""
        return ProfileChanged(
            profile_id=self.profile_id,
            version=self.version,
            lifecycle=self.stage,
            created_at=self.created_at,
            identifier_types=self.sorted_identifier_types(),
            reachable_channels=self.reachable_channels(),
            consent=self.current_consent(),
            traits=self.current_traits(),
            aggregates=self.tally.to_contract(),
        )

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-ready snapshot stored with the profile."""
        return {
            "schema": STATE_SCHEMA,
            "identifier_types": self.sorted_identifier_types(),
            "visited_branch": self.visited_branch,
            "traits": {
                name: {
                    "value": e.value,
                    "at": encode_time(e.stamp.at),
                    "event_id": e.stamp.event_id,
                }
                for name, e in sorted(self.traits.items())
            },
            "consent": {
                channel.value: {
                    "status": e.status.value,
                    "at": encode_time(e.stamp.at),
                    "event_id": e.stamp.event_id,
                    "source": e.source,
                }
                for channel, e in sorted(self.consent.items())
            },
            "aggregates": self.tally.to_state(),
        }

    @classmethod
    def from_state(
        cls,
        profile_id: str,
        version: int,
        created_at: datetime,
        updated_at: datetime,
        lifecycle: str,
        state: Mapping[str, Any],
    ) -> Profile:
        """Rebuild a profile from its stored columns and snapshot."""
        if state.get("schema", STATE_SCHEMA) > STATE_SCHEMA:
            raise ValueError(f"profile state schema {state['schema']} is newer than this code")
        return cls(
            profile_id=profile_id,
            created_at=as_utc(created_at),
            updated_at=as_utc(updated_at),
            tally=Tally.from_state(state["aggregates"]),
            version=version,
            identifier_types=set(state.get("identifier_types", [])),
            traits={
                name: TraitEntry(raw["value"], _stamp(raw))
                for name, raw in state.get("traits", {}).items()
            },
            consent={
                Channel(channel): ConsentEntry(
                    ConsentStatus(raw["status"]), _stamp(raw), raw["source"]
                )
                for channel, raw in state.get("consent", {}).items()
            },
            visited_branch=bool(state.get("visited_branch", False)),
            stage=Lifecycle(lifecycle),
        )


def _stamp(raw: Mapping[str, Any]) -> Stamp:
    at = decode_time(raw["at"])
    if at is None:
        raise ValueError("a stored stamp has no time")
    return Stamp(at, raw["event_id"])
