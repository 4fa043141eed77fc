"""Lookup cache: stored profiles and identifier owners in Redis or in process memory.

A profile is cached as two versioned entries, its record and its identifier values, each
stamped with the profile version it was read at; a lookup is served from the two only when
they are of the same version. Readers fill both on a miss. A writer, after
its commit, fences every profile it changed at its new version (`shared.cache.fence_many`: a
fill read before the commit cannot land after it), puts the new record of those the cache
holds, and brings their held identifier lists up to date: the identifiers the batch attached
are appended to the list of the version it started from; after a merge (whose identifiers
the writer does not know) the list gives way to a bare mark, and the next lookup reads the
store. Profiles that disappear (merged away, erased) and changes made by admin operations are
deleted instead, right after the commit and once more after a grace period; a reader or a
writer whose write would land later than half that period after its read or commit does not
write. Identifier entries are keyed by fingerprint (no identifier value in a key name); an
entry is trusted only when the cached profile still holds the identifier, so a merge or
split that moved it needs no delete of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import msgspec
import redis.asyncio as redis_asyncio

from clientela.profile.application.ports import (
    ProfileCacheUnavailableError,
    ProfileReader,
    StoredProfile,
    TimelineQuery,
)
from clientela.profile.domain.identity import IdentifierKey, fingerprint
from clientela.profile.domain.profile import Profile
from clientela.shared.cache import Cache, CacheUnavailableError, unversioned
from clientela.shared.contracts import TouchpointRecorded

log = logging.getLogger(__name__)

_BACKEND_ERRORS = (CacheUnavailableError, redis_asyncio.RedisError, OSError)


class _CachedProfile(msgspec.Struct, array_like=True):
    """A stored profile as cached: its columns and its snapshot as stored."""

    profile_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    lifecycle: str
    state: msgspec.Raw


_ENCODER = msgspec.json.Encoder()
_PROFILE_DECODER = msgspec.json.Decoder(_CachedProfile)
_IDENTIFIERS_DECODER = msgspec.json.Decoder(list[tuple[str, str]])

# Not the "profile:id:" of the unversioned layout: during a rolling upgrade neither version
# reads the other's entries.
_PROFILE_PREFIX = "profile:rec:"
_IDENTIFIERS_PREFIX = "profile:ids:"
_PREFIXES = (_PROFILE_PREFIX, _IDENTIFIERS_PREFIX)


def profile_key(profile_id: str) -> str:
    """Return the cache key of a profile's record."""
    return _PROFILE_PREFIX + profile_id


def identifiers_key(profile_id: str) -> str:
    """Return the cache key of the identifier values a profile owns."""
    return _IDENTIFIERS_PREFIX + profile_id


def identifier_key(key: IdentifierKey) -> str:
    """Return the cache key of an identifier's owner (a fingerprint: no value in the name)."""
    return "profile:owner:" + fingerprint(key)


def encode_profile(profile: Profile) -> bytes:
    """Return a profile's record as cached."""
    return _ENCODER.encode(
        _CachedProfile(
            profile.profile_id,
            profile.version,
            profile.created_at,
            profile.updated_at,
            profile.stage.value,
            msgspec.Raw(profile.to_json()),
        )
    )


def cached_entries(stored: StoredProfile) -> list[tuple[str, int, bytes]]:
    """Return the versioned cache entries of a stored profile: its record, its identifiers."""
    p = stored.profile
    # Never empty, even for a profile without identifiers: empty is the writers' mark.
    identifiers = _ENCODER.encode([[t, v] for t, v in stored.identifiers])
    return [
        (profile_key(p.profile_id), p.version, encode_profile(p)),
        (identifiers_key(p.profile_id), p.version, identifiers),
    ]


