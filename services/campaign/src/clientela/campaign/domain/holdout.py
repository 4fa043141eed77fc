"""Deterministic control groups: the same person always lands in the same bucket."""

from __future__ import annotations

import hashlib

_GLOBAL_SALT = "clientela.global-control"


def bucket(*parts: str) -> float:
    """Map the parts to a stable number in [0, 1), uniform over many ids."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def global_bucket(profile_id: str) -> float:
    """Return the person's bucket for the global control group (the same for every campaign)."""
    return bucket(_GLOBAL_SALT, profile_id)


def campaign_bucket(campaign_id: str, profile_id: str) -> float:
    """Return the person's bucket for one campaign's holdout, independent across campaigns."""
    return bucket(campaign_id, profile_id)
