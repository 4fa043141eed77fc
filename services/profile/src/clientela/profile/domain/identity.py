"""Identity resolution: which profile a touchpoint belongs to, and which identifiers it adds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from clientela.shared.contracts import Identifiers, IdentifierType

IdentifierKey = tuple[str, str]
"""An identifier as (type, normalised value)."""

_BUILT_IN_RANK = {kind.value: rank for rank, kind in enumerate(IdentifierType)}


def priority(id_type: str) -> int:
    """Return the rank of an identifier type: lower is stronger; operator types come last."""
    return _BUILT_IN_RANK.get(id_type, len(_BUILT_IN_RANK))


def normalize_identifier(id_type: str, value: str) -> str:
    """Return the canonical form of an identifier value (emails compare case-insensitively)."""
    value = value.strip()
    return value.lower() if id_type == IdentifierType.EMAIL.value else value


def identifier_keys(identifiers: Identifiers) -> list[IdentifierKey]:
    """Return a touchpoint's identifiers, normalised, strongest first, without repeats."""
    keys = (
        (id_type, normalize_identifier(id_type, value)) for id_type, value in identifiers.pairs()
    )
    return sorted(dict.fromkeys(k for k in keys if k[1]), key=lambda k: priority(k[0]))


@dataclass(frozen=True, slots=True)
class TouchpointIdentity:
    """What resolution needs of a touchpoint: its id and its identifiers, strongest first."""

    event_id: str
    keys: Sequence[IdentifierKey]


@dataclass(frozen=True, slots=True)
class IdentifierClaim:
    """An identifier newly attached to a profile."""

    id_type: str
    id_value: str
    profile_id: str


@dataclass(frozen=True, slots=True)
class ContestedLink:
    """A touchpoint named identifiers of two profiles: a candidate for a later merge."""

    event_id: str
    profile_id: str
    other_profile_id: str
    id_type: str


@dataclass(slots=True)
class Resolution:
    """The outcome of resolving a batch: owner per touchpoint, new profiles and identifiers."""

    profile_of: dict[str, str] = field(default_factory=dict)
    new_profiles: list[str] = field(default_factory=list)
    claims: list[IdentifierClaim] = field(default_factory=list)
    contested: list[ContestedLink] = field(default_factory=list)


def all_keys(touchpoints: Iterable[TouchpointIdentity]) -> set[IdentifierKey]:
    """Return every identifier a batch mentions (what to look up, in one query)."""
    return {key for tp in touchpoints for key in tp.keys}


def resolve(
    touchpoints: Sequence[TouchpointIdentity],
    owners: Mapping[IdentifierKey, str],
    new_profile_id: Callable[[], str],
) -> Resolution:
    """Resolve a batch exactly as if its touchpoints arrived one at a time, in order.

    A touchpoint naming no known identifier creates a profile; otherwise it joins the owner of
    its strongest known identifier and brings along its unowned identifiers. Identifiers that
    belong to another profile stay where they are (recorded as contested, for merges).
    Processing touchpoints one by one in batch order keeps the identity graph independent of
    how records happen to be batched.
    """
    known = dict(owners)
    result = Resolution()
    for tp in touchpoints:
        owner = next((known[key] for key in tp.keys if key in known), None)
        if owner is None:
            owner = new_profile_id()
            result.new_profiles.append(owner)
        for id_type, id_value in tp.keys:
            holder = known.get((id_type, id_value))
            if holder is None:
                known[(id_type, id_value)] = owner
                result.claims.append(IdentifierClaim(id_type, id_value, owner))
            elif holder != owner:
                result.contested.append(ContestedLink(tp.event_id, owner, holder, id_type))
        result.profile_of[tp.event_id] = owner
    return result
