"""The identity key: the partition key that keeps one person's touchpoints in order."""

from __future__ import annotations

import hashlib

from clientela.shared.contracts import Identifiers

IDENTITY_KEY_LENGTH = 32


def key_for(kind: str, value: str) -> str:
    """Return the SHA-256 hex (first 32 chars) of "type:value"."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:IDENTITY_KEY_LENGTH]


def identity_key(identifiers: Identifiers) -> str:
    """Return the key of the strongest identifier (see Identifiers.pairs for the order)."""
    kind, value = identifiers.pairs()[0]
    return key_for(kind, value)
