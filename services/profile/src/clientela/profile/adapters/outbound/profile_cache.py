"""Lookup cache: stored profiles and identifier owners in Redis or in process memory.

Readers fill it on a miss; writers delete what a commit changed, right after the commit and
once more after a grace period. A reader whose database read started before a commit may
fill the old state after the first delete; it fills only if its read and fill took less
than half the grace period, so the second delete always comes after such a fill. Identifier
entries are keyed by fingerprint (no identifier value in a key name); an entry is trusted
only when the cached profile still holds the identifier, so a merge or split that moved it
needs no delete of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
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
from clientela.shared.cache import Cache, CacheUnavailableError
from clientela.shared.contracts import TouchpointRecorded

log = logging.getLogger(__name__)

_BACKEND_ERRORS = (CacheUnavailableError, redis_asyncio.RedisError, OSError)


class _Cached(msgspec.Struct, array_like=True):
    """A stored profile as cached: its columns, its snapshot as stored, its identifiers."""

    profile_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    lifecycle: str
    state: msgspec.Raw
    identifiers: list[tuple[str, str]]


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Cached)


def encode_stored(stored: StoredProfile) -> bytes:
    """Return a stored profile as cached bytes."""
    p = stored.profile
    return _ENCODER.encode(
        _Cached(
            p.profile_id,
            p.version,
            p.created_at,
            p.updated_at,
            p.stage.value,
            msgspec.Raw(p.to_json()),
            [(t, v) for t, v in stored.identifiers],
        )
    )


def decode_stored(value: bytes) -> StoredProfile:
    """Return the stored profile cached bytes hold."""
    c = _DECODER.decode(value)
    profile = Profile.from_state(
        c.profile_id, c.version, c.created_at, c.updated_at, c.lifecycle, bytes(c.state)
    )
    return StoredProfile(profile, [(t, v) for t, v in c.identifiers])


_PROFILE_PREFIX = "profile:id:"


def profile_key(profile_id: str) -> str:
    """Return the cache key of a profile."""
    return _PROFILE_PREFIX + profile_id


def identifier_key(key: IdentifierKey) -> str:
    """Return the cache key of an identifier's owner (a fingerprint: no value in the name)."""
    return "profile:owner:" + fingerprint(key)


class CachedProfileReader:
    """ProfileReader that answers lookups from the cache and fills it from the store."""

    def __init__(self, reader: ProfileReader, cache: Cache, *, ttl_s: int, grace_s: float) -> None:
        self._reader = reader
        self._cache = cache
        self._ttl = ttl_s
        # A fill is dropped when the read behind it took longer than this (see module doc).
        self._fill_within = grace_s / 2

    async def _get(self, key: str) -> bytes | None:
        try:
            return await self._cache.get(key)
        except _BACKEND_ERRORS as exc:
            log.warning("lookup cache unavailable (%s); reading the store", type(exc).__name__)
            return None

    async def _fill(self, started: float, entries: Sequence[tuple[str, bytes]]) -> None:
        if time.monotonic() - started > self._fill_within:
            return
        try:
            await self._cache.set_many(entries, self._ttl)
        except _BACKEND_ERRORS as exc:
            log.warning("lookup cache unavailable (%s); not filled", type(exc).__name__)

    async def by_identifier(self, key: IdentifierKey) -> StoredProfile | None:
        """Return the profile owning an identifier, with its identifiers, or None."""
        # The owner entry and the profile it names, in one round trip.
        try:
            owner, cached = await self._cache.get_via(identifier_key(key), _PROFILE_PREFIX)
        except _BACKEND_ERRORS as exc:
            log.warning("lookup cache unavailable (%s); reading the store", type(exc).__name__)
            owner, cached = None, None
        if cached is not None:
            hit = decode_stored(cached)
            # The owner entry may predate a merge or split that moved the identifier.
            if key in hit.identifiers:
                return hit
        started = time.monotonic()
        stored = await self._reader.by_identifier(key)
        if stored is not None:
            pid = stored.profile.profile_id
            fills = [(profile_key(pid), encode_stored(stored))]
            if owner is None or owner.decode() != pid:
                fills.append((identifier_key(key), pid.encode()))
            await self._fill(started, fills)
        return stored

    async def live(self, profile_id: str) -> StoredProfile | None:
        """Return a profile (a merged id: its survivor) with its identifiers, or None."""
        cached = await self._get(profile_key(profile_id))
        if cached is not None:
            return decode_stored(cached)
        started = time.monotonic()
        stored = await self._reader.live(profile_id)
        if stored is not None:
            pid = stored.profile.profile_id
            await self._fill(started, [(profile_key(pid), encode_stored(stored))])
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


class ProfileCacheInvalidator:
    """Deletes what a commit changed: now, and again after the grace period."""

    def __init__(self, cache: Cache, *, grace_s: float) -> None:
        self._cache = cache
        self._grace = grace_s
        self._later: dict[asyncio.Task[None], list[str]] = {}

    async def forget(
        self, profile_ids: Collection[str], keys: Collection[IdentifierKey] = ()
    ) -> None:
        """Drop cached profiles and identifier owners; raise when the cache is unreachable."""
        names = [profile_key(p) for p in sorted(profile_ids)]
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
