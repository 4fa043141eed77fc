"""Use case: apply a batch of touchpoints to the identity graph, profiles and timelines."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import msgspec

from clientela.profile.application.ports import (
    ConcurrentChangeError,
    LockedOwners,
    ProfileCache,
    ProfileCacheUnavailableError,
    ReceivedTouchpoint,
    UnitOfWork,
)
from clientela.profile.domain.identity import (
    IdentifierKey,
    MergeDecision,
    ProfileFacts,
    TouchpointIdentity,
    all_keys,
    fingerprint,
    resolve,
)
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.domain.profile import Profile
from clientela.profile.domain.published import PublishedProfileChanged
from clientela.shared.codec import EncodedEvent, OutgoingEvent
from clientela.shared.contracts import (
    ProfileChangedEvent,
    ProfilesMerged,
    ProfilesMergedEvent,
    derived_event_id,
    topics,
    utc_now,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ATTEMPTS = 8
# Owners read before the row locks were taken may be stale; re-read a few times, then retry.
_LOCK_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch did, in counts (nothing personal, fit for logs and metrics)."""

    applied: int = 0
    duplicates: int = 0
    profiles_created: int = 0
    profiles_changed: int = 0
    merges: int = 0
    conflicts: int = 0
    over_limit: int = 0
    attempts: int = 1


_ID_POOL = 256
_fresh_ids: list[str] = []
_fresh_ids_pid = 0


def new_profile_id() -> str:
    """Return a fresh random profile id (a UUIDv4 string)."""
    global _fresh_ids_pid
    # Drawn from the OS 256 at a time: one system call and one hex conversion instead of a
    # UUID object per id. The pool is dropped in a forked child, which must not repeat ids.
    if not _fresh_ids or _fresh_ids_pid != os.getpid():
        raw = bytearray(os.urandom(16 * _ID_POOL))
        for i in range(0, len(raw), 16):
            raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
            raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw.hex()
        _fresh_ids[:] = [
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
            f"{h[i + 20 : i + 32]}"
            for i in range(0, len(h), 32)
        ]
        _fresh_ids_pid = os.getpid()
    return _fresh_ids.pop()


async def with_retries(run: Callable[[], Awaitable[T]], attempts: int = MAX_ATTEMPTS) -> T:
    """Run a transaction, again from the start when a concurrent writer got in the way."""
    for attempt in range(1, attempts + 1):
        try:
            return await run()
        except ConcurrentChangeError:
            if attempt == attempts:
                raise
            log.info("concurrent change (attempt %d); retrying the transaction", attempt)
            # Jitter keeps two instances that collided from colliding again in lockstep.
            await asyncio.sleep(random.uniform(0.0, 0.02 * attempt))
    raise AssertionError("unreachable")


async def forget_quietly(
    cache: ProfileCache | None,
    profile_ids: Collection[str],
    keys: Collection[IdentifierKey] = (),
) -> None:
    """Clear what a commit changed from the lookup cache; an unreachable cache is logged
    (its entries expire after their time to live), not a reason to apply a batch again."""
    if cache is None or not (profile_ids or keys):
        return
    try:
        await cache.forget(profile_ids, keys)
    except ProfileCacheUnavailableError as exc:
        log.warning("lookup cache not cleared (%s): entries may be stale until they expire", exc)


@dataclass(frozen=True, slots=True)
class Committed:
    """What a committed batch changed, for the lookup cache."""

    profiles: list[Profile]
    # The identifiers each profile gained, and the profiles that absorbed others.
    added: dict[str, list[IdentifierKey]]
    merged_into: set[str]
    # Profiles gone (merged away) or whose cached versions cannot be trusted.
    removed: list[str]
    # When the commit ended (`time.monotonic()`).
    at: float


async def refresh_quietly(cache: ProfileCache | None, committed: Committed) -> None:
    """Bring the lookup cache up to a commit; an unreachable cache is logged (its entries
    expire after their time to live), not a reason to apply a batch again."""
    if cache is None:
        return
    try:
        await cache.refresh(
            committed.profiles, committed.added, committed.merged_into, committed.at
        )
    except ProfileCacheUnavailableError as exc:
        log.warning("lookup cache not refreshed (%s): entries may be stale until they expire", exc)
    await forget_quietly(cache, committed.removed)


async def handle_touchpoints(
    batch: Sequence[ReceivedTouchpoint],
    uow: UnitOfWork,
    policy: ProfilePolicy,
    *,
    source: str = "profile",
    clock: Callable[[], datetime] = utc_now,
    new_profile_id: Callable[[], str] = new_profile_id,
    cache: ProfileCache | None = None,
) -> BatchOutcome:
    """Apply a batch in one transaction; a redelivered touchpoint changes nothing."""
    if not batch:
        return BatchOutcome()
    attempts = 0

    async def run() -> tuple[BatchOutcome, Committed]:
        nonlocal attempts
        attempts += 1
        return await _apply(batch, uow, policy, source, clock, new_profile_id)

    outcome, committed = await with_retries(run)
    await refresh_quietly(cache, committed)
    if attempts > 1:
        outcome = BatchOutcome(**{**_fields(outcome), "attempts": attempts})
    return outcome


