"""Admin use cases: split a wrong merge, erase a person, state consent, rebuild profiles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from clientela.profile.application.handle_touchpoints import (
    forget_quietly,
    new_profile_id,
    profile_changed,
    with_retries,
)
from clientela.profile.application.ports import (
    ConsentUpdate,
    ErasureReceipt,
    ProfileCache,
    ProfileHistory,
    UnitOfWork,
)
from clientela.profile.domain.identity import IdentifierKey, TouchpointIdentity
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.domain.profile import ConsentEntry, Profile, as_utc
from clientela.profile.domain.split import plan_split
from clientela.shared.codec import OutgoingEvent
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    ProfileErased,
    ProfileErasedEvent,
    derived_event_id,
    topics,
    utc_now,
)

log = logging.getLogger(__name__)


class ProfileNotFoundError(Exception):
    """No live profile has that id."""


class SplitRefusedError(Exception):
    """The split asked for is not possible (identifiers not owned, or nothing would stay)."""


@dataclass(frozen=True, slots=True)
class SplitOutcome:
    """Both sides of a split, with what moved."""

    profile_id: str
    new_profile_id: str
    identifiers_moved: int
    touchpoints_moved: int


@dataclass(frozen=True, slots=True)
class RebuildOutcome:
    """How many profiles a rebuild looked at and how many it found different."""

    profiles: int
    changed: int


def recompute(
    profile_id: str,
    created_at: datetime,
    history: ProfileHistory,
    identifiers: Collection[IdentifierKey],
    policy: ProfilePolicy,
) -> Profile:
    """Return a profile recomputed from scratch from its stored history and identifiers."""
    profile = Profile.new(profile_id, created_at, policy)
    for event in history.touchpoints:
        profile.record(event, policy)
    for update in history.consents:
        entry = ConsentEntry(
            update.status, as_utc(update.occurred_at), update.update_id, update.source
        )
        profile.record_consent(update.channel, entry)
    profile.attach_identifier_types(key[0] for key in identifiers)
    return profile


async def split_profile(
    uow: UnitOfWork,
    profile_id: str,
    named: Sequence[tuple[str, str]],
    policy: ProfilePolicy,
    *,
    request_id: str,
    source: str = "profile",
    clock: Callable[[], datetime] = utc_now,
    make_profile_id: Callable[[], str] = new_profile_id,
    cache: ProfileCache | None = None,
) -> SplitOutcome:
    """Split the named identifiers (and what follows them) off a profile into a new one."""
    rules = policy.identity
    keys = {(id_type, rules.normalize(id_type, value)) for id_type, value in named}

    async def run() -> SplitOutcome:
        async with uow:
            pid = await uow.profiles.resolve(profile_id)
            profile = (await uow.profiles.lock([pid])).get(pid)
            if profile is None:
                raise ProfileNotFoundError(profile_id)
            owned = (await uow.identities.of_profiles([pid])).get(pid, [])
            if not keys or not keys <= set(owned):
                raise SplitRefusedError("the profile does not own every identifier named")
            history = (await uow.timeline.history([pid]))[pid]
            plan = plan_split(
                [
                    TouchpointIdentity(e.event_id, rules.keys(e.data.identifiers))
                    for e in history.touchpoints
                ],
                owned,
                keys,
                rules,
            )
            if plan.identifiers >= set(owned):
                raise SplitRefusedError("every identifier would leave: nothing to split from")
            new_id = make_profile_id()
            now = clock()
            await uow.identities.reassign_keys(sorted(plan.identifiers), new_id)
            await uow.timeline.reassign_events(sorted(plan.event_ids), new_id)
            await uow.identities.separate(pid, new_id)
            stays = ProfileHistory(
                [e for e in history.touchpoints if e.event_id not in plan.event_ids],
                history.consents,
            )
            leaves = ProfileHistory(
                [e for e in history.touchpoints if e.event_id in plan.event_ids], []
            )
            kept = recompute(pid, profile.created_at, stays, set(owned) - plan.identifiers, policy)
            kept.version = profile.version
            split_off = recompute(new_id, now, leaves, plan.identifiers, policy)
            for side in (kept, split_off):
                side.mark_changed(now, policy)
            await uow.profiles.save([kept, split_off])
            await uow.stage_encoded(
                [
                    profile_changed(side, [], now, source, policy, cause_id=request_id)
                    for side in (kept, split_off)
                ]
            )
            await uow.commit()
        await forget_quietly(cache, [pid, new_id], plan.identifiers)
        return SplitOutcome(pid, new_id, len(plan.identifiers), len(plan.event_ids))

    return await with_retries(run)


async def erase_profile(
    uow: UnitOfWork,
    profile_id: str,
    *,
    request_id: str,
    source: str = "profile",
    clock: Callable[[], datetime] = utc_now,
    cache: ProfileCache | None = None,
) -> ErasureReceipt:
    """Erase a person: identifiers, touchpoints and golden record go; a tombstone is staged.

    The person's cached profile and identifier owners are dropped after the commit; an
    unreachable cache raises (asking again repeats the drop and returns the same receipt).
    """
    owned: list[IdentifierKey] = []

    async def run() -> ErasureReceipt:
        nonlocal owned
        async with uow:
            earlier = await uow.profiles.erasure(profile_id)
            if earlier is not None:
                return earlier
            pid = await uow.profiles.resolve(profile_id)
            if not await uow.profiles.lock([pid]):
                raise ProfileNotFoundError(profile_id)
            owned = (await uow.identities.of_profiles([pid])).get(pid, [])
            now = clock()
            receipt = ErasureReceipt(
                request_id=request_id,
                profile_id=pid,
                erased_at=now,
                identifiers_removed=await uow.identities.delete_profile(pid),
                touchpoints_removed=await uow.timeline.delete_profile(pid),
                forwards_removed=await uow.profiles.drop_forwards_to(pid),
            )
            await uow.profiles.delete([pid])
            await uow.profiles.record_erasure(receipt)
            await uow.stage_tombstones(topics.PROFILES, [pid])
            await uow.stage([_profile_erased(receipt, source)])
            await uow.commit()
        log.info("profile %s erased under request %s", pid, request_id)
        return receipt

    receipt = await with_retries(run)
    if cache is not None:
        await cache.forget([receipt.profile_id, profile_id], owned)
    return receipt


def _profile_erased(receipt: ErasureReceipt, source: str) -> OutgoingEvent:
    return OutgoingEvent(
        topic=topics.PROFILE_ERASURES,
        key=receipt.profile_id,
        event=ProfileErasedEvent(
            event_id=derived_event_id("profile.erased", receipt.profile_id, receipt.request_id),
            occurred_at=receipt.erased_at,
            source=source,
            correlation_id=receipt.request_id,
            causation_id=receipt.request_id,
            data=ProfileErased(
                profile_id=receipt.profile_id,
                request_id=receipt.request_id,
                erased_at=receipt.erased_at,
            ),
        ),
    )


async def update_consent(
    uow: UnitOfWork,
    profile_id: str,
    channel: Channel,
    status: ConsentStatus,
    policy: ProfilePolicy,
    *,
    stated_by: str,
    occurred_at: datetime,
    update_id: str,
    source: str = "profile",
    clock: Callable[[], datetime] = utc_now,
    cache: ProfileCache | None = None,
) -> Profile:
    """Record a consent decision stated through the API; the latest decision still wins."""

    async def run() -> Profile:
        async with uow:
            pid = await uow.profiles.resolve(profile_id)
            profile = (await uow.profiles.lock([pid])).get(pid)
            if profile is None:
                raise ProfileNotFoundError(profile_id)
            update = ConsentUpdate(update_id, pid, channel, status, stated_by, occurred_at)
            await uow.timeline.add_consent(update)
            entry = ConsentEntry(status, as_utc(occurred_at), update_id, stated_by)
            profile.record_consent(channel, entry)
            now = clock()
            profile.mark_changed(now, policy)
            await uow.profiles.save([profile])
            await uow.stage_encoded(
                [profile_changed(profile, [], now, source, policy, cause_id=update_id)]
            )
            await uow.commit()
        await forget_quietly(cache, [profile.profile_id])
        return profile

    return await with_retries(run)


async def rebuild_profiles(
    uow: UnitOfWork,
    policy: ProfilePolicy,
    *,
    page_size: int = 200,
    source: str = "profile",
    clock: Callable[[], datetime] = utc_now,
    cache: ProfileCache | None = None,
) -> RebuildOutcome:
    """Recompute every profile from its stored touchpoints; save and announce those that differ."""
    cursor: str | None = None
    seen = changed_count = 0
    while True:
        async with uow:
            ids = await uow.profiles.ids_after(cursor, page_size)
            if not ids:
                break
            stored = await uow.profiles.lock(ids)
            histories = await uow.timeline.history(ids)
            identifiers = await uow.identities.of_profiles(ids)
            now = clock()
            changed: list[Profile] = []
            for pid, profile in sorted(stored.items()):
                fresh = recompute(
                    pid,
                    profile.created_at,
                    histories.get(pid, ProfileHistory([], [])),
                    identifiers.get(pid, []),
                    policy,
                )
                if fresh.to_json_sorted() != profile.to_json_sorted():
                    fresh.version = profile.version
                    fresh.mark_changed(now, policy)
                    changed.append(fresh)
            await uow.profiles.save(changed)
            await uow.stage_encoded(
                [
                    profile_changed(p, [], now, source, policy, cause_id=f"rebuild:{p.profile_id}")
                    for p in changed
                ]
            )
            await uow.commit()
        await forget_quietly(cache, [p.profile_id for p in changed])
        seen += len(stored)
        changed_count += len(changed)
        cursor = ids[-1]
    return RebuildOutcome(seen, changed_count)
