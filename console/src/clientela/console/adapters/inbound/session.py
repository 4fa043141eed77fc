"""The signed-in user: the API key sealed in the signed session cookie, and CSRF tokens.

The session cookie is signed (Starlette's SessionMiddleware), HttpOnly and SameSite=Strict;
the key inside it is also encrypted (Fernet, key derived from the session secret), so the
cookie never shows the key to whoever reads it, and a cookie past its age opens to nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request


@dataclass(frozen=True, slots=True)
class User:
    """Who is signed in: their key (for the services) and whether it is an admin key."""

    key: str
    admin: bool


class KeySeal:
    """Encrypts and authenticates an API key for the session cookie."""

    def __init__(self, secret: str, max_age_s: int) -> None:
        derived = hashlib.sha256(b"clientela-console/key-seal\x00" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._max_age_s = max_age_s

    def seal(self, key: str) -> str:
        """Return the key encrypted, with a timestamp."""
        return self._fernet.encrypt(key.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """Return the key, or None when the token is forged or older than the session age."""
        try:
            return self._fernet.decrypt(sealed.encode(), ttl=self._max_age_s).decode()
        except (InvalidToken, ValueError):
            return None


def csrf_token(request: Request) -> str:
    """Return the session's CSRF token, creating one for a fresh session."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    """Return whether a submitted form carries the session's CSRF token."""
    expected = request.session.get("csrf")
    return (
        isinstance(expected, str)
        and isinstance(submitted, str)
        and hmac.compare_digest(expected.encode(), submitted.encode())
    )


def sign_in(request: Request, seal: KeySeal, key: str, admin: bool) -> None:
    """Start a fresh session for the key (a new CSRF token too: no fixation)."""
    request.session.clear()
    request.session["auth"] = seal.seal(key)
    request.session["admin"] = admin
    csrf_token(request)


def signed_in(request: Request, seal: KeySeal) -> User | None:
    """Return the session's user, or None when nobody (or an expired key) is signed in."""
    sealed = request.session.get("auth")
    if not isinstance(sealed, str):
        return None
    key = seal.open(sealed)
    if key is None:
        return None
    return User(key=key, admin=bool(request.session.get("admin")))


def flash(request: Request, kind: str, text: str) -> None:
    """Keep a message for the next page shown."""
    request.session["flash"] = {"kind": kind, "text": text}


def take_flash(request: Request) -> dict[str, str] | None:
    """Return and forget the message kept for this page."""
    message = request.session.pop("flash", None)
    return message if isinstance(message, dict) else None
