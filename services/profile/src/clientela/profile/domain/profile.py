"""The profile: one person's golden record, built from their touchpoints in any order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from clientela.profile.domain.aggregates import Tally, decode_time
from clientela.profile.domain.policy import ProfilePolicy, Survivorship, TraitRules
from clientela.profile.domain.published import PublishedConsent, PublishedProfile
from clientela.shared.contracts import (
    Channel,
    ConsentState,
    ConsentStatus,
    IdentifierType,
    Lifecycle,
    ProfileChanged,
    TouchpointKind,
)
from clientela.shared.contracts.base import TraitValue
from clientela.shared.readers.touchpoint import TouchpointRecordedView

STATE_SCHEMA = 3
"""Version of the snapshot layout written by Profile.to_state (3: the first sale)."""

# Which contact point makes which channel reachable.
_CHANNELS: tuple[Channel, ...] = tuple(Channel)
_CONTACT_POINTS_MAX = 4096
_CONTACT_POINTS: dict[
    tuple[int, frozenset[str], bool], tuple[Any, tuple[str, ...], tuple[Channel, ...]]
] = {}
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


class ConsentEntry(msgspec.Struct, frozen=True):
    """A consent decision for one channel, when and through which system it was given."""

    status: ConsentStatus
    at: datetime
    event_id: str
    source: str

    @property
    def stamp(self) -> Stamp:
        """Return when the decision was stated."""
        return Stamp(self.at, self.event_id)


class TraitStatement(msgspec.Struct, frozen=True, array_like=True):
    """A trait value as stored: who stated it, how often, and the latest statement."""

    source: str
    value: TraitValue
    count: int
    at: datetime
    event_id: str


class Snapshot(msgspec.Struct, kw_only=True):
    """The stored JSON of a profile (layouts 2 and 3 decode into it; see Profile.from_state)."""

    schema: int = STATE_SCHEMA
    identifier_counts: dict[str, int] = msgspec.field(default_factory=dict)
    visited_branch: bool = False
    traits: dict[str, list[TraitStatement]] = msgspec.field(default_factory=dict)
    consent: dict[Channel, ConsentEntry] = msgspec.field(default_factory=dict)
    aggregates: Tally


_SNAPSHOT_DECODER = msgspec.json.Decoder(Snapshot)
_ENCODER = msgspec.json.Encoder()
_SORTED_ENCODER = msgspec.json.Encoder(order="deterministic")


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
    if moment.tzinfo is UTC:
        return moment
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

    def record(self, event: TouchpointRecordedView, policy: ProfilePolicy) -> None:
        """Fold a touchpoint into the profile; the result is the same in any arrival order."""
        touchpoint = event.data
        at = event.occurred_at
        if at.tzinfo is not UTC:
            at = as_utc(at)
        self.tally.add(touchpoint, at, policy, event.event_id)
        if touchpoint.kind is TouchpointKind.BRANCH_VISIT or touchpoint.channel is Channel.BRANCH:
            self.visited_branch = True
        # Most touchpoints state no trait and no consent: nothing is built for them.
        if touchpoint.traits:
            stamp = Stamp(at, event.event_id)
            for name, value in touchpoint.traits.items():
                self._observe(name, event.source, Observation(value, 1, stamp))
        email = touchpoint.email
        if not touchpoint.consent and (email is None or not email.unsubscribed):
            return
        decisions = {change.channel: change.status for change in touchpoint.consent}
        # An unsubscribe link clicked in an email withdraws email consent even when the
        # upstream system did not send it as an explicit consent change.
        if email is not None and email.unsubscribed:
            decisions.setdefault(Channel.EMAIL, ConsentStatus.OPTED_OUT)
        for channel, status in decisions.items():
            self.record_consent(channel, ConsentEntry(status, at, event.event_id, event.source))

    def record_consent(self, channel: Channel, entry: ConsentEntry) -> None:
        """Keep a consent decision unless a later one is held."""
        held = self.consent.get(channel)
        if held is None or (entry.at, entry.event_id) > (held.at, held.event_id):
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

    def reachable_channels(self, id_types: Iterable[str] | None = None) -> list[Channel]:
        """Return the channels the profile has a contact point for, in a stable order."""
        reachable = {
            channel
            for id_type in (self.identifier_types if id_types is None else id_types)
            for channel in _CHANNELS_OF_IDENTIFIER.get(id_type, ())
        }
        if self.visited_branch:
            reachable.add(Channel.BRANCH)
        return [channel for channel in _CHANNELS if channel in reachable]

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
                status=entry.status, updated_at=entry.at, source=entry.source
            )
            for channel, entry in sorted(self.consent.items())
        }

    def sorted_identifier_types(self, policy: ProfilePolicy | None = None) -> list[str]:
        """Return the identifier types held, strongest first."""
        rank = (policy or ProfilePolicy()).identity.rank
        return sorted(self.identifier_types, key=lambda t: (rank(t), t))

    def published(self, policy: ProfilePolicy) -> PublishedProfile:
        """Return the profile laid out as ProfileChanged (what the topic carries)."""
        id_types, reachable = self._contact_points(policy)
        return PublishedProfile(
            self.profile_id,
            self.version,
            self.stage,
            self.created_at,
            id_types,
            reachable,
            {
                channel: PublishedConsent(e.status, e.at, e.source)
                for channel, e in self.consent.items()
            }
            if self.consent
            else {},
            self.current_traits(policy.traits) if self.traits else {},
            self.tally.published(policy),
        )

    def _contact_points(self, policy: ProfilePolicy) -> tuple[list[str], list[Channel]]:
        """Return the identifier types (strongest first) and the reachable channels."""
        # Few combinations of types exist: remembered per rule set, they cost one lookup
        # instead of a sort and enum hashing for every announced profile.
        types = frozenset(t for t, count in self.identifier_counts.items() if count > 0)
        key = (id(policy.identity), types, self.visited_branch)
        found = _CONTACT_POINTS.get(key)
        if found is None or found[0] is not policy.identity:
            id_types = self.sorted_identifier_types(policy)
            found = (policy.identity, tuple(id_types), tuple(self.reachable_channels(id_types)))
            if len(_CONTACT_POINTS) >= _CONTACT_POINTS_MAX:
                _CONTACT_POINTS.clear()
            _CONTACT_POINTS[key] = found
        return list(found[1]), list(found[2])

    def changed(self, policy: ProfilePolicy | None = None) -> ProfileChanged:
        """Return the profile's published state as of its last change: no identifier values."""
        policy = policy or ProfilePolicy()
        # Built without re-validation, like the aggregates (see Tally.to_contract).
        published = msgspec.structs.asdict(self.published(policy))
        published["consent"] = self.current_consent()
        published["aggregates"] = self.tally.to_contract(policy)
        return ProfileChanged.model_construct(**published)

    def snapshot(self) -> Snapshot:
        """Return what is stored of the profile besides its columns."""
        return Snapshot(
            identifier_counts=self.identifier_counts,
            visited_branch=self.visited_branch,
            traits={
                name: [
                    TraitStatement(source, o.value, o.count, o.stamp.at, o.stamp.event_id)
                    for (source, _), o in sorted(ledger.items(), key=lambda item: item[0])
                ]
                for name, ledger in self.traits.items()
            },
            consent=self.consent,
            aggregates=self.tally,
        )

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-ready snapshot, keys and sets sorted (equal profiles, equal dicts)."""
        state: dict[str, Any] = msgspec.to_builtins(self.snapshot(), order="deterministic")
        return state

    def to_json(self) -> bytes:
        """Return the snapshot as JSON: what the store keeps."""
        return _ENCODER.encode(self.snapshot())

    def to_json_sorted(self) -> bytes:
        """Return the snapshot as JSON with keys and sets sorted: equal profiles, equal bytes."""
        return _SORTED_ENCODER.encode(self.snapshot())

    @classmethod
    def from_state(
        cls,
        profile_id: str,
        version: int,
        created_at: datetime,
        updated_at: datetime,
        lifecycle: str,
        state: Mapping[str, Any] | str | bytes,
    ) -> Profile:
        """Rebuild a profile from its stored columns and snapshot (older layouts upcast)."""
        if isinstance(state, str | bytes):
            try:
                snapshot = _SNAPSHOT_DECODER.decode(state)
            except msgspec.ValidationError:
                snapshot = _from_layout_1(json.loads(state))
        elif state.get("schema", STATE_SCHEMA) < 2:
            snapshot = _from_layout_1(state)
        else:
            snapshot = msgspec.convert(state, type=Snapshot)
        if snapshot.schema > STATE_SCHEMA:
            raise ValueError(f"profile state schema {snapshot.schema} is newer than this code")
        tally = snapshot.aggregates
        tally.assume_unknown_first_sale()
        profile = cls(
            profile_id=profile_id,
            created_at=as_utc(created_at),
            updated_at=as_utc(updated_at),
            tally=tally,
            version=version,
            identifier_counts=snapshot.identifier_counts,
            consent=snapshot.consent,
            visited_branch=snapshot.visited_branch,
            stage=Lifecycle(lifecycle),
        )
        for name, rows in snapshot.traits.items():
            for row in rows:
                observation = Observation(row.value, row.count, Stamp(row.at, row.event_id))
                profile._observe(name, row.source, observation)
        return profile


def _from_layout_1(state: Mapping[str, Any]) -> Snapshot:
    """Upcast layout 1, which kept types without counts and one latest value per trait."""
    return Snapshot(
        schema=1,
        identifier_counts=dict.fromkeys(state.get("identifier_types", []), 1),
        visited_branch=bool(state.get("visited_branch", False)),
        traits={
            name: [TraitStatement("unknown", raw["value"], 1, *_stamp(raw))]
            for name, raw in state.get("traits", {}).items()
        },
        consent=msgspec.convert(state.get("consent", {}), type=dict[Channel, ConsentEntry]),
        aggregates=Tally.from_state(state["aggregates"]),
    )


def _stamp(raw: Mapping[str, Any]) -> tuple[datetime, str]:
    at = decode_time(raw["at"])
    if at is None:
        raise ValueError("a stored stamp has no time")
    return at, raw["event_id"]
