"""What scoring reads of a ProfileChanged: the contract model and the lean wire decoding both fit.

The domain rules take these read-only views, so the consumer can decode only the fields
scoring uses (see `adapters/inbound/profile_wire.py`) while tests and tools keep passing the
contract's pydantic models.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from clientela.shared.contracts import Lifecycle

TraitValue = str | int | float | bool | None


class AggregatesView(Protocol):
    """The running figures of a profile that scoring reads."""

    @property
    def first_seen_at(self) -> datetime | None: ...
    @property
    def touchpoint_count(self) -> int: ...
    @property
    def counts_by_kind(self) -> Mapping[str, int]: ...
    @property
    def counts_by_channel(self) -> Mapping[str, int]: ...
    @property
    def inbound_count(self) -> int: ...
    @property
    def outbound_count(self) -> int: ...
    @property
    def purchase_count(self) -> int: ...
    @property
    def purchase_days(self) -> int: ...
    @property
    def first_purchase_at(self) -> datetime | None: ...
    @property
    def last_purchase_at(self) -> datetime | None: ...
    @property
    def total_spend(self) -> Decimal | float: ...
    @property
    def cost_to_serve(self) -> Decimal | float: ...


class ProfileView(Protocol):
    """The parts of a ProfileChanged that scoring reads (no personal data)."""

    @property
    def profile_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def lifecycle(self) -> Lifecycle: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def traits(self) -> Mapping[str, TraitValue]: ...
    @property
    def aggregates(self) -> AggregatesView: ...


class ProfileChangeView(Protocol):
    """The envelope fields of a ProfileChanged event that scoring reads."""

    @property
    def event_id(self) -> str: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def data(self) -> ProfileView: ...
