"""Use case: apply a batch of touchpoints to the identity graph, profiles and timelines."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from clientela.profile.application.ports import OutgoingEvent, ReceivedTouchpoint, UnitOfWork
from clientela.profile.domain.identity import TouchpointIdentity, all_keys, identifier_keys, resolve
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.domain.profile import Profile
from clientela.shared.contracts import ProfileChangedEvent, derived_event_id, topics, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch did, in counts (nothing personal, fit for logs and metrics)."""

    applied: int = 0
    duplicates: int = 0
    profiles_created: int = 0
    profiles_changed: int = 0
    contested_identifiers: int = 0


def _new_profile_id() -> str:
    return str(uuid.uuid4())


async def handle_touchpoints(
    batch: Sequence[ReceivedTouchpoint],
    uow: UnitOfWork,
    policy: ProfilePolicy,
    *,
    source: str = "profile",
    clock: Callable[[], datetime] = utc_now,
    new_profile_id: Callable[[], str] = _new_profile_id,
) -> BatchOutcome:
    """Apply a batch in one transaction; a redelivered touchpoint changes nothing."""
    if not batch:
        return BatchOutcome()
    async with uow:
        fresh = await uow.inbox.claim_new([r.event.event_id for r in batch])
        if fresh:
            # The inbox forgets old ids; the timeline remembers every touchpoint it holds.
            fresh -= await uow.timeline.known(fresh)
        todo: list[ReceivedTouchpoint] = []
        for received in batch:
            if received.event.event_id in fresh:
                fresh.discard(received.event.event_id)
                todo.append(received)
        if not todo:
            await uow.commit()
            return BatchOutcome(duplicates=len(batch))

        identities = [
            TouchpointIdentity(r.event.event_id, identifier_keys(r.event.data.identifiers))
            for r in todo
        ]
        owners = await uow.identities.owners(all_keys(identities))
        resolution = resolve(identities, owners, new_profile_id)

        now = clock()
        created = set(resolution.new_profiles)
        existing = set(resolution.profile_of.values()) - created
        profiles = await uow.profiles.get_many(existing) if existing else {}
        for profile_id in sorted(existing - profiles.keys()):
            # An identifier pointing at no profile row means a lost write; start it afresh
            # rather than drop the touchpoint (a rebuild from the timeline restores it).
            log.warning("profile %s owns identifiers but has no record; recreating", profile_id)
            profiles[profile_id] = Profile.new(profile_id, now, policy)
        for profile_id in resolution.new_profiles:
            profiles[profile_id] = Profile.new(profile_id, now, policy)
        for claim in resolution.claims:
            profiles[claim.profile_id].attach_identifier_types([claim.id_type])

        by_profile: dict[str, list[ReceivedTouchpoint]] = {}
        for received in todo:
            profile_id = resolution.profile_of[received.event.event_id]
            profiles[profile_id].record(received.event, policy)
            by_profile.setdefault(profile_id, []).append(received)

        # Sorted keys: concurrent writers then lock rows in the same order and cannot deadlock.
        changed = [profiles[profile_id] for profile_id in sorted(by_profile)]
        for profile in changed:
            profile.mark_changed(now, policy)
        await uow.profiles.save_many(changed)
        await uow.identities.attach(
            sorted(resolution.claims, key=lambda c: (c.id_type, c.id_value))
        )
        await uow.timeline.add([(resolution.profile_of[r.event.event_id], r.event) for r in todo])
        await uow.outbox.stage(
            [_profile_changed(p, by_profile[p.profile_id], now, source) for p in changed]
        )
        await uow.commit()
    return BatchOutcome(
        applied=len(todo),
        duplicates=len(batch) - len(todo),
        profiles_created=len(created),
        profiles_changed=len(changed),
        contested_identifiers=len(resolution.contested),
    )


def _profile_changed(
    profile: Profile, causes: Sequence[ReceivedTouchpoint], now: datetime, source: str
) -> OutgoingEvent:
    last = causes[-1].event
    accepted = [r.accepted_at_ms for r in causes if r.accepted_at_ms is not None]
    event = ProfileChangedEvent(
        event_id=derived_event_id("profile.changed", profile.profile_id, str(profile.version)),
        occurred_at=now,
        source=source,
        correlation_id=last.correlation_id or last.event_id,
        causation_id=last.event_id,
        data=profile.changed(),
    )
    return OutgoingEvent(
        topic=topics.PROFILES,
        key=profile.profile_id,
        event=event,
        accepted_at_ms=min(accepted) if accepted else None,
    )
