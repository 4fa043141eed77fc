"""The limits and choices that govern what ingest accepts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

PhoneCheck = Literal["possible", "valid"]


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    """Per-event limits and normalisation choices, fixed at start from the settings."""

    max_events: int = 500
    max_event_bytes: int = 32_768
    max_future_skew: timedelta = timedelta(seconds=300)
    default_region: str = "US"
    # "possible" checks length and prefix only, so new or fictional ranges still pass;
    # "valid" also requires the number to be in an allocated range per the bundled metadata.
    phone_check: PhoneCheck = "possible"
