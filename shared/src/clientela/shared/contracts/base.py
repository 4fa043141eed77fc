"""Base model, envelope and common value types shared by every event contract."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from clientela.shared.contracts.currencies import ISO_4217_CODES

# Unknown fields are ignored, not refused: contracts only grow additively, so an older consumer
# must keep reading events written by a newer producer.
CONTRACT_CONFIG = ConfigDict(
    frozen=True, extra="ignore", json_schema_serialization_defaults_required=True
)

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=4096)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ProfileId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TraitValue = str | int | float | bool | None
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]

# Derived events get ids from a fixed namespace so that a redelivered cause yields the same id.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c4d0e-2a7b-4c1e-9a51-0b8e6a9c3d21")


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """Return a fresh random event id."""
    return str(uuid.uuid4())


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def derived_event_id(*parts: str) -> str:
    """Return a deterministic event id for an event derived from the given causes (UUIDv5)."""
    # Same value as uuid.uuid5(EVENT_ID_NAMESPACE, ...) at half the cost: it runs once per
    # derived event on every hot path.
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode()).digest()[:16])  # noqa: S324
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Contract(BaseModel):
    """Base of every contract model: frozen, tolerant of unknown fields."""

    model_config = CONTRACT_CONFIG


class Channel(StrEnum):
    """A channel through which a touchpoint happens or a message is delivered."""

    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    WEB = "web"
    APP = "app"
    BRANCH = "branch"
    MAIL = "mail"
    CHAT = "chat"


class Direction(StrEnum):
    """Who started the interaction: the customer (inbound) or the company (outbound)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Tier(StrEnum):
    """Value tier: A/B/C by Pareto share of predicted value; P for prospects."""

    A = "A"
    B = "B"
    C = "C"
    P = "P"


class Lifecycle(StrEnum):
    """Where a person stands in the customer lifecycle."""

    PROSPECT = "prospect"
    CUSTOMER = "customer"
    LAPSED = "lapsed"


class ConsentStatus(StrEnum):
    """A person's recorded consent for a channel."""

    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class Money(Contract):
    """An amount of money in an ISO 4217 currency."""

    amount: NonNegativeDecimal
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]

    @model_validator(mode="after")
    def _known_currency(self) -> Self:
        if self.currency not in ISO_4217_CODES:
            raise ValueError(f"currency {self.currency!r} is not an ISO 4217 code")
        return self


class Reason(Contract):
    """One explainable reason behind a decision, with the number that drove it."""

    code: ShortText
    detail: LongText = ""
    value: float | str | None = None


class Envelope(Contract):
    """Fields every event carries, whatever its payload."""

    EVENT_TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: EventId = Field(default_factory=new_event_id, description="Unique id; the dedup key.")
    type: str = Field(description="Event type name, fixed per contract.")
    schema_version: int = Field(default=1, ge=1, description="Version of the payload's shape.")
    occurred_at: AwareDatetime = Field(
        default_factory=utc_now, description="When the fact happened (event time), in UTC."
    )
    source: ShortText = Field(description="The system that emitted the event.")
    correlation_id: EventId | None = Field(
        default=None, description="Id shared by every event of one causal chain."
    )
    causation_id: EventId | None = Field(
        default=None, description="Id of the event that directly caused this one."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.EVENT_TYPE:
            data.setdefault("type", cls.EVENT_TYPE)
            data.setdefault("schema_version", cls.SCHEMA_VERSION)
        return data

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        if self.EVENT_TYPE and self.type != self.EVENT_TYPE:
            raise ValueError(f"type must be {self.EVENT_TYPE!r}, got {self.type!r}")
        if self.schema_version > self.SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is newer than the supported "
                f"{self.SCHEMA_VERSION}"
            )
        return self