def cached_profile(record: bytes | None, identifiers: bytes | None) -> StoredProfile | None:
    """Return the stored profile two cache entries hold, or None when they do not make one
    (absent, marked changed, or not of one version)."""
    found, owned = unversioned(record), unversioned(identifiers)
    if found is None or owned is None or not found[1] or not owned[1] or owned[0] != found[0]:
        return None
    c = _PROFILE_DECODER.decode(found[1])
    profile = Profile.from_state(
        c.profile_id, c.version, c.created_at, c.updated_at, c.lifecycle, bytes(c.state)
    )
    return StoredProfile(profile, _IDENTIFIERS_DECODER.decode(owned[1]))


class CachedProfileReader:
    """ProfileReader that answers lookups from the cache and fills it from the store."""

    def __init__(self, reader: ProfileReader, cache: Cache, *, ttl_s: int, grace_s: float) -> None:
        self._reader = reader
        self._cache = cache
        self._ttl = ttl_s
        # A fill is dropped when the read behind it took longer than this (see module doc).
        self._fill_within = grace_s / 2

    async def _fill(
        self, started: float, stored: StoredProfile, owners: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        if time.monotonic() - started > self._fill_within:
            return
        try:
            await self._cache.put_newer_many(cached_entries(stored), self._ttl)
            if owners:
                await self._cache.set_many(owners, self._ttl)
        except _BACKEND_ERRORS as exc:
            log.warning("lookup cache unavailable (%s); not filled", type(exc).__name__)

    async def by_identifier(self, key: IdentifierKey) -> StoredProfile | None:
        """Return the profile owning an identifier, with its identifiers, or None."""
        # The owner entry and the profile it names, in one round trip.
        try:
            owner, (record, identifiers) = await self._cache.get_via(identifier_key(key), _PREFIXES)
        except _BACKEND_ERRORS as exc:
            log.warning("lookup cache unavailable (%s); reading the store", type(exc).__name__)
            owner, record, identifiers = None, None, None
        hit = cached_profile(record, identifiers)
        # The owner entry may predate a merge or split that moved the identifier.
        if hit is not None and key in hit.identifiers:
            return hit
        started = time.monotonic()
        stored = await self._reader.by_identifier(key)
        if stored is not None:
            pid = stored.profile.profile_id
            owners = [] if owner == pid.encode() else [(identifier_key(key), pid.encode())]
            await self._fill(started, stored, owners)
        return stored

    async def live(self, profile_id: str) -> StoredProfile | None:
        """Return a profile (a merged id: its survivor) with its identifiers, or None."""
        try:
            record, identifiers = await self._cache.get_many(
                [profile_key(profile_id), identifiers_key(profile_id)]
            )
        except _BACKEND_ERRORS as exc:
            log.warning("lookup cache unavailable (%s); reading the store", type(exc).__name__)
            record, identifiers = None, None
        hit = cached_profile(record, identifiers)
        if hit is not None:
            return hit
        started = time.monotonic()
        stored = await self._reader.live(profile_id)
        if stored is not None:
            await self._fill(started, stored)
        return stored

    async def get(self, profile_id: str) -> StoredProfile | None:
        """Return a profile with its identifiers, or None (from the store)."""
        return await self._reader.get(profile_id)

    async def resolve(self, profile_id: str) -> str:
        """Return the live id a profile id forwards to (itself when not merged)."""
        return await self._reader.resolve(profile_id)

    async def find(self, key: IdentifierKey) -> str | None:
        """Return the id of the profile owning an identifier, or None."""
        return await self._reader.find(key)

    async def timeline(self, profile_id: str, query: TimelineQuery) -> list[TouchpointRecorded]:
        """Return one page of the profile's touchpoints, newest first (from the store)."""
        return await self._reader.timeline(profile_id, query)

    async def exists(self, profile_id: str) -> bool:
        """Return whether the profile is known."""
        return await self._reader.exists(profile_id)


class ProfileCacheWriter:
    """Puts what a commit changed in the cache, or deletes it: now and after a grace period."""

    def __init__(self, cache: Cache, *, ttl_s: int, grace_s: float) -> None:
        self._cache = cache
        self._ttl = ttl_s
        self._grace = grace_s
        self._later: dict[asyncio.Task[None], list[str]] = {}

    async def refresh(
        self,
        profiles: Sequence[Profile],
        added: Mapping[str, Sequence[IdentifierKey]],
        merged_into: Collection[str],
        committed: float,
    ) -> None:
        """Fence committed profiles, put the held ones in place of older versions and bring
        held identifier lists up to date; raise when the cache is unreachable."""
        if not profiles:
            return
        # Every changed profile is fenced at its new version (no fill read before the commit
        # lands after it); only the entries the cache holds are written, so a batch sends the
        # records of the people being looked up, not of everyone it touched.
        # Identifier lists need no fence: a lookup is served only from a record and a list
        # of the same version, readers fill both at one version, and the writer brings the
        # list of every record it puts to the record's version (below).
        try:
            held = await self._cache.fence_many(
                [(profile_key(p.profile_id), p.version) for p in profiles]
            )
            lists = [p for p, cached in zip(profiles, held, strict=True) if cached]
            puts = [(profile_key(p.profile_id), p.version, encode_profile(p)) for p in lists]
            # The list follows its record from version to version, with the identifiers the
            # batch attached, when it is the list of the version the batch started from.
            # Otherwise (a writer in between whose refresh has not come yet, or a merge, whose
            # identifiers this writer does not know) it gives way to a mark, and the next
            # lookup reads the store.
            puts += [
                (identifiers_key(p.profile_id), p.version, b"")
                for p in lists
                if p.profile_id in merged_into
            ]
            extends = [
                (
                    identifiers_key(p.profile_id),
                    p.version - 1,
                    p.version,
                    _ENCODER.encode([[t, v] for t, v in added.get(p.profile_id, ())])[1:-1],
                )
                for p in lists
                if p.profile_id not in merged_into
            ]
            if (puts or extends) and time.monotonic() - committed > self._grace / 2:
                # Too late to write personal data: an erasure committed meanwhile may have made
                # its second delete already. Readers fill them again (the fences hold).
                log.info("lookup cache refreshed late: its entries are deleted instead")
                await self._cache.release_many(
                    [key for key, *_ in puts] + [key for key, *_ in extends]
                )
                return
            if puts:
                await self._cache.put_newer_many(puts, self._ttl)
            if extends:
                await self._cache.extend_many(extends, self._ttl)
        except _BACKEND_ERRORS as exc:
            raise ProfileCacheUnavailableError(type(exc).__name__) from exc

    async def forget(
        self, profile_ids: Collection[str], keys: Collection[IdentifierKey] = ()
    ) -> None:
        """Drop cached profiles and identifier owners; raise when the cache is unreachable."""
        names = [name for p in sorted(profile_ids) for name in (profile_key(p), identifiers_key(p))]
        names += [identifier_key(k) for k in sorted(keys)]
        if not names:
            return
        try:
            await self._cache.release_many(names)
        except _BACKEND_ERRORS as exc:
            raise ProfileCacheUnavailableError(type(exc).__name__) from exc
        task = asyncio.create_task(self._again(names))
        self._later[task] = names
        task.add_done_callback(lambda done: self._later.pop(done, None))

    async def _again(self, names: list[str]) -> None:
        await asyncio.sleep(self._grace)
        try:
            await self._cache.release_many(names)
        except _BACKEND_ERRORS as exc:
            log.warning("lookup cache unavailable (%s): second delete lost", type(exc).__name__)

    async def drain(self) -> None:
        """Run the pending second deletes now (on shutdown)."""
        names = sorted({name for pending in self._later.values() for name in pending})
        for task in list(self._later):
            task.cancel()
        if names:
            try:
                await self._cache.release_many(names)
            except _BACKEND_ERRORS as exc:
                log.warning("lookup cache unavailable (%s) at shutdown", type(exc).__name__)
