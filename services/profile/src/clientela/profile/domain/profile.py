"""The profile: one person's golden record, built from their touchpoints in any order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clientela.profile.domain.aggregates import Tally, decode_time, encode_time
from clientela.profile.domain.policy import ProfilePolicy, Survivorship, TraitRules
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

STATE_SCHEMA = 2
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
class Observation:
    """How often one source stated one value of a trait, and when it last did."""

    value: TraitValue
    count: int
    stamp: Stamp

    def plus(self, other: Observation) -> Observation:
        """Return both observations of the same (source, value) counted together."""
        return Observation(self.value, self.count + other.count, max_stamp(self.stamp, other.stamp))


def max_stamp(first: Stamp, second: Stamp) -> Stamp:
    """Return the later of two stamps."""
    return second if second.supersedes(first) else first


TraitLedger = dict[tuple[str, str], Observation]
"""Observations of one trait keyed by (source, value as JSON)."""


def _value_key(value: TraitValue) -> str:
    # JSON keeps 1, 1.0, "1" and true apart where Python equality would not.
    return json.dumps(value, sort_keys=True)


def surviving_value(ledger: TraitLedger, rule: Survivorship, rules: TraitRules) -> Observation:
    """Return the observation whose value survives under the rule."""
    observations = ledger.items()
    if rule is Survivorship.MOST_FREQUENT:
        totals: dict[str, Observation] = {}
        for (_, value_key), obs in observations:
            held = totals.get(value_key)
            totals[value_key] = obs if held is None else held.plus(obs)
        return max(totals.values(), key=lambda o: (o.count, o.stamp.at, o.stamp.event_id))
    if rule is Survivorship.SOURCE_PRIORITY:
        best = min(rules.source_rank(source) for source, _ in ledger)
        return max(
            (obs for (source, _), obs in observations if rules.source_rank(source) == best),
            key=lambda o: (o.stamp.at, o.stamp.event_id),
        )
    return max(ledger.values(), key=lambda o: (o.stamp.at, o.stamp.event_id))


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
    identifier_counts: dict[str, int] = field(default_factory=dict)
    traits: dict[str, TraitLedger] = field(default_factory=dict)
    consent: dict[Channel, ConsentEntry] = field(default_factory=dict)
    visited_branch: bool = False
    # Lifecycle as of the last change; readers recompute it for the time they ask.
    stage: Lifecycle = Lifecycle.PROSPECT

    @classmethod
    def new(cls, profile_id: str, now: datetime, policy: ProfilePolicy) -> Profile:
        """Return an empty profile, created now."""
        return cls(profile_id, now, now, Tally(currency=policy.base_currency))

    def attach_identifier_types(self, id_types: Iterable[str]) -> None:
        """Count one more identifier of each of these types."""
        for id_type in id_types:
            self.identifier_counts[id_type] = self.identifier_counts.get(id_type, 0) + 1

    @property
    def identifier_types(self) -> set[str]:
        """Return the types of identifier the profile holds."""
        return {t for t, count in self.identifier_counts.items() if count > 0}

    def record(self, event: TouchpointRecorded, policy: ProfilePolicy) -> None:
        """Fold a touchpoint into the profile; the result is the same in any arrival order."""
        touchpoint = event.data
        stamp = Stamp(as_utc(event.occurred_at), event.event_id)
        self.tally.add(touchpoint, stamp.at, policy, event.event_id)
        if touchpoint.kind is TouchpointKind.BRANCH_VISIT or touchpoint.channel is Channel.BRANCH:
            self.visited_branch = True
        for name, value in touchpoint.traits.items():
            self._observe(name, event.source, Observation(value, 1, stamp))
        decisions = {change.channel: change.status for change in touchpoint.consent}
        # An unsubscribe link clicked in an email withdraws email consent even when the
        # upstream system did not send it as an explicit consent change.
        if touchpoint.email is not None and touchpoint.email.unsubscribed:
            decisions.setdefault(Channel.EMAIL, ConsentStatus.OPTED_OUT)
        for channel, status in decisions.items():
            self.record_consent(channel, ConsentEntry(status, stamp, event.source))

    def record_consent(self, channel: Channel, entry: ConsentEntry) -> None:
        """Keep a consent decision unless a later one is held."""
        held = self.consent.get(channel)
        if entry.stamp.supersedes(held.stamp if held else None):
            self.consent[channel] = entry

    def _observe(self, name: str, source: str, observation: Observation) -> None:
        ledger = self.traits.setdefault(name, {})
        key = (source, _value_key(observation.value))
        held = ledger.get(key)
        ledger[key] = observation if held is None else held.plus(observation)

    def absorb(self, other: Profile) -> None:
        """Take in everything another profile of the same person holds (a merge)."""
        self.created_at = min(self.created_at, other.created_at)
        self.tally.merge(other.tally)
        for id_type, count in other.identifier_counts.items():
            self.identifier_counts[id_type] = self.identifier_counts.get(id_type, 0) + count
        for name, ledger in other.traits.items():
            for (source, _), observation in ledger.items():
                self._observe(name, source, observation)
        for channel, entry in other.consent.items():
            self.record_consent(channel, entry)
        self.visited_branch = self.visited_branch or other.visited_branch

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

    def current_traits(self, rules: TraitRules | None = None) -> dict[str, TraitValue]:
        """Return the surviving trait values under the rules (cleared traits left out)."""
        rules = rules or TraitRules()
        found: dict[str, TraitValue] = {}
        for name, ledger in sorted(self.traits.items()):
            value = surviving_value(ledger, rules.rule(name), rules).value
            if value is not None:
                found[name] = value
        return found

    def current_consent(self) -> dict[Channel, ConsentState]:
        """Return the latest consent decision per channel."""
        return {
            channel: ConsentState.model_construct(
                status=entry.status, updated_at=entry.stamp.at, source=entry.source
            )
            for channel, entry in sorted(self.consent.items())
        }

    def sorted_identifier_types(self, policy: ProfilePolicy | None = None) -> list[str]:
        """Return the identifier types held, strongest first."""
        rank = (policy or ProfilePolicy()).identity.rank
        return sorted(self.identifier_types, key=lambda t: (rank(t), t))

    def changed(self, policy: ProfilePolicy | None = None) -> ProfileChanged:
        """Return the profile's published state as of its last change: no identifier values."""
        policy = policy or ProfilePolicy()
        # Built without re-validation, like the aggregates (see Tally.to_contract).
        return ProfileChanged.model_construct(
            profile_id=self.profile_id,
            version=self.version,
            lifecycle=self.stage,
            created_at=self.created_at,
            identifier_types=self.sorted_identifier_types(policy),
            reachable_channels=self.reachable_channels(),
            consent=self.current_consent(),
            traits=self.current_traits(policy.traits),
            aggregates=self.tally.to_contract(policy),
        )

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-ready snapshot stored with the profile."""
        return {
            "schema": STATE_SCHEMA,
            "identifier_counts": dict(sorted(self.identifier_counts.items())),
            "visited_branch": self.visited_branch,
            "traits": {
                name: [
                    [source, o.value, o.count, encode_time(o.stamp.at), o.stamp.event_id]
                    for (source, _), o in sorted(ledger.items(), key=lambda item: item[0])
                ]
                for name, ledger in sorted(self.traits.items())
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
        """Rebuild a profile from its stored columns and snapshot (older layouts upcast)."""
        schema = state.get("schema", STATE_SCHEMA)
        if schema > STATE_SCHEMA:
            raise ValueError(f"profile state schema {schema} is newer than this code")
        profile = cls(
            profile_id=profile_id,
            created_at=as_utc(created_at),
            updated_at=as_utc(updated_at),
            tally=Tally.from_state(state["aggregates"]),
            version=version,
            consent={
                Channel(channel): ConsentEntry(
                    ConsentStatus(raw["status"]), _stamp(raw), raw["source"]
                )
                for channel, raw in state.get("consent", {}).items()
            },
            visited_branch=bool(state.get("visited_branch", False)),
            stage=Lifecycle(lifecycle),
        )
        if schema < 2:
            # Layout 1 kept types without counts and one latest value per trait.
            profile.identifier_counts = dict.fromkeys(state.get("identifier_types", []), 1)
            for name, raw in state.get("traits", {}).items():
                profile._observe(name, "unknown", Observation(raw["value"], 1, _stamp(raw)))
            return profile
        profile.identifier_counts = dict(state.get("identifier_counts", {}))
        for name, rows in state.get("traits", {}).items():
            for source, value, count, at, event_id in rows:
                stamp = _stamp({"at": at, "event_id": event_id})
                profile._observe(name, source, Observation(value, count, stamp))
        return profile


def _stamp(raw: Mapping[str, Any]) -> Stamp:
    at = decode_time(raw["at"])
    if at is None:
        raise ValueError("a stored stamp has no time")
    return Stamp(at, raw["event_id"])
