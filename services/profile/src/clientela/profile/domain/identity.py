"""Identity resolution: which profile a touchpoint belongs to, what it adds, what it merges."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

import msgspec
import phonenumbers

from clientela.shared.contracts import IdentifierType
from clientela.shared.readers.touchpoint import IdentifiersView

IdentifierKey = tuple[str, str]
"""An identifier as (type, normalised value)."""

DEFAULT_PRIORITY: tuple[str, ...] = tuple(kind.value for kind in IdentifierType)

DEFAULT_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        IdentifierType.CUSTOMER_ID.value: 1,
        IdentifierType.EMAIL.value: 3,
        IdentifierType.PHONE.value: 3,
        IdentifierType.DEVICE_ID.value: 10,
        IdentifierType.ANONYMOUS_ID.value: 50,
    }
)

# Values seen on test traffic and placeholders typed into forms: linking on them would merge
# strangers. Operators extend the list (shared devices, kiosk ids) through configuration.
DEFAULT_BLOCKED: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        IdentifierType.EMAIL.value: (
            "test@test.com",
            "test@example.com",
            "noreply@*",
            "no-reply@*",
            "donotreply@*",
            "*@example.invalid",
        ),
        IdentifierType.PHONE.value: (
            "+10000000000",
            "+11111111111",
            "+12345678900",
            "+15555555555",
            "+19999999999",
        ),
    }
)

_PATTERN_CHARS = frozenset("*?[")
_BUILT_IN: tuple[str, ...] = tuple(kind.value for kind in IdentifierType)
_EMAIL = IdentifierType.EMAIL.value
_PHONE = IdentifierType.PHONE.value


def fingerprint(key: IdentifierKey) -> str:
    """Return the SHA-256 of 'type:value': what events may carry instead of the value."""
    return hashlib.sha256(f"{key[0]}:{key[1]}".encode()).hexdigest()


def _is_e164(value: str) -> bool:
    return len(value) > 2 and value[0] == "+" and value[1:].isdigit()


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """Identifier priority, per-type limits on one profile, blocked values, phone region."""

    priority: tuple[str, ...] = DEFAULT_PRIORITY
    limits: Mapping[str, int] = field(default_factory=lambda: DEFAULT_LIMITS)
    default_limit: int = 5
    blocked: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_BLOCKED)
    default_region: str = "US"
    _rank: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _exact: frozenset[IdentifierKey] = field(init=False, repr=False, compare=False)
    # Per type, the blocked patterns as one regular expression (fnmatch's own translation).
    _patterns: Mapping[str, re.Pattern[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Patterns and values are normalised like identifiers, so configuration may be loose.
        exact: set[IdentifierKey] = set()
        patterns: dict[str, list[str]] = {}
        for id_type, values in self.blocked.items():
            for raw in values:
                if _PATTERN_CHARS & set(raw):
                    patterns.setdefault(id_type, []).append(raw.strip().lower())
                else:
                    exact.add((id_type, self.normalize(id_type, raw)))
        rank = {id_type: index for index, id_type in enumerate(self.priority)}
        object.__setattr__(self, "_rank", MappingProxyType(rank))
        object.__setattr__(self, "_exact", frozenset(exact))
        compiled = {
            k: re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in v))
            for k, v in patterns.items()
        }
        object.__setattr__(self, "_patterns", MappingProxyType(compiled))

    def rank(self, id_type: str) -> int:
        """Return the rank of a type: lower is stronger; unlisted types come last."""
        return self._rank.get(id_type, len(self._rank))

    def limit(self, id_type: str) -> int:
        """Return how many identifiers of a type one profile may hold."""
        return self.limits.get(id_type, self.default_limit)

    def normalize(self, id_type: str, value: str) -> str:
        """Return the canonical value, as ingest writes it (emails lowercased, phones E.164)."""
        value = value.strip()
        if id_type == _EMAIL:
            return value.lower()
        if id_type == _PHONE and not _is_e164(value):
            try:
                number = phonenumbers.parse(value, self.default_region)
            except phonenumbers.NumberParseException:
                return value
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        return value

    def is_blocked(self, key: IdentifierKey) -> bool:
        """Return whether a (normalised) identifier must never link anything."""
        if key in self._exact:
            return True
        patterns = self._patterns.get(key[0])
        return patterns is not None and patterns.match(key[1].lower()) is not None

    def keys(self, identifiers: IdentifiersView) -> list[IdentifierKey]:
        """Return a touchpoint's usable identifiers: normalised, unblocked, strongest first."""
        found: dict[IdentifierKey, None] = {}
        # The built-in fields read directly (Identifiers.pairs walks the enum: slower).
        pairs = [(t, v) for t in _BUILT_IN if (v := getattr(identifiers, t)) is not None]
        if identifiers.extra:
            pairs.extend(sorted(identifiers.extra.items()))
        for id_type, value in pairs:
            key = (id_type, self.normalize(id_type, value))
            if key[1] and not self.is_blocked(key):
                found[key] = None
        if len(found) < 2:
            return list(found)
        rank = self._rank
        last = len(rank)
        return sorted(found, key=lambda k: rank.get(k[0], last))