def _fields(outcome: BatchOutcome) -> dict[str, int]:
    return {name: getattr(outcome, name) for name in BatchOutcome.__dataclass_fields__}


async def _lock_owners(
    uow: UnitOfWork, keys: set[IdentifierKey], first: LockedOwners | None = None
) -> LockedOwners:
    """Lock every profile owning one of the keys, so no other writer moves those identifiers
    (first: what lock_owners already returned for these keys in this transaction)."""
    if not keys:
        return LockedOwners({}, {}, set())
    locked = first if first is not None else await uow.lock_owners(keys)
    owners, profiles, separated = locked.owners, locked.profiles, locked.separated
    stale = locked.stale
    for _ in range(_LOCK_ROUNDS):
        if not stale and set(owners.values()) <= profiles.keys():
            return LockedOwners(owners, profiles, separated)
        # An owner vanished (merged away, erased) or changed while this transaction waited
        # for its lock: read the owners again, now under the locks already held.
        again = await uow.lock_owners(keys)
        profiles.update(again.profiles)
        separated |= again.separated
        if again.owners == owners and not again.stale:
            # Identifiers point at a profile with no row: a lost write; the caller recreates it.
            return LockedOwners(owners, profiles, separated)
        owners, stale = again.owners, again.stale
    raise ConcurrentChangeError("identifier owners kept moving")


async def _apply(
    batch: Sequence[ReceivedTouchpoint],
    uow: UnitOfWork,
    policy: ProfilePolicy,
    source: str,
    clock: Callable[[], datetime],
    make_profile_id: Callable[[], str],
) -> tuple[BatchOutcome, Committed]:
    """Apply the batch; return what it did and what it changed."""
    rules = policy.identity
    # The identifiers of every touchpoint, read with the inbox check in one round trip: a
    # redelivered touchpoint is rare, and a batch that has one reads its owners again.
    every = [
        TouchpointIdentity(r.event.event_id, rules.keys(r.event.data.identifiers)) for r in batch
    ]
    every_key = all_keys(every)
    async with uow:
        fresh, read = await uow.fresh_and_owners([r.event.event_id for r in batch], every_key)
        todo: list[ReceivedTouchpoint] = []
        identities: list[TouchpointIdentity] = []
        for received, identity in zip(batch, every, strict=True):
            if received.event.event_id in fresh:
                fresh.discard(received.event.event_id)
                todo.append(received)
                identities.append(identity)
        if not todo:
            await uow.commit()
            return BatchOutcome(duplicates=len(batch)), Committed(
                [], {}, set(), [], time.monotonic()
            )

        now = clock()
        keys = all_keys(identities) if len(todo) < len(batch) else every_key
        locked = await _lock_owners(uow, keys, read if keys == every_key else None)
        owners, profiles = locked.owners, locked.profiles
        recreated = sorted(set(owners.values()) - profiles.keys())
        for profile_id in recreated:
            # An identifier pointing at no profile row means a lost write; start it afresh
            # rather than drop the touchpoint (a rebuild from the timeline restores it).
            log.warning("profile %s owns identifiers but has no record; recreating", profile_id)
            profiles[profile_id] = Profile.new(profile_id, now, policy)
        facts = {
            pid: ProfileFacts(p.created_at, dict(p.identifier_counts))
            for pid, p in profiles.items()
        }
        stored = set(profiles)
        resolution = resolve(
            identities, owners, facts, rules, make_profile_id, now, locked.separated
        )

        created = set(resolution.new_profiles) | set(resolution.forward)
        for profile_id in sorted(created - profiles.keys()):
            profiles[profile_id] = Profile.new(profile_id, now, policy)
        for claim in resolution.claims:
            profiles[claim.profile_id].attach_identifier_types([claim.id_type])

        by_profile: dict[str, list[ReceivedTouchpoint]] = {}
        for received in todo:
            profile_id = resolution.profile_of[received.event.event_id]
            by_profile.setdefault(profile_id, []).append(received)
        touched = {resolution.final(p) for p in by_profile}
        # Merges fold whole profiles, so the order they happened in the batch does not matter
        # for the result; applying them in order keeps chains (a into b, b into c) simple.
        for merge in resolution.merges:
            profiles[merge.survivor_id].absorb(profiles.pop(merge.merged_id))
            touched.add(resolution.final(merge.survivor_id))
        for profile_id, received_list in by_profile.items():
            profile = profiles[profile_id]
            for received in received_list:
                profile.record(received.event, policy)

        # Another instance attaching one of these identifiers meanwhile (or one the batch saw
        # unowned but left out) starts the batch again: it then joins (or merges with) that
        # instance's profile.
        claims = sorted(resolution.claims, key=lambda c: (c.id_type, c.id_value))
        unclaimed = keys - owners.keys() - {(c.id_type, c.id_value) for c in claims}
        lost = await uow.identities.attach(claims, unclaimed)
        if lost:
            raise ConcurrentChangeError(f"{len(lost)} identifier(s) changed owner concurrently")
        # A profile born and merged within this batch was never announced: nothing forwards
        # to it and no one is told; a stored profile merged away is announced and forwarded.
        announced = [m for m in resolution.merges if m.merged_id in stored]
        moves = {m.merged_id: resolution.final(m.merged_id) for m in announced}
        if moves:
            await uow.merge_away(moves, now)
        if resolution.conflicts:
            await uow.identities.record_conflicts(resolution.conflicts)

        # Sorted keys: concurrent writers then lock rows in the same order and cannot deadlock.
        changed = [profiles[profile_id] for profile_id in sorted(touched)]
        for profile in changed:
            profile.mark_changed(now, policy)
        await uow.profiles.save(changed)
        await uow.timeline.add([(resolution.profile_of[r.event.event_id], r) for r in todo])
        # Everything the batch announces goes to the outbox in one write: merges, tombstones
        # of the merged ids, then the changed profiles.
        causes = {r.event.event_id: r for r in todo} if announced else {}
        await uow.stage_encoded(
            [
                *(
                    EncodedEvent.of(_profiles_merged(m, causes[m.event_id], now, source))
                    for m in announced
                ),
                *(EncodedEvent(topics.PROFILES, merged_id) for merged_id in sorted(moves)),
                *(
                    profile_changed(p, by_profile.get(p.profile_id, ()), now, source, policy)
                    for p in changed
                ),
            ]
        )
        await uow.commit()
        committed_at = time.monotonic()
    outcome = BatchOutcome(
        applied=len(todo),
        duplicates=len(batch) - len(todo),
        profiles_created=len(set(resolution.new_profiles)),
        profiles_changed=len(changed),
        merges=len(announced),
        conflicts=len(resolution.conflicts),
        over_limit=resolution.over_limit,
    )
    # A recreated profile starts again at version 1: cached versions of it are not older.
    kept = [p for p in changed if p.profile_id not in recreated]
    added: dict[str, list[IdentifierKey]] = {}
    for claim in resolution.claims:
        added.setdefault(resolution.final(claim.profile_id), []).append(
            (claim.id_type, claim.id_value)
        )
    merged_into = {resolution.final(m.survivor_id) for m in resolution.merges}
    return outcome, Committed(kept, added, merged_into, sorted(moves) + recreated, committed_at)


