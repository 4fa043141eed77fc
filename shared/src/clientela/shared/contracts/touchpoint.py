"""The touchpoint: one interaction between a person and the company, on any channel."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AnyUrl, Field, StringConstraints, model_validator

from clientela.shared.contracts.base import (
    Channel,
    ConsentStatus,
    Contract,
    Direction,
    Envelope,
    LongText,
    Money,
    NonNegativeDecimal,
    ShortText,
    TraitValue,
)

IdentifierValue = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class TouchpointKind(StrEnum):
    """What sort of interaction a touchpoint records."""

    PHONE_CALL = "phone_call"
    EMAIL = "email"
    WEB_VISIT = "web_visit"
    BRANCH_VISIT = "branch_visit"
    SALE = "sale"
    SMS = "sms"
    MAIL = "mail"
    APP_SESSION = "app_session"
    CHAT = "chat"
    SUPPORT_CASE = "support_case"


class IdentifierType(StrEnum):
    """Built-in identifier types, in priority order (strongest first)."""

    CUSTOMER_ID = "customer_id"
    EMAIL = "email"
    PHONE = "phone"
    DEVICE_ID = "device_id"
    ANONYMOUS_ID = "anonymous_id"


class Identifiers(Contract):
    """The ways a touchpoint names the person it concerns; at least one must be present."""

    customer_id: IdentifierValue | None = None
    email: IdentifierValue | None = Field(default=None, description="Lowercased and trimmed.")
    phone: IdentifierValue | None = Field(default=None, description="E.164, e.g. +441632960961.")
    device_id: IdentifierValue | None = None
    anonymous_id: IdentifierValue | None = None
    extra: dict[ShortText, IdentifierValue] = Field(
        default_factory=dict, description="Further identifier types configured by the operator."
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> Self:
        if not self.pairs():
            raise ValueError("at least one identifier is required")
        return self

    def pairs(self) -> list[tuple[str, str]]:
        """Return (type, value) pairs, built-in types first in priority order."""
        found = [
            (kind.value, value)
            for kind in IdentifierType
            if (value := getattr(self, kind.value)) is not None
        ]
        found.extend(sorted(self.extra.items()))
        return found


class Agent(Contract):
    """The employee (rep, call-centre agent, branch manager) who handled a touchpoint."""

    agent_id: ShortText
    role: ShortText | None = Field(default=None, description="e.g. sales_rep, call_agent.")
    team: ShortText | None = Field(default=None, description="Team, desk or branch of the agent.")


class ConsentChange(Contract):
    """A consent decision the person expressed during the touchpoint."""

    channel: Channel
    status: ConsentStatus


class LineItem(Contract):
    """One line of a sale."""

    sku: ShortText
    name: ShortText | None = None
    category: ShortText | None = None
    quantity: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4)] = Decimal(1)
    unit_price: NonNegativeDecimal | None = None


class SaleDetails(Contract):
    """Kind-specific fields of a sale."""

    order_id: ShortText
    amount: NonNegativeDecimal
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    items: list[LineItem] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _known_currency(self) -> Self:
        Money(amount=self.amount, currency=self.currency)
        return self


class CallOutcome(StrEnum):
    """How a phone call ended."""

    ANSWERED = "answered"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    VOICEMAIL = "voicemail"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    DROPPED = "dropped"


class PhoneCallDetails(Contract):
    """Kind-specific fields of a phone call."""

    duration_seconds: Annotated[int, Field(ge=0, le=86_400)]
    outcome: CallOutcome
    reason: ShortText | None = None


class EmailDetails(Contract):
    """Kind-specific fields of an email, sent or received."""

    opened: bool = False
    clicked: bool = False
    bounced: bool = False
    unsubscribed: bool = False
    subject: ShortText | None = None
    campaign_message_id: ShortText | None = Field(
        default=None, description="The CampaignMessage this email delivers or answers."
    )


class WebVisitDetails(Contract):
    """Kind-specific fields of a web visit."""

    url: AnyUrl | None = None
    referrer: AnyUrl | None = None
    page_views: Annotated[int, Field(ge=1, le=100_000)] = 1
    duration_seconds: Annotated[int, Field(ge=0, le=86_400)] | None = None


class BranchVisitDetails(Contract):
    """Kind-specific fields of a visit to (or by) a branch."""

    branch_id: ShortText
    purpose: ShortText | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=86_400)] | None = None


_DETAIL_FIELD: dict[TouchpointKind, str] = {
    TouchpointKind.SALE: "sale",
    TouchpointKind.PHONE_CALL: "call",
    TouchpointKind.EMAIL: "email",
    TouchpointKind.WEB_VISIT: "web_visit",
    TouchpointKind.BRANCH_VISIT: "branch_visit",
}


class Touchpoint(Contract):
    """One interaction between a person and the company; the event time is the envelope's."""

    kind: TouchpointKind
    channel: Channel
    direction: Direction
    identifiers: Identifiers
    agent: Agent | None = None
    cost: Money | None = Field(default=None, description="What the interaction cost to serve.")
    traits: dict[ShortText, TraitValue] = Field(
        default_factory=dict, max_length=200, description="Non-identifying profile attributes."
    )
    consent: list[ConsentChange] = Field(default_factory=list, max_length=20)
    sale: SaleDetails | None = None
    call: PhoneCallDetails | None = None
    email: EmailDetails | None = None
    web_visit: WebVisitDetails | None = None
    branch_visit: BranchVisitDetails | None = None
    properties: dict[ShortText, TraitValue] = Field(
        default_factory=dict, max_length=200, description="Free-form fields of other kinds."
    )
    note: LongText | None = None

    @model_validator(mode="after")
    def _details_match_kind(self) -> Self:
        expected = _DETAIL_FIELD.get(self.kind)
        for kind, field in _DETAIL_FIELD.items():
            present = getattr(self, field) is not None
            if field == expected and not present:
                raise ValueError(f"a {kind.value} touchpoint needs its '{field}' details")
            if field != expected and present:
                raise ValueError(f"'{field}' details do not belong to a {self.kind.value}")
        return self


class TouchpointRecorded(Envelope):
    """A validated, normalised touchpoint accepted by ingest."""

    EVENT_TYPE: ClassVar[str] = "touchpoint.recorded"
    type: Literal["touchpoint.recorded"] = "touchpoint.recorded"
    data: Touchpoint