# One of each per touchpoint and per attached identifier: frozen Structs are built in C, a
# frozen dataclass sets each field through object.__setattr__.
class TouchpointIdentity(msgspec.Struct, frozen=True, gc=False):
    """What resolution needs of a touchpoint: its id and its identifiers, strongest first."""

    event_id: str
    keys: Sequence[IdentifierKey]


@dataclass(slots=True)
class ProfileFacts:
    """What merge rules need of a profile: its age and identifier counts by type."""

    created_at: datetime
    identifier_counts: dict[str, int]
    # Profiles born in the same batch share created_at; birth order still says who is older.
    birth: int = 0

    def age_key(self, profile_id: str) -> tuple[datetime, int, str]:
        """Return the sort key under which the oldest profile comes first."""
        return (self.created_at, self.birth, profile_id)


class IdentifierClaim(msgspec.Struct, frozen=True, gc=False):
    """An identifier newly attached to a profile."""

    id_type: str
    id_value: str
    profile_id: str


@dataclass(frozen=True, slots=True)
class MergeDecision:
    """Two profiles proved to be one person: merged_id now forwards to survivor_id."""

    survivor_id: str
    merged_id: str
    rule: str
    keys: tuple[IdentifierKey, ...]
    event_id: str


@dataclass(frozen=True, slots=True)
class IdentityConflict:
    """A merge the rules refused, kept for review; the touchpoint joined profile_id."""

    event_id: str
    profile_id: str
    other_profile_id: str
    reason: str
    keys: tuple[IdentifierKey, ...]


@dataclass(slots=True)
class Resolution:
    """The outcome of resolving a batch: owners, new profiles, claims, merges, conflicts."""

    profile_of: dict[str, str] = field(default_factory=dict)
    new_profiles: list[str] = field(default_factory=list)
    claims: list[IdentifierClaim] = field(default_factory=list)
    merges: list[MergeDecision] = field(default_factory=list)
    conflicts: list[IdentityConflict] = field(default_factory=list)
    over_limit: int = 0
    forward: dict[str, str] = field(default_factory=dict)

    def final(self, profile_id: str) -> str:
        """Return the profile an id ended up as after the batch's merges."""
        while profile_id in self.forward:
            profile_id = self.forward[profile_id]
        return profile_id


def all_keys(touchpoints: Iterable[TouchpointIdentity]) -> set[IdentifierKey]:
    """Return every identifier a batch mentions (what to look up, in one query)."""
    return {key for tp in touchpoints for key in tp.keys}


def separation(first: str, second: str) -> tuple[str, str]:
    """Return the canonical form of a pair of profiles an admin split apart."""
    return (first, second) if first <= second else (second, first)


