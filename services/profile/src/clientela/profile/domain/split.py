"""Unmerge: which identifiers and touchpoints leave a wrongly merged profile."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from clientela.profile.domain.identity import IdentifierKey, IdentityRules, TouchpointIdentity


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """What moves to the new profile: identifiers and touchpoint event ids."""

    identifiers: frozenset[IdentifierKey]
    event_ids: frozenset[str]


def plan_split(
    touchpoints: Sequence[TouchpointIdentity],
    owned: Collection[IdentifierKey],
    named: Collection[IdentifierKey],
    rules: IdentityRules,
) -> SplitPlan:
    """Decide what leaves a profile when an admin splits the named identifiers off it.

    Identifiers are labelled strongest type first: a named identifier leaves; another follows
    the side of the strongest identifiers it was seen with (a majority of touchpoints; ties and
    identifiers never seen with a stronger one stay). A touchpoint goes with its strongest
    identifier, so the touchpoint that linked the two people stays with the original profile
    when its strongest identifier does.
    """
    owned_set = set(owned)
    leaving = set(named) & owned_set
    decided: dict[IdentifierKey, bool] = dict.fromkeys(leaving, True)
    mine = [[k for k in tp.keys if k in owned_set] for tp in touchpoints]
    for key in sorted(owned_set - leaving, key=lambda k: (rules.rank(k[0]), k)):
        votes = [0, 0]
        for keys in mine:
            if key not in keys:
                continue
            stronger = [k for k in keys if rules.rank(k[0]) < rules.rank(key[0]) and k in decided]
            if stronger:
                votes[decided[stronger[0]]] += 1
        decided[key] = votes[1] > votes[0]
    moving_ids = frozenset(k for k, leaves in decided.items() if leaves)
    moving_events = frozenset(
        tp.event_id
        for tp, keys in zip(touchpoints, mine, strict=True)
        if keys and keys[0] in moving_ids
    )
    return SplitPlan(moving_ids, moving_events)
