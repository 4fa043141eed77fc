"""API keys: stored as SHA-256, compared in constant time, each with scopes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request, status
from pydantic import SecretStr

from clientela.shared.settings import ApiKeySpec, AuthSettings

Scope = Literal["write", "read", "admin"]


def hash_key(raw: str) -> str:
    """Return the SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the key's name and scopes."""

    name: str
    scopes: frozenset[str]


class KeyRing:
    """The keys a service accepts."""

    def __init__(self, keys: list[ApiKeySpec]) -> None:
        self._keys = [
            (bytes.fromhex(k.sha256), Principal(k.name, frozenset(k.scopes))) for k in keys
        ]

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyRing:
        """Build from configured keys, plus the development keys in development."""
        keys = list(settings.api_keys)
        if settings.environment == "development":
            dev: list[tuple[str, SecretStr, frozenset[Scope]]] = [
                ("dev-write", settings.dev_write_key, frozenset({"write"})),
                ("dev-read", settings.dev_read_key, frozenset({"read"})),
                ("dev-admin", settings.dev_admin_key, frozenset({"read", "admin"})),
            ]
            keys += [
                ApiKeySpec(name=name, sha256=hash_key(secret.get_secret_value()), scopes=scopes)
                for name, secret, scopes in dev
            ]
        return cls(keys)

    def authenticate(self, raw: str) -> Principal | None:
        """Return the key's principal, comparing against every key in constant time."""
        digest = hashlib.sha256(raw.encode()).digest()
        found: Principal | None = None
        for stored, principal in self._keys:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


def presented_key(request: Request) -> str | None:
    """Return the key from `Authorization: Bearer`, Basic (key as username) or `X-API-Key`."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return request.headers.get("x-api-key") or None


def require_scope(keyring: KeyRing, scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """Return a FastAPI dependency that admits only keys holding the scope."""

    async def dependency(request: Request) -> Principal:
        raw = presented_key(request)
        if raw is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "an API key is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = keyring.authenticate(raw)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scope not in principal.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this key lacks the '{scope}' scope")
        return principal

    return dependency
