"""Read use cases: the golden record, lookup by identifier, and the timeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from clientela.profile.application.ports import ProfileReader, StoredProfile, TimelineQuery
from clientela.profile.domain.identity import IdentifierKey
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.domain.profile import as_utc
from clientela.shared.contracts import (
    Channel,
    ConsentState,
    Lifecycle,
    ProfileAggregates,
    TouchpointRecorded,
)
from clientela.shared.contracts.base import TraitValue

MAX_TIMELINE_PAGE = 500


@dataclass(frozen=True, slots=True)
class GoldenRecord:
    """Everything known of one person, identifier values included (never published)."""

    profile_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    lifecycle: Lifecycle
    identifiers: Sequence[IdentifierKey]
    identifier_types: Sequence[str]
    reachable_channels: Sequence[Channel]
    traits: dict[str, TraitValue]
    consent: dict[Channel, ConsentState]
    aggregates: ProfileAggregates


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """Touchpoints newest first, and the cursor of the next page (None at the end)."""

    profile_id: str
    items: Sequence[TouchpointRecorded]
    next_before: datetime | None
    next_before_event_id: str | None


async def golden_record(
    reader: ProfileReader, profile_id: str, now: datetime, policy: ProfilePolicy
) -> GoldenRecord | None:
    """Return a profile's golden record (following a merged id to its survivor), or None."""
    stored = await reader.live(profile_id)
    return _golden(stored, now, policy) if stored is not None else None


def _golden(stored: StoredProfile, now: datetime, policy: ProfilePolicy) -> GoldenRecord:
    profile = stored.profile
    return GoldenRecord(
        profile_id=profile.profile_id,
        version=profile.version,
        created_at=profile.created_at,
        updated_at=profile.updated_at,
        lifecycle=profile.lifecycle(now, policy),
        identifiers=sorted(stored.identifiers, key=lambda k: (policy.identity.rank(k[0]), k)),
        identifier_types=profile.sorted_identifier_types(policy),
        reachable_channels=profile.reachable_channels(),
        traits=profile.current_traits(policy.traits),
        consent=profile.current_consent(),
        aggregates=profile.tally.to_contract(policy),
    )


async def golden_record_by_identifier(
    reader: ProfileReader, id_type: str, value: str, now: datetime, policy: ProfilePolicy
) -> GoldenRecord | None:
    """Return the golden record of the profile owning an identifier, or None."""
    key = (id_type, policy.identity.normalize(id_type, value))
    stored = await reader.by_identifier(key)
    return _golden(stored, now, policy) if stored is not None else None


async def timeline_page(
    reader: ProfileReader, profile_id: str, query: TimelineQuery
) -> TimelinePage | None:
    """Return one page of a profile's timeline, or None when the profile is unknown."""
    profile_id = await reader.resolve(profile_id)
    if not await reader.exists(profile_id):
        return None
    limit = max(1, min(query.limit, MAX_TIMELINE_PAGE))
    # One row more than asked tells whether another page follows.
    rows = await reader.timeline(
        profile_id,
        TimelineQuery(
            limit=limit + 1,
            before=query.before,
            before_event_id=query.before_event_id,
            kind=query.kind,
            channel=query.channel,
        ),
    )
    items = rows[:limit]
    if len(rows) <= limit or not items:
        return TimelinePage(profile_id, items, None, None)
    last = items[-1]
    return TimelinePage(profile_id, items, as_utc(last.occurred_at), last.event_id)
