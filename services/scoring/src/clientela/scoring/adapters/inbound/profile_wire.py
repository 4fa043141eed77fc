"""Lean decoding of ProfileChanged records: only the fields scoring reads, with msgspec.

The contract (`ProfileChangedEvent`) validates every field of a profile; scoring reads about
twenty of them, and validating the rest with pydantic cost more CPU per record than scoring
it. These structs check the fields scoring reads as the contract does (types, bounds, aware
timestamps, the event type and schema version) and ignore the others, as the contract ignores
unknown fields. A record they refuse goes to the shared BatchProcessor, which decodes it with
the contract and dead-letters it with the reason (or hands it on when only this decoder was
too strict).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from clientela.shared.contracts import Lifecycle, ProfileChangedEvent

Count = Annotated[int, msgspec.Meta(ge=0)]
# Money arrives as a decimal string and is read as a float (the models compute in floats; the
# exact amounts are not republished); the bound is the contract's 18 digits, 4 decimals.
Money = Annotated[float, msgspec.Meta(ge=0, lt=1e14)]
Moment = Annotated[datetime, msgspec.Meta(tz=True)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Trait = str | int | float | bool | None


class WireAggregates(msgspec.Struct, frozen=True, gc=False):
    """The aggregates scoring reads."""

    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    first_seen_at: Moment | None = None
    touchpoint_count: Count = 0
    counts_by_kind: dict[str, int] = {}
    counts_by_channel: dict[str, int] = {}
    inbound_count: Count = 0
    outbound_count: Count = 0
    purchase_count: Count = 0
    purchase_days: Count = 0
    first_purchase_at: Moment | None = None
    last_purchase_at: Moment | None = None
    total_spend: Money = 0.0
    cost_to_serve: Money = 0.0


class WireProfile(msgspec.Struct, frozen=True, gc=False):
    """The profile fields scoring reads."""

    profile_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    version: Annotated[int, msgspec.Meta(ge=1)]
    lifecycle: Lifecycle
    created_at: Moment
    aggregates: WireAggregates
    traits: dict[Text, Trait] = {}


class WireProfileChange(msgspec.Struct, frozen=True, gc=False):
    """The envelope fields scoring reads."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    type: Literal["profile.changed"]
    data: WireProfile
    schema_version: Annotated[int, msgspec.Meta(ge=1, le=ProfileChangedEvent.SCHEMA_VERSION)] = 1
    correlation_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


# Lax, like the contract's pydantic models: numbers may come as strings (decimals always do).
_decoder = msgspec.json.Decoder(WireProfileChange, strict=False)


def decode_profile_change(value: bytes, max_bytes: int = 1_048_576) -> WireProfileChange | None:
    """Return the fields scoring reads of a ProfileChanged record, or None when refused."""
    if len(value) > max_bytes:
        return None
    try:
        return _decoder.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
