"""Project public and compacted topics into the console's read model.

Every write is idempotent by construction (tier moves and merges are keyed by event id,
current state is guarded by version), so a redelivered batch changes nothing and no inbox
is needed. Profiles merged away or erased are retired: later events about them are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from clientela.shared.contracts import (
    Envelope,
    ProfileChangedEvent,
    ProfileErasedEvent,
    ProfilesMergedEvent,
    ScoresUpdatedEvent,
    TierChangedEvent,
)


@dataclass(frozen=True, slots=True)
class TierMoveRecord:
    """A tier move to store."""

    event_id: str
    profile_id: str
    from_tier: str | None
    to_tier: str
    move: str
    predicted_value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """A profile's latest tier and value to store."""

    profile_id: str
    profile_version: int
    tier: str
    predicted_value: float
    segment: str | None
    lifecycle: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A profile's channel habits to store (no personal data)."""

    profile_id: str
    version: int
    lifecycle: str
    preferred_channel: str | None
    channel_counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """A merge to store."""

    event_id: str
    survivor_id: str
    merged_id: str
    rule: str
    identifier_types: list[str]
    identifier_fingerprints: list[str]
    at: datetime


@dataclass(slots=True)
class Changes:
    """What one batch changes in the read model."""

    tier_moves: list[TierMoveRecord] = field(default_factory=list)
    scores: dict[str, ScoreRecord] = field(default_factory=dict)
    profiles: dict[str, ProfileRecord] = field(default_factory=dict)
    merges: list[MergeRecord] = field(default_factory=list)
    merged_away: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(
            self.tier_moves
            or self.scores
            or self.profiles
            or self.merges
            or self.merged_away
            or self.erased
        )


class ReadModelWriter(Protocol):
    """Applies a batch's changes in one transaction."""

    async def apply(self, changes: Changes) -> None:
        """Write the changes; retired profiles first, then guarded upserts."""
        ...


def plan(events: Sequence[Envelope]) -> Changes:
    """Return what a batch of events changes, in the batch's order (later wins)."""
    changes = Changes()
    for event in events:
        if isinstance(event, TierChangedEvent):
            d = event.data
            changes.tier_moves.append(
                TierMoveRecord(
                    event_id=event.event_id,
                    profile_id=d.profile_id,
                    from_tier=d.from_tier.value if d.from_tier is not None else None,
                    to_tier=d.to_tier.value,
                    move=d.move.value,
                    predicted_value=d.predicted_value,
                    at=event.occurred_at,
                )
            )
        elif isinstance(event, ScoresUpdatedEvent):
            s = event.data
            known = changes.scores.get(s.profile_id)
            if known is None or known.profile_version <= s.profile_version:
                changes.scores[s.profile_id] = ScoreRecord(
                    profile_id=s.profile_id,
                    profile_version=s.profile_version,
                    tier=s.tier.value,
                    predicted_value=s.predicted_value,
                    segment=s.segment.value if s.segment is not None else None,
                    lifecycle=s.lifecycle.value,
                    at=event.occurred_at,
                )
        elif isinstance(event, ProfileChangedEvent):
            p = event.data
            seen = changes.profiles.get(p.profile_id)
            if seen is None or seen.version < p.version:
                changes.profiles[p.profile_id] = ProfileRecord(
                    profile_id=p.profile_id,
                    version=p.version,
                    lifecycle=p.lifecycle.value,
                    preferred_channel=p.aggregates.preferred_inbound_channel,
                    channel_counts=dict(p.aggregates.counts_by_channel),
                )
        elif isinstance(event, ProfilesMergedEvent):
            m = event.data
            changes.merges.append(
                MergeRecord(
                    event_id=event.event_id,
                    survivor_id=m.survivor_id,
                    merged_id=m.merged_id,
                    rule=m.rule,
                    identifier_types=list(m.identifier_types),
                    identifier_fingerprints=list(m.identifier_fingerprints),
                    at=event.occurred_at,
                )
            )
            changes.merged_away.add(m.merged_id)
        elif isinstance(event, ProfileErasedEvent):
            changes.erased.add(event.data.profile_id)
    retired = changes.merged_away | changes.erased
    changes.scores = {k: v for k, v in changes.scores.items() if k not in retired}
    changes.profiles = {k: v for k, v in changes.profiles.items() if k not in retired}
    changes.tier_moves = [m for m in changes.tier_moves if m.profile_id not in changes.erased]
    changes.merges = [
        m
        for m in changes.merges
        if m.survivor_id not in changes.erased and m.merged_id not in changes.erased
    ]
    return changes


async def project(events: Sequence[Envelope], writer: ReadModelWriter) -> Changes:
    """Apply a batch of events to the read model; return what changed."""
    changes = plan(events)
    if changes:
        await writer.apply(changes)
    return changes
