"""The identity key: the partition key that keeps one person's touchpoints in order."""

from __future__ import annotations

import hashlib

from clientela.shared.contracts import Identifiers

IDENTITY_KEY_LENGTH = 32


def identity_key(identifiers: Identifiers) -> str:
    """Return the SHA-256 hex (first 32 chars) of "type:value" of the strongest identifier."""
    kind, value = identifiers.pairs()[0]
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:IDENTITY_KEY_LENGTH]