def _profiles_merged(
    merge: MergeDecision, cause: ReceivedTouchpoint, now: datetime, source: str
) -> OutgoingEvent:
    event = cause.event
    return OutgoingEvent(
        topic=topics.PROFILE_MERGES,
        key=merge.survivor_id,
        event=ProfilesMergedEvent(
            event_id=derived_event_id("profiles.merged", merge.survivor_id, merge.merged_id),
            occurred_at=now,
            source=source,
            correlation_id=event.correlation_id or event.event_id,
            causation_id=event.event_id,
            data=ProfilesMerged(
                survivor_id=merge.survivor_id,
                merged_id=merge.merged_id,
                rule=merge.rule,
                identifier_types=[key[0] for key in merge.keys],
                identifier_fingerprints=[fingerprint(key) for key in merge.keys],
            ),
        ),
        accepted_at_ms=cause.accepted_at_ms,
    )


_ENCODER = msgspec.json.Encoder()
_PROFILE_CHANGED = ProfileChangedEvent.EVENT_TYPE
_PROFILE_CHANGED_VERSION = ProfileChangedEvent.SCHEMA_VERSION


def profile_changed(
    profile: Profile,
    causes: Sequence[ReceivedTouchpoint],
    now: datetime,
    source: str,
    policy: ProfilePolicy,
    *,
    cause_id: str | None = None,
    correlation_id: str | None = None,
) -> EncodedEvent:
    """Return the ProfileChanged announcing a profile's current version, encoded.

    One per changed profile per batch, encoded from Structs laid out as the contract: no model
    is built or validated on the way (a test decodes it with the contract).
    """
    accepted_at_ms: int | None = None
    if causes:
        last = causes[-1].event
        cause_id = last.event_id
        correlation_id = last.correlation_id or last.event_id
        for received in causes:
            at = received.accepted_at_ms
            if at is not None and (accepted_at_ms is None or at < accepted_at_ms):
                accepted_at_ms = at
    event_id = derived_event_id("profile.changed", profile.profile_id, str(profile.version))
    value = _ENCODER.encode(
        PublishedProfileChanged(
            event_id,
            _PROFILE_CHANGED,
            _PROFILE_CHANGED_VERSION,
            now,
            source,
            correlation_id or cause_id,
            cause_id,
            profile.published(policy),
        )
    )
    return EncodedEvent(
        topic=topics.PROFILES,
        key=profile.profile_id,
        value=value,
        contract=ProfileChangedEvent,
        event_id=event_id,
        causation_id=cause_id,
        accepted_at_ms=accepted_at_ms,
        linked_causes=tuple(r.event.event_id for r in causes[:-1]) if len(causes) > 1 else (),
    )
