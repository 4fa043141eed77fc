"""Which of a profile's identifiers linked a merge (merge events carry fingerprints only)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def fingerprint(id_type: str, value: str) -> str:
    """Return the SHA-256 of 'type:value', as merge events name linking identifiers."""
    return hashlib.sha256(f"{id_type}:{value}".encode()).hexdigest()


def linking(
    identifiers: Iterable[tuple[str, str]], fingerprints: Iterable[str]
) -> set[tuple[str, str]]:
    """Return the identifiers whose fingerprints a merge named."""
    named = set(fingerprints)
    return {(t, v) for t, v in identifiers if fingerprint(t, v) in named}