class _Resolver:
    def __init__(
        self,
        owners: Mapping[IdentifierKey, str],
        facts: dict[str, ProfileFacts],
        separated: Iterable[tuple[str, str]],
        rules: IdentityRules,
        new_profile_id: Callable[[], str],
        now: datetime,
    ) -> None:
        self.known = dict(owners)
        self.facts = facts
        self.separated = set(separated)
        self.rules = rules
        self.new_profile_id = new_profile_id
        self.now = now
        self.result = Resolution()

    def owner(self, key: IdentifierKey) -> str | None:
        holder = self.known.get(key)
        return self.result.final(holder) if holder is not None else None

    def refusal(self, first: str, second: str) -> str | None:
        if separation(first, second) in self.separated:
            return "separated_by_admin"
        a, b = self.facts[first].identifier_counts, self.facts[second].identifier_counts
        for id_type in sorted(a.keys() & b.keys(), key=self.rules.rank):
            if a[id_type] + b[id_type] > self.rules.limit(id_type):
                return f"limit:{id_type}"
        return None

    def link(self, tp: TouchpointIdentity, current: str, other: str) -> str:
        """Merge other into current (or the reverse) when allowed; return the profile to use."""
        mine = next(k for k in tp.keys if self.owner(k) == current)
        theirs = next(k for k in tp.keys if self.owner(k) == other)
        keys = (mine, theirs)
        reason = self.refusal(current, other)
        if reason is not None:
            self.result.conflicts.append(
                IdentityConflict(tp.event_id, current, other, reason, keys)
            )
            return current
        survivor, merged = sorted((current, other), key=lambda pid: self.facts[pid].age_key(pid))
        rule = f"shared_touchpoint:{mine[0]}+{theirs[0]}"
        self.result.merges.append(MergeDecision(survivor, merged, rule, keys, tp.event_id))
        self.result.forward[merged] = survivor
        counts = self.facts[survivor].identifier_counts
        for id_type, count in self.facts[merged].identifier_counts.items():
            counts[id_type] = counts.get(id_type, 0) + count
        self.facts[survivor].created_at = min(
            self.facts[survivor].created_at, self.facts[merged].created_at
        )
        return survivor

    def add(self, tp: TouchpointIdentity) -> None:
        holders = list(dict.fromkeys(o for k in tp.keys if (o := self.owner(k)) is not None))
        if holders:
            current = holders[0]
            for other in holders[1:]:
                other = self.result.final(other)
                if other != current:
                    current = self.link(tp, current, other)
        else:
            current = self.new_profile_id()
            self.result.new_profiles.append(current)
            self.facts[current] = ProfileFacts(self.now, {}, birth=len(self.result.new_profiles))
        counts = self.facts[current].identifier_counts
        for key in tp.keys:
            if key in self.known:
                continue
            if counts.get(key[0], 0) >= self.rules.limit(key[0]):
                self.result.over_limit += 1
                continue
            counts[key[0]] = counts.get(key[0], 0) + 1
            self.known[key] = current
            self.result.claims.append(IdentifierClaim(key[0], key[1], current))
        self.result.profile_of[tp.event_id] = current

    def finish(self) -> Resolution:
        result = self.result
        if not result.forward:
            # No merge in the batch: every id is already final.
            return result
        result.profile_of = {e: result.final(p) for e, p in result.profile_of.items()}
        result.claims = [
            IdentifierClaim(c.id_type, c.id_value, result.final(c.profile_id))
            for c in result.claims
        ]
        gone = set(result.forward)
        result.new_profiles = [p for p in result.new_profiles if p not in gone]
        return result


def resolve(
    touchpoints: Sequence[TouchpointIdentity],
    owners: Mapping[IdentifierKey, str],
    facts: dict[str, ProfileFacts],
    rules: IdentityRules,
    new_profile_id: Callable[[], str],
    now: datetime,
    separated: Iterable[tuple[str, str]] = (),
) -> Resolution:
    """Resolve a batch exactly as if its touchpoints arrived one at a time, in order.

    A touchpoint naming no known identifier creates a profile. One naming identifiers of a
    single profile joins it. One naming identifiers of several profiles joins the owner of its
    strongest identifier and merges the others into the oldest of them, unless the merge would
    exceed a per-type limit or an admin split them apart: then the merge is refused and kept as
    a conflict. Unowned identifiers are attached while the profile's limit for the type allows.
    `facts` must hold every profile `owners` names; it is updated in place.
    """
    resolver = _Resolver(owners, facts, separated, rules, new_profile_id, now)
    for tp in touchpoints:
        resolver.add(tp)
    return resolver.finish()
